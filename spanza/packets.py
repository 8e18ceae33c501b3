"""Small IPv4/IPv6 packet builders and parsers for tests and scripts.

Enough to talk to a tunnel without a TCP/IP stack: ICMP/ICMPv6 echo and
UDP, with correct checksums, and `EchoResponder`, a thread that answers
pings arriving on a `Device` (like a host's kernel would)."""

from __future__ import annotations

import ipaddress
import logging
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union

from spanza.errors import SpanzaTimeoutError

log = logging.getLogger("spanza.packets")

Addr = Union[str, ipaddress.IPv4Address, ipaddress.IPv6Address]

PROTO_ICMP = 1
PROTO_UDP = 17
PROTO_ICMPV6 = 58
ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST = 0, 8
ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY = 128, 129


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return int(~s & 0xFFFF)


def _addr(a: Addr) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return a if not isinstance(a, str) else ipaddress.ip_address(a)


def ipv4(src: Addr, dst: Addr, proto: int, payload: bytes, ttl: int = 64, ident: int = 0) -> bytes:
    hdr = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0x4000, ttl, proto, 0, _addr(src).packed, _addr(dst).packed
    )
    return hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:] + payload


def ipv6(src: Addr, dst: Addr, next_header: int, payload: bytes, hop_limit: int = 64) -> bytes:
    return (
        struct.pack("!IHBB16s16s", 6 << 28, len(payload), next_header, hop_limit, _addr(src).packed, _addr(dst).packed)
        + payload
    )


