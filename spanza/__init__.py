"""Spanza: WireGuard peers in user space, carried over DERP relays."""

from __future__ import annotations

__version__ = "0.1.0"

from spanza._handle import close_all
from spanza._log import set_level as set_log_level
from spanza.derp import DerpServer
from spanza.derp_client import DerpClient
from spanza.device import Device, PeerInfo
from spanza.errors import (
    AddressInUseError,
    ClosedError,
    ConfigError,
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

__all__ = [
    "AddressInUseError",
    "ClosedError",
    "ConfigError",
    "DerpClient",
    "DerpServer",
    "Device",
    "Gateway",
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
