"""Packet-flow tracing: see one packet's journey across every hop.

::

    with spanza.trace.capture(relay, a, b) as cap:
        b.http_get("http://192.168.4.1/")
    for j in cap.journeys():
        print(j)                 # hop by hop, with the time between hops
    print(cap.summary())         # per hop counts, bytes, drops, latency
    cap.write_pcapng("flow.pcapng")   # Wireshark/tshark decrypt it alone

Tap points in C (csrc/trace/) record, at every hop of the path, the time
(one monotonic clock), the hop, the object, the peer, the length and the
first ``snaplen`` bytes into a bounded ring per producing thread; a full
ring counts what it could not keep (``cap.overflow``). Tracing is off
unless a capture runs; off, a tap costs one predictable branch.

Objects: peers (`spanza.scenario.Peer`), devices, hosts, gateways, DERP
clients and servers. Given objects, only their records are kept (in C) and
their names label the records; without objects, everything is kept.

Correlation: a WireGuard datagram is the same bytes at the UDP, gateway
and DERP hops (data messages are known by receiver index and counter, the
handshake by their first bytes); a plaintext packet is tied to its
ciphertext by the counter it was encrypted with. `Capture.journeys` joins
the records of one packet, in order, and says where it stopped and why.
"""

from __future__ import annotations

import base64
import io
import ipaddress
import itertools
import logging
import os
import struct
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Self

from spanza import _decode as dec
from spanza._ffi import ffi, lib
from spanza.errors import ConfigError

log = logging.getLogger("spanza.trace")

__all__ = ["Capture", "Journey", "Record", "capture", "hop_names", "wireshark_plugin"]

# ---- hops ----

NS_OUT, WG_ENCRYPT, WG_CIPHER_OUT, DEV_UDP_TX = 1, 2, 3, 4
GW_UDP_IN, GW_DERP_OUT, DC_QUEUE, DC_TX, DS_IN, DS_RELAY = 5, 6, 7, 8, 9, 10
DC_RX, GW_DERP_IN, GW_UDP_OUT, DEV_UDP_RX, WG_CIPHER_IN, WG_DECRYPT, NS_IN = (
    11,
    12,
    13,
    14,
    15,
    16,
    17,
)
WG_CORE, DEV_IO, DS_CORE, KEYS = 18, 19, 20, 21
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
# "Headers only": enough for IP+TCP with options, and a DERP frame header
# with its key in front of a WireGuard data header.
HEADERS_SNAPLEN = 128
WHOLE_SNAPLEN = 65600
DEFAULT_RING_BYTES = 4 << 20
DEFAULT_MAX_RECORDS = 500_000
POLL_SECONDS = 0.05
BUSY_POLL_SECONDS = 0.002
DRAIN_CHUNK = 1 << 20
KEY_ID_BYTES = 8
CORRELATE_BYTES = 32  # a datagram's first bytes identify a handshake message
PLAIN_KEY_BYTES = 64  # a plaintext packet's first bytes identify it
DERP_UDP_PORT = 3340  # the port the DERP hops are written under (the dissector's)
WG_UDP_PORT = 51820
LONG_WAIT_NS = 10_000_000  # diagrams label a hop that took longer
IN_FLIGHT_NS = 200_000_000  # a journey seen this close to the end was cut by it

_REC = ffi.sizeof("struct tr_rec")
# struct tr_rec: size hop reason seq t_ns obj peer ref counter index len caplen port lport af pad addr
_REC_HDR = struct.Struct("<IHHQQQQQQIIIHHB7x16s")
assert _REC_HDR.size == _REC
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


