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
import ipaddress
import logging
import os
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from spanza._ffi import ffi, lib
from spanza._trace_record import (
    _HOP_BY_NAME,
    _HOP_NAMES,
    ARRIVED_HOPS,
    DC_QUEUE,
    DC_RX,
    DC_TX,
    DEV_IO,
    DEV_UDP_RX,
    DEV_UDP_TX,
    DGRAM_HOPS,
    DROPS_BIT,
    DS_CORE,
    DS_IN,
    DS_RELAY,
    FRAME_HOPS,
    GW_DERP_IN,
    GW_DERP_OUT,
    GW_UDP_IN,
    GW_UDP_OUT,
    HOP_COUNT,
    KEYS,
    NS_IN,
    NS_OUT,
    OUT_HOPS,
    PLAIN_HOPS,
    WG_CIPHER_IN,
    WG_CIPHER_OUT,
    WG_CORE,
    WG_DECRYPT,
    WG_ENCRYPT,
    Journey,
    Record,
    _journeys,
    _order,
    hop_names,
    key_id,
    reason_name,
)
from spanza._trace_views import Diagram, Summary
from spanza.errors import ConfigError

log = logging.getLogger("spanza.trace")

__all__ = [
    "ARRIVED_HOPS",
    "DC_QUEUE",
    "DC_RX",
    "DC_TX",
    "DEV_IO",
    "DEV_UDP_RX",
    "DEV_UDP_TX",
    "DGRAM_HOPS",
    "DS_CORE",
    "DS_IN",
    "DS_RELAY",
    "FRAME_HOPS",
    "GW_DERP_IN",
    "GW_DERP_OUT",
    "GW_UDP_IN",
    "GW_UDP_OUT",
    "KEYS",
    "NS_IN",
    "NS_OUT",
    "OUT_HOPS",
    "PLAIN_HOPS",
    "WG_CIPHER_IN",
    "WG_CIPHER_OUT",
    "WG_CORE",
    "WG_DECRYPT",
    "WG_ENCRYPT",
    "Capture",
    "Diagram",
    "Journey",
    "Record",
    "Summary",
    "capture",
    "hop_names",
    "key_id",
    "reason_name",
    "stats",
    "tshark_command",
    "wireshark_plugin",
]

# "Headers only": enough for IP+TCP with options, and a DERP frame header
# with its key in front of a WireGuard data header.
HEADERS_SNAPLEN = 128
WHOLE_SNAPLEN = 65600
DEFAULT_RING_BYTES = 4 << 20
DEFAULT_MAX_RECORDS = 500_000
POLL_SECONDS = 0.05
BUSY_POLL_SECONDS = 0.002
DRAIN_CHUNK = 1 << 20
DERP_UDP_PORT = 3340  # the port the DERP hops are written under (the dissector's)
WG_UDP_PORT = 51820

_REC = ffi.sizeof("struct tr_rec")
# struct tr_rec: size hop reason seq t_ns obj peer ref counter index len caplen port lport af pad addr
_REC_HDR = struct.Struct("<IHHQQQQQQIIIHHB7x16s")
assert _REC_HDR.size == _REC


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
    """A trace that starts when made (``with trace.capture(...) as cap:``)
    and stops with `stop` or at the end of the ``with`` block."""

    def __init__(
        self,
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
    ) -> None:
        """Starts tracing.

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
        self.start()

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
        """Starts recording (done when the capture is made)."""
        if self.running:
            return self
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

    def __repr__(self) -> str:
        with self._lock:
            kept = self._kept
        state = "running" if self.running else "stopped"
        return f"<Capture {state}: {kept} records kept, {len(self._objs)} objects, overflow {self.overflow}>"

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()

    def __enter__(self) -> Capture:
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


# `with capture(...) as cap:` reads as what it does; the class is the same.
capture = Capture
