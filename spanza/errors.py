"""Exceptions raised by Spanza."""

from __future__ import annotations

import errno as _errno
import os


class SpanzaError(Exception):
    """Base class of Spanza's errors. ``errno`` is set when C reported one."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class ClosedError(SpanzaError):
    """The object was closed."""


class ConfigError(SpanzaError, ValueError):
    """A configuration value was rejected; the message says which and why."""


class RelayError(SpanzaError, ConnectionError):
    """The DERP relay cannot be reached, or does not speak what the URL
    says; the message names the cause and the fix."""


class RelayRefusedError(RelayError, PermissionError):
    """The relay refused this client (its allowlist or client check): a
    permanent refusal, so the client stopped retrying until
    ``reconnect()``."""


class NoRouteError(ConfigError):
    """No WireGuard peer's allowed IPs contain the destination."""


def check(rc: int, what: str) -> int:
    """Raise for a negative errno-style return code from C."""
    if rc >= 0:
        return rc
    code = -rc
    msg = f"{what}: {os.strerror(code)}"
    if code in (_errno.EINVAL, _errno.ERANGE):
        raise ConfigError(msg, code)
    if code == _errno.ETIMEDOUT:
        raise TimeoutError(msg)
    if code == _errno.ESHUTDOWN:
        raise ClosedError(msg, code)
    raise SpanzaError(msg, code)