def wireshark_plugin() -> str:
    """Path of the DERP dissector for Wireshark/tshark (``-X lua_script:<path>``):
    it decodes DERP frames and hands SendPacket/RecvPacket payloads to
    Wireshark's WireGuard dissector."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "derp.lua")


def tshark_command(path: str | os.PathLike[str]) -> list[str]:
    """A tshark command line that shows a pcapng of this module: the DERP
    dissector loaded, and every hop's copy of a TCP segment dissected on
    its own (not as a retransmission, not reassembled with the others)."""
    return [
        "tshark",
        "-r",
        os.fspath(path),
        "-X",
        f"lua_script:{wireshark_plugin()}",
        "-o",
        "tcp.analyze_sequence_numbers:FALSE",
        "-o",
        "tcp.desegment_tcp_streams:FALSE",
    ]


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


# ---- the objects a capture follows ----


@dataclass
class _Obj:
    id: int
    label: str
    lane: int  # order of the lane in diagrams
    wg_key: int = 0  # the WireGuard public key id (devices)


def _ptr_id(ptr: Any) -> int:
    return int(ffi.cast("uintptr_t", ptr))


def _objects_of(obj: Any, name: str | None = None) -> list[_Obj]:
    """The C objects behind a Python object, labelled."""
    from spanza.derp import DerpServer
    from spanza.derp_client import DerpClient
    from spanza.device import Device
    from spanza.gateway import Gateway
    from spanza.netstack import Host
    from spanza.scenario import Peer

    out: list[_Obj] = []
    if isinstance(obj, Peer):
        name = name or obj.address
        out += _objects_of(obj.device, name)
        if obj.gateway is not None:
            out += _objects_of(obj.gateway, name)
    elif isinstance(obj, Device):
        name = name or (obj.name or (obj.addresses[0].split("/")[0] if obj.addresses else f"dev{id(obj):x}"))
        pub = obj.public_key
        out.append(_Obj(_ptr_id(obj.ptr), f"{name}/wg", 1, key_id(pub) if pub is not None else 0))
        if obj._host is not None:
            out.append(_Obj(_ptr_id(obj._host.ptr), f"{name}/host", 0))
        try:
            out.append(_Obj(key_id(obj.derp_public_key), f"{name}/derp", 3))
        except ConfigError:
            pass
    elif isinstance(obj, Gateway):
        name = name or f"gw{id(obj):x}"
        out.append(_Obj(_ptr_id(obj._p()), f"{name}/gateway", 2))
        out.append(_Obj(key_id(obj.public_key), f"{name}/gw-derp", 3))
    elif isinstance(obj, DerpServer):
        out.append(_Obj(_ptr_id(obj.ptr), name or "relay", 4))
    elif isinstance(obj, DerpClient):
        out.append(_Obj(key_id(obj.public_key), name or f"derp{id(obj):x}", 3))
    elif isinstance(obj, Host):
        out.append(_Obj(_ptr_id(obj.ptr), name or f"host{id(obj):x}", 0))
    elif isinstance(obj, int) and not isinstance(obj, bool):
        out.append(_Obj(obj, name or f"obj:{obj:x}", 9))  # a C object id (tests, tr_py_inject)
    else:
        raise ConfigError(
            f"trace.capture: cannot trace a {type(obj).__name__}; give peers, devices, hosts, "
            "gateways, DERP clients or DERP servers"
        )
    return out


# ---- the process-wide collector ----


class _Hub:
    """Starts/stops the C taps for the captures that run (the C filter is
    their union) and hands drained records to each."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.captures: list[Capture] = []
        self.thread: threading.Thread | None = None
        self.wake = threading.Event()
        self.buf = ffi.new("uint8_t[]", DRAIN_CHUNK)

    def _config(self) -> Any:
        cfg = ffi.new("struct tr_config *")
        caps = self.captures
        cfg.snaplen = max(c.snaplen for c in caps)
        cfg.ring_bytes = max(c.ring_bytes for c in caps)
        cfg.keys = 1 if any(c.keys for c in caps) else 0
        cfg.hops = 0 if any(c.hop_mask == 0 for c in caps) else _or(c.hop_mask for c in caps)
        objs = set()
        if all(c.objs for c in caps):
            objs = {o for c in caps for o in c.objs}
        if len(objs) > lib.TR_MAX_OBJS:
            raise ConfigError(f"trace: at most {lib.TR_MAX_OBJS} C objects can be filtered at once")
        cfg.nobjs = len(objs)
        for i, o in enumerate(sorted(objs)):
            cfg.objs[i] = o
        if len(caps) == 1:
            caps[0]._c_filters(cfg)
        return cfg

    def start(self, cap: Capture) -> None:
        with self.lock:
            first = not self.captures
            self.captures.append(cap)
            try:
                rc = lib.tr_py_start(self._config(), 1 if first else 0)
            except BaseException:
                self.captures.remove(cap)
                raise
            if rc < 0:
                self.captures.remove(cap)
                raise ConfigError(
                    "trace: bad capture settings (snaplen <= 65600, ring_bytes >= 4096, "
                    "at most 16 peers, a pattern of at most 16 bytes)"
                )
            if cap.live and (self.thread is None or not self.thread.is_alive()):
                self.wake.clear()
                self.thread = threading.Thread(target=self._run, name="spanza-trace", daemon=True)
                self.thread.start()

    def reconfigure(self) -> None:
        with self.lock:
            lib.tr_py_start(self._config(), 0)

    def stop(self, cap: Capture) -> None:
        with self.lock:
            if self.captures == [cap]:
                lib.tr_py_stop()  # first, so the last drain gets everything
            self.drain()
            self.captures.remove(cap)
            if self.captures:
                lib.tr_py_start(self._config(), 0)
            else:
                self.wake.set()

    def drain(self) -> int:
        """Copies the rings out as raw chunks, shared by the captures; no
        work per record here (records are parsed when a capture is read).
        Returns the bytes drained."""
        total = 0
        with self.lock:
            nrec = ffi.new("size_t *")
            while True:
                n = lib.tr_py_drain(self.buf, DRAIN_CHUNK, nrec)
                if not n:
                    break
                total += n
                chunk = ffi.buffer(self.buf, n)[:]
                for c in self.captures:
                    c._take(chunk, int(nrec[0]))
                if n < DRAIN_CHUNK // 2:
                    break
        return total

    def _run(self) -> None:
        # Poll often while records pour in, rarely while idle.
        wait = POLL_SECONDS
        while not self.wake.wait(wait):
            with self.lock:
                if not any(c.live for c in self.captures):
                    return
                busy = self.drain() >= DRAIN_CHUNK // 8
            wait = BUSY_POLL_SECONDS if busy else POLL_SECONDS


