"""Spanza: WireGuard peers in user space, carried over DERP relays."""

from __future__ import annotations

__version__ = "0.1.0"

from spanza.errors import ClosedError, ConfigError, SpanzaError
from spanza.netstack import Host, MemoryWire
from spanza.runtime import Runtime, default_runtime

__all__ = [
    "ClosedError",
    "ConfigError",
    "Host",
    "MemoryWire",
    "Runtime",
    "SpanzaError",
    "__version__",
    "default_runtime",
]
