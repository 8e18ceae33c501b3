"""Spanza: WireGuard peers in user space, carried over DERP relays."""

from __future__ import annotations

__version__ = "0.1.0"

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (cold start)
if TYPE_CHECKING:
    from typing import Any

    from spanza._handle import close_all
    from spanza._log import set_level as set_log_level
    from spanza.derp import DerpServer
    from spanza.derp_client import DerpClient
    from spanza.device import Device, PeerInfo
    from spanza.errors import (
        AddressInUseError,
        ClosedError,
        ConfigError,
        HTTPProtocolError,
        NoRouteError,
        RelayError,
        RelayRefusedError,
        SpanzaError,
        SpanzaOSError,
        SpanzaTimeoutError,
    )
    from spanza.gateway import Gateway
    from spanza.keys import PresharedKey, PrivateKey, PublicKey
    from spanza.netstack import Host, MemoryWire
    from spanza.runtime import Runtime, default_runtime
    from spanza.wireguard import Tunnel

# Where each public name lives. `import spanza` imports none of them: a
# command or a test pays only for the modules it touches (cold start of
# `spanza demo`, see bench/cold_start.py); the first access imports the
# module and caches the name in this module's globals.
_LAZY: dict[str, tuple[str, str]] = {
    "close_all": ("spanza._handle", "close_all"),
    "set_log_level": ("spanza._log", "set_level"),
    "DerpServer": ("spanza._derp_server", "DerpServer"),
    "DerpClient": ("spanza.derp_client", "DerpClient"),
    "Device": ("spanza.device", "Device"),
    "PeerInfo": ("spanza.device", "PeerInfo"),
    "Gateway": ("spanza.gateway", "Gateway"),
    "PresharedKey": ("spanza.keys", "PresharedKey"),
    "PrivateKey": ("spanza.keys", "PrivateKey"),
    "PublicKey": ("spanza.keys", "PublicKey"),
    "Host": ("spanza.netstack", "Host"),
    "MemoryWire": ("spanza.netstack", "MemoryWire"),
    "Runtime": ("spanza.runtime", "Runtime"),
    "default_runtime": ("spanza.runtime", "default_runtime"),
    "Tunnel": ("spanza.wireguard", "Tunnel"),
}
for _name in (
    "AddressInUseError",
    "ClosedError",
    "ConfigError",
    "HTTPProtocolError",
    "NoRouteError",
    "RelayError",
    "RelayRefusedError",
    "SpanzaError",
    "SpanzaOSError",
    "SpanzaTimeoutError",
):
    _LAZY[_name] = ("spanza.errors", _name)


def __getattr__(name: str) -> Any:
    import importlib

    if name not in _LAZY:
        # A submodule (spanza.netstack, spanza.trace...), as `import spanza`
        # used to leave most of them bound.
        if name.startswith("_"):
            raise AttributeError(f"module 'spanza' has no attribute {name!r}")
        try:
            return importlib.import_module(f"spanza.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"spanza.{name}":
                raise
            raise AttributeError(f"module 'spanza' has no attribute {name!r}") from None
    module, attr = _LAZY[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AddressInUseError",
    "ClosedError",
    "ConfigError",
    "DerpClient",
    "DerpServer",
    "Device",
    "Gateway",
    "HTTPProtocolError",
    "Host",
    "MemoryWire",
    "NoRouteError",
    "PeerInfo",
    "PresharedKey",
    "PrivateKey",
    "PublicKey",
    "RelayError",
    "RelayRefusedError",
    "Runtime",
    "SpanzaError",
    "SpanzaOSError",
    "SpanzaTimeoutError",
    "Tunnel",
    "__version__",
    "close_all",
    "default_runtime",
    "set_log_level",
]