def _or(masks: Iterable[int]) -> int:
    m = 0
    for x in masks:
        m |= x
    return m


_hub = _Hub()


def _hop_mask(hops: Iterable[int | str] | None, drops: bool) -> int:
    if hops is None:
        return 0
    m = 1 << KEYS
    for h in hops:
        n = _HOP_BY_NAME.get(h) if isinstance(h, str) else h
        if n is None or not 0 < n < HOP_COUNT:
            raise ConfigError(f"hops: {h!r} is not a hop; one of {', '.join(_HOP_NAMES.values())}")
        m |= 1 << n
    if drops:
        m |= 1 << DROPS_BIT
    return m


# ---- the capture ----


class Capture:
    """A running (then finished) trace; see `capture`."""

    def __init__(
        self,
        objects: tuple[Any, ...],
        *,
        snaplen: int,
        hops: Iterable[int | str] | None,
        drops: bool,
        peers: Iterable[Any] | None,
        host: str | None,
        port: int | None,
        proto: str | int | None,
        pattern: tuple[int, bytes] | None,
        keys: bool,
        live: bool,
        ring_bytes: int,
        max_records: int,
    ) -> None:
        if snaplen < 0:
            raise ConfigError("snaplen: must be >= 0 (0 = whole packets)")
        self.snaplen = WHOLE_SNAPLEN if snaplen == 0 else min(snaplen, WHOLE_SNAPLEN)
        self.hop_mask = _hop_mask(hops, drops)
        self.keys = keys
        self.live = live
        self.ring_bytes = ring_bytes
        self.max_records = max_records
        self._objs: dict[int, _Obj] = {}
        for o in objects:
            for co in _objects_of(o):
                self._objs.setdefault(co.id, co)
        self.objs = frozenset(self._objs)
        self._peers = [key_id(p) for p in (peers or ())]
        self._host, self._port, self._proto, self._pattern = host, port, proto, pattern
        self._check_filters()
        self._records: list[Record] = []
        self._chunks: list[bytes] = []  # drained, not yet parsed
        self._kept = 0  # records in _records and _chunks
        self._lock = threading.Lock()
        self.dropped_py = 0  # records beyond max_records
        self._new = 0
        self.running = False
        self._stats0: tuple[int, int] = (0, 0)
        self._stats1: tuple[int, int] | None = None
        self._end_ns: int | None = None
        mono, wall = ffi.new("uint64_t *"), ffi.new("uint64_t *")
        lib.tr_py_clocks(mono, wall)
        self.wall_offset_ns = int(wall[0]) - int(mono[0])

    # -- filters --

    def _check_filters(self) -> None:
        if len(self._peers) > lib.TR_MAX_PEERS:
            raise ConfigError(f"peers: at most {lib.TR_MAX_PEERS}")
        if self._host is not None:
            try:
                ipaddress.ip_address(self._host)
            except ValueError:
                raise ConfigError(f"host: {self._host!r} is not an IPv4/IPv6 address") from None
        if self._port is not None and not 0 < self._port < 65536:
            raise ConfigError(f"port: {self._port} is not 1..65535")
        if isinstance(self._proto, str) and self._proto.lower() not in (
            "tcp",
            "udp",
            "icmp",
            "icmpv6",
        ):
            raise ConfigError(f"proto: {self._proto!r} is not tcp, udp, icmp, icmpv6 or a number")
        if self._pattern is not None:
            off, val = self._pattern
            if not 0 < len(val) <= lib.TR_MAX_PATTERN or not 0 <= off < 65536:
                raise ConfigError(f"pattern: (offset, bytes) with 1..{lib.TR_MAX_PATTERN} bytes")

    def _c_filters(self, cfg: Any) -> None:
        cfg.npeers = len(self._peers)
        for i, p in enumerate(self._peers):
            cfg.peers[i] = p
        if self._host is not None:
            a = ipaddress.ip_address(self._host)
            cfg.ip_af = a.version
            ffi.memmove(cfg.ip_addr, a.packed, len(a.packed))
        if self._port is not None:
            cfg.ip_port = self._port
        if self._proto is not None:
            names = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58}
            cfg.ip_proto = names[self._proto.lower()] if isinstance(self._proto, str) else int(self._proto)
        if self._pattern is not None:
            off, val = self._pattern
            cfg.pat_off, cfg.pat_len = off, len(val)
            for i, b in enumerate(val):
                cfg.pat_val[i], cfg.pat_mask[i] = b, 0xFF

    # -- lifetime --

    def start(self) -> Capture:
        self._stats0 = _c_counts()
        _hub.start(self)
        self.running = True
        return self

    def stop(self) -> None:
        if not self.running:
            return
        _hub.stop(self)
        self.running = False
        self._stats1 = _c_counts()
        self._end_ns = _mono_ns()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- records --

    def _take(self, chunk: bytes, records: int) -> None:
        with self._lock:
            if self._kept + records > self.max_records:
                self.dropped_py += records  # whole chunks: the bound holds without parsing
                return
            self._kept += records
            self._chunks.append(chunk)

    def _parse(self) -> None:
        """Turns the drained chunks into records (this capture's objects and
        hops). Caller holds _lock."""
        chunks, self._chunks = self._chunks, []
        objs, mask, snap = self._objs, self.hop_mask, self.snaplen
        for chunk in chunks:
            off, n = 0, len(chunk)
            while off < n:
                h = _REC_HDR.unpack_from(chunk, off)
                size, hop, reason, obj, caplen = h[0], h[1], h[2], h[5], h[11]
                start = off + _REC
                off += size
                if self.objs and obj not in objs:
                    continue
                if mask and not (mask >> (DROPS_BIT if reason else hop) & 1):
                    continue
                if caplen > snap and hop != KEYS:
                    caplen = snap  # another capture asked for more
                o = objs.get(obj)
                self._records.append(Record(h, chunk[start : start + caplen], o.label if o else f"obj:{obj:x}"))

    def poll(self) -> list[Record]:
        """Drains the rings now; the records that arrived since the last poll
        (the live mode of a notebook: call it while traffic flows)."""
        if self.running:
            _hub.drain()
        with self._lock:
            self._parse()
            new = self._records[self._new :]
            self._new = len(self._records)
        return sorted(new, key=_order)

    def records(self, hop: int | str | None = None) -> list[Record]:
        """Every record kept, in order (optionally of one hop)."""
        if self.running:
            _hub.drain()
        with self._lock:
            self._parse()
            recs = sorted(self._records, key=_order)
        if hop is not None:
            h = _HOP_BY_NAME.get(hop) if isinstance(hop, str) else hop
            recs = [r for r in recs if r.hop == h]
        return recs

    def drops(self) -> list[Record]:
        return [r for r in self.records() if r.dropped]

    @property
    def overflow(self) -> int:
        """Records the taps could not keep (ring full) while this capture ran
        (shared with concurrent captures), plus those beyond max_records."""
        end = self._stats1 if self._stats1 is not None else _c_counts()
        return end[1] - self._stats0[1] + self.dropped_py

    def keylog(self) -> str:
        """The WireGuard key log (tshark's format) of the handshakes seen."""
        names = (
            "LOCAL_STATIC_PRIVATE_KEY",
            "REMOTE_STATIC_PUBLIC_KEY",
            "LOCAL_EPHEMERAL_PRIVATE_KEY",
            "PRESHARED_KEY",
        )
        lines = []
        for r in self.records(KEYS):
            for i, n in enumerate(names):
                lines.append(f"{n} = {base64.b64encode(r.data[32 * i : 32 * i + 32]).decode()}")
        return "\n".join(lines) + ("\n" if lines else "")

    def journeys(self) -> list[Journey]:
        """Each packet's path hop by hop (see `Journey`)."""
        return _journeys(self.records(), self._end_ns)

    # -- views --

    def summary(self) -> Summary:
        return Summary(self)

    def to_pandas(self) -> Any:
        """A DataFrame of the records (needs pandas: pip install pandas)."""
        try:
            import pandas as pd  # type: ignore[import-untyped]
        except ImportError:
            raise ImportError("Capture.to_pandas needs pandas (pip install pandas)") from None
        recs = self.records()
        jid: dict[int, int] = {}
        for j in self.journeys():
            for r in j.records:
                jid[r.seq] = j.id
            if j.drop is not None:
                jid[j.drop.seq] = j.id
        t0 = recs[0].t_ns if recs else 0
        return pd.DataFrame(
            [
                {
                    "seq": r.seq,
                    "t_ms": (r.t_ns - t0) / 1e6,
                    "object": r.label,
                    "hop": r.hop_name,
                    "length": r.length,
                    "dropped": r.reason_name or None,
                    "journey": jid.get(r.seq),
                    "summary": r.summary(),
                }
                for r in recs
                if r.hop != KEYS
            ]
        )

    def sequence_diagram(self, max_journeys: int = 60) -> Diagram:
        """One lane per host/WireGuard/gateway/DERP client/relay, one arrow
        per hop, drops marked (needs matplotlib)."""
        return Diagram(self, max_journeys)

    def write_pcapng(self, path: str | os.PathLike[str], keylog_file: str | os.PathLike[str] | None = None) -> str:
        """Writes every record to a pcapng file: one interface per tap point,
        the key log in a Decryption Secrets Block (so Wireshark decrypts the
        WireGuard hops), DERP hops under UDP port 3340 for the dissector of
        `wireshark_plugin`. keylog_file: a key log to add (e.g. a device's
        ``keylog_file=``, for handshakes made before the capture started).
        Returns the path."""
        from spanza._pcapng_export import write

        extra = ""
        if keylog_file is not None:
            with open(keylog_file, encoding="ascii") as k:
                extra = k.read()
        path = os.fspath(path)
        with open(path, "wb") as f:
            write(self, f, extra)
        return path

    def follow(self, *objects: Any, name: str | None = None) -> Capture:
        """Names more objects (their records get labels, also those already
        kept). Records are filtered by object only if the capture was
        started with objects; then these are added to the filter too."""
        add = [co for o in objects for co in _objects_of(o, name)]
        with self._lock:
            for co in add:
                self._objs.setdefault(co.id, co)
            self._parse()
            for r in self._records:
                o = self._objs.get(r.obj)
                if o is not None:
                    r.label = o.label
        if self.objs:
            self.objs = frozenset(self._objs)
            if self.running:
                _hub.reconfigure()
        return self

    def lane_order(self) -> dict[int, int]:
        return {o.id: o.lane for o in self._objs.values()}

    def _objects(self) -> dict[int, _Obj]:
        return self._objs


