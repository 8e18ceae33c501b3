"""A capture as pcapng (`spanza.trace.Capture.write_pcapng`).

Every tap point is an interface with raw IP packets: plaintext hops carry
the IP packet itself; WireGuard hops carry the datagram in synthesized
IPv4/UDP headers; DERP hops carry the DERP frame in IPv4/UDP to port 3340,
which the shipped Lua dissector claims. Wireshark's WireGuard dissector
ties a handshake and its data to the UDP addresses, so every datagram of
one packet gets the same addresses at every hop: one address per
WireGuard device (10.99.x.y), from the packet's journey. The real UDP
addresses go into each packet's comment.
"""

from __future__ import annotations

import struct
from typing import Any, BinaryIO

from spanza import trace as tr
from spanza._pcapng import DIR_INBOUND, DIR_OUTBOUND, LINKTYPE_RAW, PcapngWriter

IPV4_HDR = 20
UDP_HDR = 8
IP_PROTO_UDP = 17
IP_TTL = 64
IP_DF = 0x4000
SYNTH_NET = (10, 99)


def _csum(b: bytes) -> int:
    s = int(sum(struct.unpack(f"!{len(b) // 2}H", b)))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _udp4(src: bytes, dst: bytes, port: int, payload: bytes, full_len: int) -> tuple[bytes, int]:
    """IPv4+UDP headers around (the captured part of) a payload of full_len."""
    total = IPV4_HDR + UDP_HDR + full_len
    ip = bytearray(
        struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            min(total, 0xFFFF),
            0,
            IP_DF,
            IP_TTL,
            IP_PROTO_UDP,
            0,
            src,
            dst,
        )
    )
    struct.pack_into("!H", ip, 10, _csum(bytes(ip)))
    udp = struct.pack("!HHHH", port, port, min(UDP_HDR + full_len, 0xFFFF), 0)
    return bytes(ip) + udp + payload, total


class _Addrs:
    """One synthesized IPv4 address per WireGuard identity."""

    def __init__(self) -> None:
        self.ids: dict[Any, int] = {}

    def __call__(self, ident: Any) -> bytes:
        n = self.ids.setdefault(ident, len(self.ids) + 1)
        return bytes([*SYNTH_NET, n >> 8 & 0xFF, n & 0xFF])


def _endpoints(journeys: list[tr.Journey], objs: dict[int, Any]) -> dict[int, tuple[bytes, bytes]]:
    """seq -> (src, dst) for every record of a journey that carries a
    datagram: the sending and the receiving WireGuard."""
    wg_key = {o.id: o.wg_key for o in objs.values() if o.wg_key}
    addr = _Addrs()
    out: dict[int, tuple[bytes, bytes]] = {}
    for j in journeys:
        recs = j.records + ([j.drop] if j.drop is not None else [])
        if not any(r.datagram is not None for r in recs):
            continue
        sent = next((r for r in recs if r.hop == tr.WG_CIPHER_OUT), None)
        got = next((r for r in recs if r.hop == tr.WG_CIPHER_IN), None)
        plain = next((r for r in recs if r.hop == tr.WG_DECRYPT), None)
        src: Any = wg_key.get(sent.obj, sent.obj) if sent else (plain.peer if plain else ("from", recs[0].obj))
        dst: Any = wg_key.get(got.obj, got.obj) if got else sent.peer if sent and sent.peer else ("to", recs[-1].obj)
        for r in recs:
            out[r.seq] = (addr(src), addr(dst))
    return out


def _packet(r: tr.Record, ends: tuple[bytes, bytes] | None, data: tr.Record | None = None) -> tuple[bytes, int] | None:
    """The bytes to write for r (data: the record whose bytes show the
    packet, for a drop without its own)."""
    d = data or r
    src, dst = ends or (bytes([*SYNTH_NET, 0, 1]), bytes([*SYNTH_NET, 0, 2]))
    if d.hop in tr.FRAME_HOPS:
        return _udp4(src, dst, tr.DERP_UDP_PORT, d.data, d.length)
    dg = d.datagram
    if dg is not None:
        return _udp4(src, dst, tr.WG_UDP_PORT, dg, d.datagram_length)
    ip = d.ip
    if ip:
        n = len(ip)
        return ip, max(n, d.length if d.hop != tr.WG_DECRYPT else n)
    return None


def write(cap: tr.Capture, f: BinaryIO, extra_keylog: str = "") -> None:
    recs = cap.records()
    journeys = cap.journeys()
    jid = {r.seq: j.id for j in journeys for r in j.records + ([j.drop] if j.drop is not None else [])}
    ends = _endpoints(journeys, cap._objects())
    by_seq = {r.seq: r for r in recs}
    w = PcapngWriter(f)
    keylog = cap.keylog() + extra_keylog
    if keylog:
        w.add_secrets(keylog.encode())
    ifaces: dict[tuple[int, int], int] = {}
    for r in recs:
        if r.hop == tr.KEYS:
            continue
        source = by_seq.get(r.ref) if r.dropped and not r.data else None
        pkt = _packet(r, ends.get(r.seq), source)
        if pkt is None:
            continue
        key = (r.obj, r.hop)
        if key not in ifaces:
            ifaces[key] = w.add_interface(
                LINKTYPE_RAW,
                f"{r.label}/{r.hop_name}",
                f"spanza tap {r.hop_name} on {r.label}",
            )
        notes = [f"spanza #{r.seq} {r.label} {r.hop_name}"]
        if r.seq in jid:
            notes.append(f"journey {jid[r.seq]}")
        if r.addr:
            notes.append(f"udp {r.addr}:{r.port}" + (f" local port {r.lport}" if r.lport else ""))
        if r.dropped:
            notes.append(f"DROPPED: {r.reason_name}")
        data, orig = pkt
        w.add_packet(
            ifaces[key],
            r.t_ns + cap.wall_offset_ns,
            data,
            orig,
            direction=DIR_OUTBOUND if r.hop in tr.OUT_HOPS else DIR_INBOUND,
            comment="; ".join(notes),
        )
