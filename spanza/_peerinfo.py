"""`spanza.device.PeerInfo`: a peer as a UAPI get reports it (a module of
its own: a dataclass, which a device that is never asked for its peers
need not import)."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

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
    dev: dict[str, str] = {}
    peers: list[PeerInfo] = []
    cur: PeerInfo | None = None
    hs_sec = hs_nsec = 0
    for line in text.split("\n"):
        if not line:
            continue
        key, _, value = line.partition("=")
        if key == "public_key":
            cur = PeerInfo(public_key=PublicKey(bytes.fromhex(value)))
            hs_sec = hs_nsec = 0
            peers.append(cur)
        elif cur is None:
            dev[key] = value
        elif key == "endpoint":
            cur.endpoint = value
        elif key == "allowed_ip":
            cur.allowed_ips.append(value)
        elif key == "rx_bytes":
            cur.rx_bytes = int(value)
        elif key == "tx_bytes":
            cur.tx_bytes = int(value)
        elif key == "persistent_keepalive_interval":
            cur.persistent_keepalive = int(value)
        elif key == "preshared_key":
            cur.has_preshared_key = value.strip("0") != ""
        elif key in ("last_handshake_time_sec", "last_handshake_time_nsec"):
            if key.endswith("_sec"):
                hs_sec = int(value)
            else:
                hs_nsec = int(value)
            if hs_sec or hs_nsec:
                cur.last_handshake = _dt.datetime.fromtimestamp(hs_sec + hs_nsec / 1e9, tz=_dt.timezone.utc)
    return dev, peers