def _mono_ns() -> int:
    mono, wall = ffi.new("uint64_t *"), ffi.new("uint64_t *")
    lib.tr_py_clocks(mono, wall)
    return int(mono[0])


def _c_counts() -> tuple[int, int]:
    st = ffi.new("struct tr_stats *")
    lib.tr_py_stats(st)
    return int(st.records), int(st.overflow)


def stats() -> dict[str, int]:
    """The taps' counters since the process started: records kept,
    overflow, producing threads, ring memory."""
    st = ffi.new("struct tr_stats *")
    lib.tr_py_stats(st)
    return {
        "records": int(st.records),
        "overflow": int(st.overflow),
        "rings": int(st.rings),
        "ring_bytes": int(st.ring_bytes),
        "enabled": int(st.enabled),
    }


def capture(
    *objects: Any,
    snaplen: int = HEADERS_SNAPLEN,
    hops: Iterable[int | str] | None = None,
    drops: bool = True,
    peers: Iterable[Any] | None = None,
    host: str | None = None,
    port: int | None = None,
    proto: str | int | None = None,
    pattern: tuple[int, bytes] | None = None,
    keys: bool = True,
    live: bool = True,
    ring_bytes: int = DEFAULT_RING_BYTES,
    max_records: int = DEFAULT_MAX_RECORDS,
) -> Capture:
    """Starts tracing; use as ``with capture(...) as cap:``.

    objects: what to trace (peers, devices, hosts, gateways, DERP clients or
    servers); none = everything in the process. snaplen: bytes kept per
    record (0 = whole packets; the default keeps headers). hops: hop names
    or numbers to record (see `hop_names`; default all); drops: also record
    drops. Filters applied in C: peers (public keys), and on plaintext hops
    host (an IP address, either side), port (either side), proto; pattern
    = (offset, bytes) on the recorded bytes of any hop. keys: record the
    handshakes' keys (for `write_pcapng`/`keylog`; they are secrets). live:
    a thread drains the rings while it runs (else only `poll`/the end do,
    and a full ring counts `overflow`). ring_bytes: ring size per runtime
    thread. max_records: the most records this capture keeps in Python.

    Several captures may run at once: each gets its objects and hops; the
    peer/IP/pattern filters work in C only while a capture runs alone.
    """
    cap = Capture(
        objects,
        snaplen=snaplen,
        hops=hops,
        drops=drops,
        peers=peers,
        host=host,
        port=port,
        proto=proto,
        pattern=pattern,
        keys=keys,
        live=live,
        ring_bytes=ring_bytes,
        max_records=max_records,
    )
    return cap.start()


