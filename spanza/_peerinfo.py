"""`spanza.device.PeerInfo`: a peer as a UAPI get reports it (a module of
its own: a dataclass, which a device that is never asked for its peers
need not import)."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

from spanza.device import uapi_fields
from spanza.keys import PublicKey

__all__ = ["PeerInfo", "parse_uapi_get"]


@dataclass
class PeerInfo:
    """A peer as the device reports it (from a UAPI get)."""

    public_key: PublicKey
    endpoint: str | None = None
    allowed_ips: list[str] = field(default_factory=list)
    last_handshake: _dt.datetime | None = None
    rx_bytes: int = 0
    tx_bytes: int = 0
    persistent_keepalive: int = 0  # seconds, 0 = off
    has_preshared_key: bool = False


def parse_uapi_get(text: str) -> tuple[dict[str, str], list[PeerInfo]]:
    """A UAPI get reply as (device keys, peers)."""
    dev, peers = uapi_fields(text)
    return dev, [PeerInfo(**p) for p in peers]