def _pseudo6(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    return src + dst + struct.pack("!IxxxB", length, proto)


def icmp_echo(src: Addr, dst: Addr, ident: int, seq: int, data: bytes = b"", reply: bool = False) -> bytes:
    """An ICMP (IPv4) or ICMPv6 (IPv6) echo request, or reply."""
    s, d = _addr(src), _addr(dst)
    if s.version == 4:
        typ = ICMP_ECHO_REPLY if reply else ICMP_ECHO_REQUEST
        body = struct.pack("!BBHHH", typ, 0, 0, ident, seq) + data
        body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
        return ipv4(s, d, PROTO_ICMP, body)
    typ = ICMPV6_ECHO_REPLY if reply else ICMPV6_ECHO_REQUEST
    body = struct.pack("!BBHHH", typ, 0, 0, ident, seq) + data
    csum = checksum(_pseudo6(s.packed, d.packed, PROTO_ICMPV6, len(body)) + body)
    body = body[:2] + struct.pack("!H", csum) + body[4:]
    return ipv6(s, d, PROTO_ICMPV6, body)


def udp(src: Addr, dst: Addr, sport: int, dport: int, data: bytes) -> bytes:
    s, d = _addr(src), _addr(dst)
    body = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    if s.version == 4:
        pseudo = s.packed + d.packed + struct.pack("!xBH", PROTO_UDP, len(body))
    else:
        pseudo = _pseudo6(s.packed, d.packed, PROTO_UDP, len(body))
    csum = checksum(pseudo + body) or 0xFFFF
    body = body[:6] + struct.pack("!H", csum) + body[8:]
    return (ipv4 if s.version == 4 else ipv6)(s, d, PROTO_UDP, body)


@dataclass
class Packet:
    """A parsed packet: addresses, protocol, upper-layer bytes; for ICMP
    echo also type/ident/seq/data; for UDP the ports and data."""

    version: int
    src: Any
    dst: Any
    proto: int
    payload: bytes
    checksum_ok: bool = True
    icmp_type: int | None = None
    ident: int | None = None
    seq: int | None = None
    sport: int | None = None
    dport: int | None = None
    data: bytes = b""

    @property
    def is_echo_request(self) -> bool:
        return self.icmp_type in (ICMP_ECHO_REQUEST, ICMPV6_ECHO_REQUEST)

    @property
    def is_echo_reply(self) -> bool:
        return (self.proto == PROTO_ICMP and self.icmp_type == ICMP_ECHO_REPLY) or (
            self.proto == PROTO_ICMPV6 and self.icmp_type == ICMPV6_ECHO_REPLY
        )


def parse(pkt: bytes) -> Packet:
    """Parses an IPv4 (no options needed) or IPv6 (no extension headers)
    packet; raises ValueError for anything else."""
    if not pkt:
        raise ValueError("empty packet")
    v = pkt[0] >> 4
    if v == 4:
        ihl = (pkt[0] & 15) * 4
        total = struct.unpack("!H", pkt[2:4])[0]
        if len(pkt) < 20 or total > len(pkt) or ihl < 20:
            raise ValueError("bad IPv4 header")
        p = Packet(4, ipaddress.IPv4Address(pkt[12:16]), ipaddress.IPv4Address(pkt[16:20]), pkt[9], pkt[ihl:total])
        p.checksum_ok = checksum(pkt[:ihl]) == 0
        pseudo = pkt[12:20] + struct.pack("!xBH", p.proto, len(p.payload))
    elif v == 6:
        if len(pkt) < 40:
            raise ValueError("bad IPv6 header")
        plen = struct.unpack("!H", pkt[4:6])[0]
        p = Packet(6, ipaddress.IPv6Address(pkt[8:24]), ipaddress.IPv6Address(pkt[24:40]), pkt[6], pkt[40 : 40 + plen])
        pseudo = _pseudo6(pkt[8:24], pkt[24:40], p.proto, len(p.payload))
    else:
        raise ValueError(f"not IPv4/IPv6 (version {v})")
    body = p.payload
    if p.proto in (PROTO_ICMP, PROTO_ICMPV6) and len(body) >= 8:
        p.icmp_type = body[0]
        p.ident, p.seq = struct.unpack("!HH", body[4:8])
        p.data = body[8:]
        p.checksum_ok &= checksum((pseudo if p.proto == PROTO_ICMPV6 else b"") + body) == 0
    elif p.proto == PROTO_UDP and len(body) >= 8:
        p.sport, p.dport = struct.unpack("!HH", body[:4])
        p.data = body[8:]
        if body[6:8] != b"\0\0":
            p.checksum_ok &= checksum(pseudo + body) == 0
    return p


def echo_reply_for(pkt: bytes) -> bytes | None:
    """The echo reply a host would send for an echo request, else None."""
    try:
        p = parse(pkt)
    except ValueError:
        return None
    if not p.is_echo_request or not p.checksum_ok:
        return None
    return icmp_echo(p.dst, p.src, p.ident or 0, p.seq or 0, p.data, reply=True)


def read_until(device: Any, pred: Callable[[bytes], bool], timeout: float = 5.0) -> bytes:
    """The next packet out of ``device`` (``read_packet``) for which
    ``pred`` holds; others are discarded. TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise SpanzaTimeoutError(f"no matching packet within {timeout} s")
        pkt: bytes = device.read_packet(timeout=left)
        if pred(pkt):
            return pkt


class EchoResponder(threading.Thread):
    """Answers echo requests that come out of a device, addressed to one of
    `addresses` (all if empty); keeps every other packet in `others`. Stops
    when the device closes or `stop()` is called."""

    def __init__(self, device: Any, addresses: tuple[str, ...] = ()) -> None:
        super().__init__(name="spanza-echo", daemon=True)
        self.device = device
        self.addresses = {ipaddress.ip_address(a) for a in addresses}
        self.answered = 0
        self.others: list[bytes] = []
        self._stop_evt = threading.Event()

    def run(self) -> None:
        from spanza.errors import ClosedError

        while not self._stop_evt.is_set():
            try:
                pkt = self.device.read_packet(timeout=0.1)
            except TimeoutError:
                continue
            except ClosedError:
                return
            reply = echo_reply_for(pkt)
            if reply is None or (self.addresses and parse(pkt).dst not in self.addresses):
                self.others.append(pkt)
                continue
            # Counted before the write: the peer may act on the reply (a
            # ping exits) before this thread runs again.
            self.answered += 1
            try:
                self.device.write_packet(reply)
            except Exception as e:  # a test reads the count; keep serving
                self.answered -= 1
                log.debug("echo reply not sent: %s", e)

    def stop(self) -> None:
        self._stop_evt.set()
        self.join(5)

    def __enter__(self) -> EchoResponder:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
