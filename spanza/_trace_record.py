"""Records of spanza.trace and the journeys they make: decoding on demand,
correlation of one packet's records across hops (see spanza.trace)."""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from spanza import _decode as dec
from spanza._ffi import ffi, lib

# ---- hops (csrc/trace/trace_py.h) ----

NS_OUT, WG_ENCRYPT, WG_CIPHER_OUT = int(lib.TR_HOP_NS_OUT), int(lib.TR_HOP_WG_ENCRYPT), int(lib.TR_HOP_WG_CIPHER_OUT)
DEV_UDP_TX, GW_UDP_IN, GW_DERP_OUT = int(lib.TR_HOP_DEV_UDP_TX), int(lib.TR_HOP_GW_UDP_IN), int(lib.TR_HOP_GW_DERP_OUT)
DC_QUEUE, DC_TX, DS_IN, DS_RELAY = (
    int(lib.TR_HOP_DC_QUEUE),
    int(lib.TR_HOP_DC_TX),
    int(lib.TR_HOP_DS_IN),
    int(lib.TR_HOP_DS_RELAY),
)
DC_RX, GW_DERP_IN, GW_UDP_OUT = int(lib.TR_HOP_DC_RX), int(lib.TR_HOP_GW_DERP_IN), int(lib.TR_HOP_GW_UDP_OUT)
DEV_UDP_RX, WG_CIPHER_IN, WG_DECRYPT = (
    int(lib.TR_HOP_DEV_UDP_RX),
    int(lib.TR_HOP_WG_CIPHER_IN),
    int(lib.TR_HOP_WG_DECRYPT),
)
NS_IN, WG_CORE, DEV_IO, DS_CORE, KEYS = (
    int(lib.TR_HOP_NS_IN),
    int(lib.TR_HOP_WG),
    int(lib.TR_HOP_DEV),
    int(lib.TR_HOP_DS),
    int(lib.TR_HOP_KEYS),
)
HOP_COUNT = int(lib.TR_HOP__COUNT)
DROPS_BIT = int(lib.TR_HOPS_DROPS)

PLAIN_HOPS = frozenset({NS_OUT, NS_IN, WG_ENCRYPT, WG_DECRYPT})
DGRAM_HOPS = frozenset(
    {
        WG_CIPHER_OUT,
        DEV_UDP_TX,
        GW_UDP_IN,
        GW_DERP_OUT,
        GW_DERP_IN,
        GW_UDP_OUT,
        DEV_UDP_RX,
        WG_CIPHER_IN,
    }
)
FRAME_HOPS = frozenset({DC_QUEUE, DC_TX, DS_IN, DS_RELAY, DC_RX})
OUT_HOPS = frozenset(
    {
        NS_OUT,
        WG_ENCRYPT,
        WG_CIPHER_OUT,
        DEV_UDP_TX,
        GW_DERP_OUT,
        GW_UDP_OUT,
        DC_QUEUE,
        DC_TX,
        DS_RELAY,
    }
)
# Where a packet has arrived: the receiving host, or WireGuard itself
# (handshakes, keepalives, devices without a host).
ARRIVED_HOPS = frozenset({NS_IN, WG_DECRYPT, WG_CIPHER_IN})
KEY_ID_BYTES = 8
CORRELATE_BYTES = 32  # a datagram's first bytes identify a handshake message
PLAIN_KEY_BYTES = 64  # a plaintext packet's first bytes identify it
IN_FLIGHT_NS = 200_000_000  # a journey seen this close to the end was cut by it

_HOP_NAMES: dict[int, str] = {h: ffi.string(lib.tr_hop_name(h)).decode() for h in range(1, HOP_COUNT)}
_HOP_BY_NAME = {v: k for k, v in _HOP_NAMES.items()}


def hop_names() -> dict[int, str]:
    """Hop number -> name, in path order."""
    return dict(_HOP_NAMES)


def reason_name(reason: int) -> str:
    """A drop reason's name (WireGuard's own for the core's drops)."""
    if not reason:
        return ""
    if reason >= lib.TR_R_WG:
        return str(ffi.string(lib.wg_drop_name(reason - lib.TR_R_WG)).decode())
    return str(ffi.string(lib.tr_reason_name(reason)).decode())


def key_id(key: bytes | Any) -> int:
    """The 64-bit id the taps give a 32-byte key (DERP clients, peers)."""
    return int.from_bytes(bytes(key)[:KEY_ID_BYTES], "little")


# ---- records ----


