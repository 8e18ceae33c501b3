"""The options every DERP client Spanza makes shares (a DerpClient, a
gateway's, a device's DERP bind): its own module, so that gateways and
devices need not import spanza.derp_client and its event classes (cold
start, bench/cold_start.py)."""

from __future__ import annotations

import os

from spanza._ffi import ffi
from spanza.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Fields of struct derp_client_opts that are not plain numbers: each has its
# own argument wherever a client is made.
_OWN_ARGUMENT = ("ca_file", "pin_sha256", "server_name", "server_key", "has_server_key", "insecure")


def _cstr(keep: list[Any], s: str | os.PathLike[str]) -> Any:
    b = ffi.new("char[]", os.fsencode(s))
    keep.append(b)
    return b


def client_opts(
    keep: list[Any],
    *,
    ca_file: str | os.PathLike[str] | None = None,
    insecure: bool = False,
    options: dict[str, int] | None = None,
    what: str = "derp_options",
    ca_what: str = "ca_file",
) -> Any:
    """A ``struct derp_client_opts`` for every DERP client Spanza makes (a
    DerpClient, the gateway's, a device's DERP bind): ``ca_file``,
    ``insecure``, and `options`, the struct's number fields by name (e.g.
    ``backoff_max_ms``, ``queue_size``; 0 means the default). C strings are
    appended to `keep`, which must outlive the C constructor call. `what`
    and `ca_what` name the caller's arguments in error messages."""
    opts = ffi.new("struct derp_client_opts *")
    if ca_file is not None:
        if not os.path.isfile(ca_file):
            raise ConfigError(f"{ca_what}: {os.fspath(ca_file)} is not a file")
        opts.ca_file = _cstr(keep, ca_file)
    opts.insecure = 1 if insecure else 0
    for name, value in (options or {}).items():
        label = f"{what}: {name}" if what else name
        if name in _OWN_ARGUMENT:
            raise ConfigError(f"{label}: set it with its own argument")
        if not hasattr(opts, name):
            known = ", ".join(n for n, _ in ffi.typeof("struct derp_client_opts").fields if n not in _OWN_ARGUMENT)
            raise ConfigError(f"{what or 'options'}: unknown option {name!r} (known: {known})")
        if not isinstance(value, int) or not 0 <= value < 2**32:
            raise ConfigError(f"{label}: must be an integer in 0..2**32-1 (0: the default), got {value!r}")
        setattr(opts, name, int(value))
    return opts
