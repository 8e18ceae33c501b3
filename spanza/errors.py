"""Exceptions raised by Spanza, and the one map from C's errno codes to them.

Every error is a `SpanzaError`. Those that the standard library raises as an
`OSError` subclass (a port in use, a timeout, a refused connection, a missing
file) are also that class, so ``except OSError`` / ``except TimeoutError``
catch them as they would a socket's; a rejected value is a `ConfigError`, a
`ValueError` too.
"""

from __future__ import annotations

import errno as _errno
import os


class SpanzaError(Exception):
    """Base class of Spanza's errors. ``errno`` is set when C reported one."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class ClosedError(SpanzaError):
    """The object was closed (or belongs to the parent of a fork)."""


class ConfigError(SpanzaError, ValueError):
    """A configuration value was rejected; the message says which and why."""


class RelayError(SpanzaError, ConnectionError):
    """The DERP relay cannot be reached, or does not speak what the URL
    says; the message names the cause and the fix."""


class RelayRefusedError(RelayError, PermissionError):
    """The relay refused this client (its allowlist or client check): a
    permanent refusal, so the client stopped retrying until
    ``reconnect()``."""


class HTTPProtocolError(SpanzaError, ConnectionError):
    """An HTTP message through the tunnel was malformed or cut short."""


class NoRouteError(ConfigError):
    """No WireGuard peer's allowed IPs contain the destination."""


class SpanzaOSError(SpanzaError, OSError):
    """An operating-system error (``errno``, ``strerror`` as OSError's)."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        OSError.__init__(self, errno, message)
        self.errno = errno

    def __str__(self) -> str:
        return str(self.strerror)


class AddressInUseError(SpanzaOSError):
    """EADDRINUSE: the address or port is taken (an OSError, as bind() raises)."""


class SpanzaTimeoutError(SpanzaOSError, TimeoutError):
    """ETIMEDOUT: nothing happened within the timeout (a TimeoutError)."""

    def __init__(self, message: str, errno: int | None = _errno.ETIMEDOUT) -> None:
        super().__init__(message, errno)


class SpanzaConnectionRefusedError(SpanzaOSError, ConnectionRefusedError):
    """ECONNREFUSED (a ConnectionRefusedError)."""


class SpanzaFileNotFoundError(SpanzaOSError, FileNotFoundError):
    """ENOENT (a FileNotFoundError)."""


class SpanzaPermissionError(SpanzaOSError, PermissionError):
    """EACCES / EPERM (a PermissionError)."""


_BY_ERRNO: dict[int, type[SpanzaError]] = {
    _errno.EINVAL: ConfigError,
    _errno.ERANGE: ConfigError,
    _errno.ESHUTDOWN: ClosedError,
    _errno.EADDRINUSE: AddressInUseError,
    _errno.ETIMEDOUT: SpanzaTimeoutError,
    _errno.ECONNREFUSED: SpanzaConnectionRefusedError,
    _errno.ENOENT: SpanzaFileNotFoundError,
    _errno.EACCES: SpanzaPermissionError,
    _errno.EPERM: SpanzaPermissionError,
}


def error(code: int, message: str) -> SpanzaError:
    """The exception for errno `code` (positive) with `message`: the one map
    every module uses."""
    cls = _BY_ERRNO.get(code)
    if cls is None:
        cls = SpanzaOSError if code in _OS_CODES else SpanzaError
    return cls(message, code)


# Codes that are the system's business rather than Spanza's protocol errors.
_OS_CODES = frozenset(
    {
        _errno.EADDRNOTAVAIL,
        _errno.EAFNOSUPPORT,
        _errno.EMFILE,
        _errno.ENFILE,
        _errno.ENOMEM,
        _errno.ENOBUFS,
        _errno.EISDIR,
        _errno.ENOTDIR,
        _errno.EEXIST,
        _errno.ENETUNREACH,
        _errno.EHOSTUNREACH,
        _errno.ECONNRESET,
    }
)


def check(rc: int, what: str) -> int:
    """`rc` when >= 0; raises `error(-rc, ...)` for a negative errno from C."""
    if rc >= 0:
        return rc
    raise error(-rc, f"{what}: {os.strerror(-rc)}")