class Record:
    """One tap record. Decoding is lazy (`decoded`, `summary`)."""

    __slots__ = (
        "_decoded",
        "addr",
        "counter",
        "data",
        "hop",
        "index",
        "label",
        "length",
        "lport",
        "obj",
        "peer",
        "port",
        "reason",
        "ref",
        "seq",
        "t_ns",
    )
    seq: int
    t_ns: int
    hop: int
    obj: int
    peer: int
    ref: int
    counter: int
    index: int
    length: int
    reason: int
    port: int
    lport: int

    def __init__(self, h: tuple[Any, ...], data: bytes, label: str) -> None:
        (
            _,
            self.hop,
            self.reason,
            self.seq,
            self.t_ns,
            self.obj,
            self.peer,
            self.ref,
            self.counter,
            self.index,
            self.length,
            _,
            self.port,
            self.lport,
            af,
            addr,
        ) = h
        self.data = data
        self.addr: str | None = None
        if af:
            self.addr = str(ipaddress.IPv4Address(addr[:4]) if af == 4 else ipaddress.IPv6Address(addr))
        self.label = label
        self._decoded: dict[str, Any] | None = None

    @property
    def hop_name(self) -> str:
        return _HOP_NAMES.get(self.hop, "?")

    @property
    def reason_name(self) -> str:
        return reason_name(self.reason)

    @property
    def dropped(self) -> bool:
        return self.reason != 0

    @property
    def truncated(self) -> bool:
        return len(self.data) < self.length

    @property
    def ip(self) -> bytes | None:
        """The plaintext IP packet (trimmed to its IP length), if any."""
        if self.hop in PLAIN_HOPS or (self.dropped and dec.looks_like_ip(self.data)):
            n = dec.ip_length(self.data)
            return self.data[:n] if n else self.data
        return None

    @property
    def frame(self) -> bytes | None:
        """The DERP frame (header included), at DERP hops."""
        return self.data if self.hop in FRAME_HOPS else None

    @property
    def datagram(self) -> bytes | None:
        """The WireGuard datagram (bare, or inside a DERP packet frame)."""
        if self.hop in DGRAM_HOPS or (self.dropped and dec.looks_like_wg(self.data)):
            return self.data
        if self.hop in FRAME_HOPS:
            return dec.derp_payload(self.data)
        return None

    @property
    def datagram_length(self) -> int:
        if self.hop in FRAME_HOPS:
            return max(0, self.length - dec.DERP_HDR - dec.DERP_KEY)
        return self.length

    @property
    def decoded(self) -> dict[str, Any]:
        """Fields of every layer this record shows (IP/TCP/UDP/ICMP,
        WireGuard, DERP)."""
        if self._decoded is None:
            d: dict[str, Any] = {}
            if self.hop in FRAME_HOPS:
                d.update(dec.decode_derp(self.data))
            dg = self.datagram
            if dg is not None:
                d.update(dec.decode_wg(dg, self.datagram_length))
            ip = self.ip
            if ip is not None:
                d.update(dec.decode_ip(ip))
            if self.hop in (WG_ENCRYPT, WG_DECRYPT):
                d.update(receiver=self.index, counter=self.counter)
            self._decoded = d
        return self._decoded

    def summary(self) -> str:
        d = self.decoded
        if self.hop == KEYS:
            return "handshake keys"
        parts = []
        if "derp" in d:
            parts.append(f"DERP {d['derp']}")
        if "wg" in d:
            parts.append(dec.describe_wg(d))
        if "proto" in d:
            if self.hop in (WG_ENCRYPT, WG_DECRYPT):
                parts.append(f"WG counter={self.counter}")
            parts.append(dec.describe_ip(d))
        elif self.hop in (WG_ENCRYPT, WG_DECRYPT):
            parts.append(f"WG counter={self.counter} keepalive" if not self.length else f"WG counter={self.counter}")
        if self.dropped:
            what = f"{self.counter} packets " if not self.data and self.counter else ""
            parts.append(f"DROPPED {what}({self.reason_name})")
        return " | ".join(parts) or f"{self.length} bytes"

    def correlation_keys(self) -> list[tuple[Any, ...]]:
        """Keys that the same packet has at other hops."""
        keys: list[tuple[Any, ...]] = []
        if self.hop in (WG_ENCRYPT, WG_DECRYPT):
            keys.append(("d", self.index, self.counter))
        dg = self.datagram
        if dg is not None and len(dg) >= 4:
            if dg[0] == 4 and len(dg) >= dec.WG_DATA_HEADER:
                keys.append(
                    (
                        "d",
                        int.from_bytes(dg[4:8], "little"),
                        int.from_bytes(dg[8:16], "little"),
                    )
                )
            else:
                keys.append(("h", self.datagram_length, bytes(dg[:CORRELATE_BYTES])))
        ip = self.ip
        if ip:
            keys.append(("p", dec.ip_length(ip), bytes(ip[:PLAIN_KEY_BYTES])))
        return keys

    def __repr__(self) -> str:
        return f"<Record #{self.seq} {self.label} {self.hop_name} {self.length}B {self.summary()}>"