# ---- summary ----


def _percentile(sorted_vals: list[float], q: float) -> float:
    if not sorted_vals:
        return 0.0
    i = min(len(sorted_vals) - 1, max(0, round(q * (len(sorted_vals) - 1))))
    return sorted_vals[i]


class Summary:
    """Per hop counts, bytes and drops; journey outcomes and latency
    percentiles (``str()`` for a table, ``.data`` for numbers)."""

    def __init__(self, cap: Capture) -> None:
        recs = cap.records()
        per: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        drops: Counter[tuple[str, str, str]] = Counter()
        for r in recs:
            if r.hop == KEYS:
                continue
            if r.dropped:
                drops[(r.label, r.hop_name, r.reason_name)] += r.counter if (not r.data and r.counter) else 1
                continue
            e = per[(r.label, r.hop_name)]
            e[0] += 1
            e[1] += r.length
        js = cap.journeys()
        delivered = sorted(j.duration_ms for j in js if j.status == "delivered")
        transit: dict[tuple[str, str], list[float]] = defaultdict(list)
        for j in js:
            for a, b in itertools.pairwise(j.records):
                transit[(a.hop_name, b.hop_name)].append((b.t_ns - a.t_ns) / 1e6)
        self.data: dict[str, Any] = {
            "hops": {f"{k[0]} {k[1]}": {"packets": v[0], "bytes": v[1]} for k, v in per.items()},
            "drops": {f"{k[0]} {k[1]} {k[2]}": n for k, n in drops.items()},
            "journeys": dict(Counter(j.status for j in js)),
            "latency_ms": {
                q: _percentile(delivered, p) for q, p in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))
            },
            "transit_ms": {
                f"{a} -> {b}": {
                    "n": len(v),
                    "p50": _percentile(sorted(v), 0.5),
                    "p99": _percentile(sorted(v), 0.99),
                }
                for (a, b), v in transit.items()
            },
            "overflow": cap.overflow,
            "records": len(recs),
        }

    def __getitem__(self, k: str) -> Any:
        return self.data[k]

    def __str__(self) -> str:
        d = self.data
        out = io.StringIO()
        out.write(
            f"{d['records']} records, overflow {d['overflow']}; journeys: "
            + ", ".join(f"{n} {s}" for s, n in sorted(d["journeys"].items()))
            + "\n"
        )
        lat = d["latency_ms"]
        out.write("delivery latency ms: " + " ".join(f"{k}={v:.3f}" for k, v in lat.items()) + "\n")
        out.write(f"{'object hop':<44}{'packets':>9}{'bytes':>12}\n")
        for k, v in d["hops"].items():
            out.write(f"{k:<44}{v['packets']:>9}{v['bytes']:>12}\n")
        if d["drops"]:
            out.write("drops:\n")
            for k, n in d["drops"].items():
                out.write(f"  {k}: {n}\n")
        return out.getvalue()

    def _repr_html_(self) -> str:
        import html

        return f"<pre>{html.escape(str(self))}</pre>"

    __repr__ = __str__


