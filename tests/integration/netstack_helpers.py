"""Shared pieces of the netstack tests: a wired pair of hosts and a few
packet builders/parsers for crafted input and captured output."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from spanza.packets import checksum

A4, B4 = "192.168.4.1", "192.168.4.2"
A6, B6 = "fd00::1", "fd00::2"


def ipv4(src: str, dst: str, proto: int, payload: bytes, ttl: int = 64) -> bytes:
    hdr = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(payload),
        1,
        0,
        ttl,
        proto,
        0,
        ipaddress.ip_address(src).packed,
        ipaddress.ip_address(dst).packed,
    )
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    return hdr + payload


def ipv6(src: str, dst: str, nexth: int, payload: bytes, hlim: int = 64) -> bytes:
    return (
        struct.pack(
            "!IHBB16s16s",
            6 << 28,
            len(payload),
            nexth,
            hlim,
            ipaddress.ip_address(src).packed,
            ipaddress.ip_address(dst).packed,
        )
        + payload
    )


def _pseudo(src: str, dst: str, proto: int, length: int) -> bytes:
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if s.version == 4:
        return s.packed + d.packed + struct.pack("!BBH", 0, proto, length)
    return s.packed + d.packed + struct.pack("!IxxxB", length, proto)


def icmp_echo(src: str, dst: str, ident: int = 0x1234, seq: int = 1, data: bytes = b"spanza") -> bytes:
    if ipaddress.ip_address(src).version == 4:
        body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + data
        body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
        return ipv4(src, dst, 1, body)
    body = struct.pack("!BBHHH", 128, 0, 0, ident, seq) + data
    body = body[:2] + struct.pack("!H", checksum(_pseudo(src, dst, 58, len(body)) + body)) + body[4:]
    return ipv6(src, dst, 58, body)


def tcp_syn(src: str, dst: str, sport: int, dport: int, seq: int = 1000) -> bytes:
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x02, 65535, 0, 0)
    v = ipaddress.ip_address(src).version
    c = checksum(_pseudo(src, dst, 6, len(seg)) + seg)
    seg = seg[:16] + struct.pack("!H", c) + seg[18:]
    return ipv4(src, dst, 6, seg) if v == 4 else ipv6(src, dst, 6, seg)


@dataclass
class Packet:
    version: int
    src: str
    dst: str
    proto: int
    payload: bytes

    @property
    def tcp_flags(self) -> int | None:
        return self.payload[13] if self.proto == 6 and len(self.payload) >= 20 else None

    @property
    def tcp(self) -> tuple[int, int, int, int]:
        """(seq, ack, window field, payload length) of a TCP segment."""
        assert self.proto == 6 and len(self.payload) >= 20
        seq, ack = struct.unpack("!II", self.payload[4:12])
        (wnd,) = struct.unpack("!H", self.payload[14:16])
        return seq, ack, wnd, len(self.payload) - (self.payload[12] >> 4) * 4

    @property
    def ports(self) -> tuple[int, int] | None:
        if self.proto in (6, 17) and len(self.payload) >= 4:
            return struct.unpack("!HH", self.payload[:4])
        return None


def parse(pkt: bytes) -> Packet:
    if pkt[0] >> 4 == 4:
        ihl = (pkt[0] & 15) * 4
        return Packet(
            4, str(ipaddress.ip_address(pkt[12:16])), str(ipaddress.ip_address(pkt[16:20])), pkt[9], pkt[ihl:]
        )
    return Packet(6, str(ipaddress.ip_address(pkt[8:24])), str(ipaddress.ip_address(pkt[24:40])), pkt[6], pkt[40:])


TCP_RST = 0x04
TCP_SYN = 0x02