def _order(r: Record) -> tuple[int, int]:
    """Time order across threads (one clock); a thread's own order on ties."""
    return (r.t_ns, r.seq)


# ---- journeys ----


@dataclass
class Journey:
    """One packet's path: its records in order (with the time from the
    previous hop), and how it ended."""

    id: int
    records: list[Record] = field(default_factory=list)
    drop: Record | None = None
    capture_end_ns: int | None = None  # when the capture stopped (None: running)

    @property
    def hops(self) -> list[tuple[str, str, float]]:
        """(object label, hop name, ms since the previous hop)."""
        out, prev = [], None
        for r in self.records:
            out.append((r.label, r.hop_name, 0.0 if prev is None else (r.t_ns - prev) / 1e6))
            prev = r.t_ns
        return out

    @property
    def status(self) -> str:
        """ "delivered", "dropped", or "stopped" (no record after the last
        hop: still queued, lost without a counter, or not traced)."""
        if self.drop is not None:
            return "dropped"
        if self.records and self.records[-1].hop in ARRIVED_HOPS and self.records[-1].hop != NS_OUT:
            return "delivered"
        return "stopped"

    @property
    def stopped_at(self) -> Record | None:
        """The last hop it reached (the drop record if dropped), or None if
        it arrived."""
        if self.status == "delivered":
            return None
        return self.drop if self.drop is not None else (self.records[-1] if self.records else None)

    @property
    def reason(self) -> str:
        if self.drop is not None:
            return self.drop.reason_name
        if self.status == "stopped" and self.records:
            last = self.records[-1]
            if last.hop == DC_QUEUE:
                return "waiting in the DERP client's queue (no connection)"
            if self.capture_end_ns is not None and self.capture_end_ns - last.t_ns < IN_FLIGHT_NS:
                return f"in flight when the capture stopped (last at {last.label} {last.hop_name})"
            return f"no record after {last.hop_name} at {last.label}"
        return ""

    @property
    def duration_ms(self) -> float:
        if len(self.records) < 2:
            return 0.0
        return (self.records[-1].t_ns - self.records[0].t_ns) / 1e6

    @property
    def what(self) -> str:
        """The packet, as its most telling record shows it."""
        for r in self.records:
            if r.ip is not None and "proto" in r.decoded:
                return dec.describe_ip(r.decoded)
        return self.records[0].summary() if self.records else "?"

    def __str__(self) -> str:
        end = {
            "delivered": f"delivered in {self.duration_ms:.3f} ms",
            "dropped": f"DROPPED at {self.drop.label if self.drop else '?'} "
            f"{self.drop.hop_name if self.drop else ''}: {self.reason}",
            "stopped": f"STOPPED: {self.reason}",
        }[self.status]
        lines = [f"journey {self.id}: {self.what} -- {end}"]
        for label, hop, dt in self.hops:
            lines.append(f"  +{dt:9.3f} ms  {label:<24} {hop}")
        if self.drop is not None:
            lines.append(f"  {'':>12}  {self.drop.label:<24} {self.drop.hop_name} DROP {self.drop.reason_name}")
        return "\n".join(lines)


def _journeys(records: list[Record], end_ns: int | None = None) -> list[Journey]:
    """Joins records of one packet, in time order: a record goes to the most
    recent journey that shares a correlation key and has not yet passed the
    same hop of the same object (a resent packet starts a new journey)."""
    journeys: list[Journey] = []
    by_key: dict[tuple[Any, ...], list[Journey]] = defaultdict(list)
    by_seq: dict[int, Journey] = {}
    seen: dict[int, set[tuple[int, int]]] = {}
    for r in records:
        if r.hop == KEYS:
            continue
        keys = r.correlation_keys()
        if r.dropped:
            j = by_seq.get(r.ref) if r.ref else None
            if j is None:
                j = next((c for k in keys for c in reversed(by_key.get(k, []))), None)
            if j is not None and j.drop is None:
                j.drop = r
            continue
        if not keys:
            continue
        j = None
        for k in keys:
            for cand in reversed(by_key.get(k, ())):
                if (r.obj, r.hop) not in seen[cand.id] and cand.drop is None:
                    j = cand
                    break
            if j is not None:
                break
        if j is None:
            j = Journey(len(journeys), capture_end_ns=end_ns)
            journeys.append(j)
            seen[j.id] = set()
        j.records.append(r)
        seen[j.id].add((r.obj, r.hop))
        by_seq[r.seq] = j
        for k in keys:
            lst = by_key[k]
            if not lst or lst[-1] is not j:
                lst.append(j)
    return journeys
