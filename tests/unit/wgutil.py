"""Helpers for the WireGuard core tests: IP packets and tunnel pairs."""

from __future__ import annotations

import ipaddress
import struct

from spanza.keys import PresharedKey
from spanza.packets import checksum
from spanza.wireguard import Tunnel, pump

A_IP, B_IP = "10.0.0.1", "10.0.0.2"


def ipv4_udp(src: str, dst: str, payload: bytes = b"hello", sport: int = 1000, dport: int = 2000) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    total = 20 + len(udp)
    hdr = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        total,
        0,
        0,
        64,
        17,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    return hdr + udp


def ipv6_udp(src: str, dst: str, payload: bytes = b"hello6") -> bytes:
    udp = struct.pack("!HHHH", 1000, 2000, 8 + len(payload), 0) + payload
    return (
        struct.pack("!IHBB", 6 << 28, len(udp), 17, 64)
        + ipaddress.IPv6Address(src).packed
        + ipaddress.IPv6Address(dst).packed
        + udp
    )


def pair(psk: bool = False, seed: int = 0, **kw) -> tuple[Tunnel, Tunnel]:
    """Two tunnels that know each other: a = 10.0.0.1 (+fd00::1), b = 10.0.0.2."""
    a = Tunnel(seed=seed * 2 + 1, address="192.0.2.1:51820", **kw)
    b = Tunnel(seed=seed * 2 + 2, address="192.0.2.2:51820", **kw)
    key = PresharedKey(bytes(range(32))) if psk else None
    a.add_peer(b.public_key, endpoint=b.address, allowed_ips=["10.0.0.2/32", "fd00::2/128"], preshared_key=key)
    b.add_peer(a.public_key, endpoint=a.address, allowed_ips=["10.0.0.1/32", "fd00::1/128"], preshared_key=key)
    return a, b


def advance(ms: int, *tunnels: Tunnel) -> None:
    for t in tunnels:
        t.advance(ms)


def run(ms: int, *tunnels: Tunnel, step: int = 10) -> None:
    """Advances all tunnels together in small steps, carrying datagrams
    between them after each step (so they see each other in time order)."""
    for _ in range(0, ms, step):
        for t in tunnels:
            t.advance(step)
        pump(*tunnels)


def kind(d: bytes) -> str:
    """A datagram's message kind: init, resp, cookie, data or k (keepalive)."""
    if d[0] == 4 and len(d) == 32:
        return "k"
    return {1: "init", 2: "resp", 3: "cookie", 4: "data"}.get(d[0], "?")


def simulate(ms: int, *tunnels: Tunnel, lose=None) -> list[tuple[int, int, str, bool]]:
    """Runs the tunnels on one shared clock for ms milliseconds, delivering
    every datagram at once, in time order. Returns the events
    (time, sender index, kind, lost). lose(time, sender, kind) -> True drops
    a datagram. The tunnels' clocks must be equal at the start."""
    end = tunnels[0].now + ms
    events: list[tuple[int, int, str, bool]] = []
    by_addr = {t.address: t for t in tunnels}

    def flush() -> None:
        for _ in range(1000):
            moved = False
            for i, t in enumerate(tunnels):
                for to, d in t.outgoing():
                    moved = True
                    k = kind(d)
                    lost = bool(lose and lose(t.now, i, k))
                    events.append((t.now, i, k, lost))
                    if not lost and to in by_addr:
                        by_addr[to].receive(d, t.address)
            if not moved:
                return
        raise AssertionError("datagrams never stop")

    flush()
    for _ in range(100_000):
        nxt = min((t.next_deadline() or 2**64) for t in tunnels)
        if nxt > end:
            break
        for t in tunnels:
            t.advance_to(max(t.now, nxt))
        flush()
    for t in tunnels:
        t.advance_to(end)
    flush()
    return events


def handshake(a: Tunnel, b: Tunnel) -> None:
    """a sends one packet to b; everything is carried until quiet."""
    assert a.send(ipv4_udp(A_IP, B_IP, b"hs")) is None
    pump(a, b)
    assert b.delivered() == [(a.public_key, ipv4_udp(A_IP, B_IP, b"hs"))]


__all__ = ["A_IP", "B_IP", "advance", "handshake", "ipv4_udp", "ipv6_udp", "kind", "pair", "pump", "run", "simulate"]