# ---- sequence diagram ----


class Diagram:
    """A sequence diagram of the journeys (matplotlib): ``_repr_png_`` and
    ``_repr_html_`` show it in a notebook; `save` writes PNG or SVG."""

    def __init__(self, cap: Capture, max_journeys: int) -> None:
        try:
            import matplotlib

            matplotlib.use("Agg", force=False)
        except ImportError:
            raise ImportError("Capture.sequence_diagram needs matplotlib (pip install matplotlib)") from None
        self.journeys = cap.journeys()[:max_journeys]
        lanes: dict[str, tuple[int, int]] = {}
        order = cap.lane_order()
        for j in self.journeys:
            for r in j.records + ([j.drop] if j.drop else []):
                if r.label not in lanes:
                    lanes[r.label] = (order.get(r.obj, 9), len(lanes))

        # Lanes by the side they are on (the address in the label), then
        # by layer: host, wg, gateway, derp; the relay in the middle.
        def lane_key(label: str) -> tuple[int, int, str]:
            layer, first = lanes[label]
            side = label.split("/")[0]
            return (
                0 if layer < 4 else 1,
                first if layer >= 4 else 0,
                side + f"{layer}",
            )

        names = sorted(lanes, key=lane_key)
        relay = [n for n in names if lanes[n][0] >= 4]
        sides = [n for n in names if lanes[n][0] < 4]
        left = [n for n in sides if n.split("/")[0] == sides[0].split("/")[0]] if sides else []
        right = [n for n in sides if n not in left]
        right.sort(key=lambda n: -lanes[n][0])
        self.lanes = left + relay + right
        self._fig: Any = None

    def figure(self) -> Any:
        """The matplotlib figure. Time runs down in event order (one row
        per record, so fast hops stay readable); long waits are labelled."""
        if self._fig is not None:
            return self._fig
        import matplotlib.pyplot as plt

        x = {n: i for i, n in enumerate(self.lanes)}
        recs = sorted(
            (r for j in self.journeys for r in j.records + ([j.drop] if j.drop else []) if r.label in x),
            key=_order,
        )
        row = {r.seq: i for i, r in enumerate(recs)}
        t0 = recs[0].t_ns if recs else 0
        fig, ax = plt.subplots(figsize=(max(6.0, 1.5 * len(self.lanes)), max(4.0, 0.12 * len(recs) + 2)))
        for i in x.values():
            ax.axvline(i, color="#bbbbbb", lw=1)
        colors = plt.get_cmap("tab10")
        for j in self.journeys:
            c = colors(j.id % 10)
            pts = [(x[r.label], row[r.seq], r.t_ns) for r in j.records if r.label in x]
            for (x0, y0, t0_), (x1, y1, t1_) in itertools.pairwise(pts):
                if x0 == x1:
                    ax.plot([x0, x1], [y0, y1], color=c, lw=1)
                else:
                    ax.annotate(
                        "",
                        xy=(x1, y1),
                        xytext=(x0, y0),
                        arrowprops={"arrowstyle": "->", "color": c, "lw": 1},
                    )
                if t1_ - t0_ >= LONG_WAIT_NS:
                    ax.annotate(
                        f"waited {(t1_ - t0_) / 1e6:.0f} ms",
                        ((x0 + x1) / 2, (y0 + y1) / 2),
                        color=c,
                        fontsize=7,
                        xytext=(4, 0),
                        textcoords="offset points",
                    )
            if j.drop is not None and j.drop.label in x:
                ax.plot([x[j.drop.label]], [row[j.drop.seq]], "x", color="red", ms=10, mew=2)
                ax.annotate(
                    j.drop.reason_name,
                    (x[j.drop.label], row[j.drop.seq]),
                    color="red",
                    fontsize=7,
                    xytext=(4, 0),
                    textcoords="offset points",
                )
            elif j.status == "stopped" and pts:
                ax.plot([pts[-1][0]], [pts[-1][1]], "o", mfc="none", color="orange", ms=9)
        step = max(1, len(recs) // 12)
        ax.set_yticks(range(0, len(recs), step))
        ax.set_yticklabels(
            [f"{(recs[i].t_ns - t0) / 1e6:.3f}" for i in range(0, len(recs), step)],
            fontsize=7,
        )
        ax.set_xticks(range(len(self.lanes)))
        ax.set_xticklabels(self.lanes, rotation=30, ha="right", fontsize=8)
        ax.set_xlim(-0.5, len(self.lanes) - 0.5)
        ax.invert_yaxis()
        ax.set_ylabel("ms since the first record (rows in event order)")
        ax.set_title(f"{len(self.journeys)} packet journeys (x: dropped, o: stopped)")
        fig.tight_layout()
        self._fig = fig
        return fig

    def save(self, path: str | os.PathLike[str]) -> str:
        """PNG or SVG by the file name."""
        self.figure().savefig(os.fspath(path))
        return os.fspath(path)

    def _repr_png_(self) -> bytes:
        b = io.BytesIO()
        self.figure().savefig(b, format="png")
        return b.getvalue()

    def _repr_html_(self) -> str:
        return f'<img src="data:image/png;base64,{base64.b64encode(self._repr_png_()).decode()}"/>'
