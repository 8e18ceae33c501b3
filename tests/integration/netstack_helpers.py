"""Shared pieces of the netstack tests: a wired pair of hosts and a few
packet builders/parsers for crafted input and captured output."""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from spanza.packets import checksum
from spanza.netstack import Host, MemoryWire, wired_pair

A4, B4 = "192.168.4.1", "192.168.4.2"
A6, B6 = "fd00::1", "fd00::2"


@dataclass
class WireGuardLink:
    """Two spanza.Devices on loopback UDP carrying two hosts: the link of
    ``link_pair``'s "wireguard" variant."""

    a: Any
    b: Any


@pytest.fixture(params=["wire", "wireguard"])
def link_pair(request: pytest.FixtureRequest) -> Iterator[tuple[Host, Host, Any]]:
    """Hosts .1/fd00::1 and .2/fd00::2 joined by a memory wire, or by two
    WireGuard devices over loopback UDP (Device(address=...)): the same
    tests hold on both."""
    if request.param == "wire":
        yield from _wired()
        return
    import spanza

    ka, kb = spanza.PrivateKey.generate(), spanza.PrivateKey.generate()
    with spanza.Device(ka, address=[f"{A4}/24", f"{A6}/64"]) as da, \
            spanza.Device(kb, address=[f"{B4}/24", f"{B6}/64"]) as db:
        da.add_peer(kb.public_key, endpoint=("127.0.0.1", db.listen_port), allowed_ips=[f"{B4}/32", f"{B6}/128"])
        db.add_peer(ka.public_key, endpoint=("127.0.0.1", da.listen_port), allowed_ips=[f"{A4}/32", f"{A6}/128"])
        yield da.host, db.host, WireGuardLink(da, db)


def _wired() -> Iterator[tuple[Host, Host, MemoryWire]]:
    a, b, wire = wired_pair([f"{A4}/24", f"{A6}/64"], [f"{B4}/24", f"{B6}/64"])
    try:
        yield a, b, wire
    finally:
        a.close()
        b.close()
        wire.close()


@pytest.fixture
def pair() -> Iterator[tuple[Host, Host, MemoryWire]]:
    yield from _wired()


def ipv4(src: str, dst: str, proto: int, payload: bytes, ttl: int = 64) -> bytes:
    hdr = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, ttl, proto, 0,
        ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed,
    )
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    return hdr + payload


def ipv6(src: str, dst: str, nexth: int, payload: bytes, hlim: int = 64) -> bytes:
    return struct.pack(
        "!IHBB16s16s", 6 << 28, len(payload), nexth, hlim,
        ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed,
    ) + payload


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
    def ports(self) -> tuple[int, int] | None:
        if self.proto in (6, 17) and len(self.payload) >= 4:
            return struct.unpack("!HH", self.payload[:4])
        return None


def parse(pkt: bytes) -> Packet:
    if pkt[0] >> 4 == 4:
        ihl = (pkt[0] & 15) * 4
        return Packet(4, str(ipaddress.ip_address(pkt[12:16])), str(ipaddress.ip_address(pkt[16:20])),
                      pkt[9], pkt[ihl:])
    return Packet(6, str(ipaddress.ip_address(pkt[8:24])), str(ipaddress.ip_address(pkt[24:40])), pkt[6], pkt[40:])


TCP_RST = 0x04
TCP_SYN = 0x02
