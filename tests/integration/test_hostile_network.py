"""Hostility from the network, as an attacker would send it, against a
DerpServer and a Device: malformed frames from thousands of connections,
slowloris heads, half-open upgrades, 0xFFFFFFFF frame lengths, clients that
never read, connect/disconnect churn, TLS garbage, UDP garbage of every
size, handshake floods, hostile UAPI text. After each, bystanders still
relay and the counters that say what happened moved. Under `make asan`
this runs against the ASan+UBSan build: any sanitizer report aborts the
process and fails the run. Bounded: at most 2,000 connections, in waves."""

from __future__ import annotations

import hashlib
import os
import select
import socket
import ssl
import struct
import time
from collections.abc import Callable

import pytest

import spanza
from spanza import packets
from spanza.device import Device
from spanza.keys import PrivateKey
from tests.integration._derp_raw import (
    CLIENT_INFO,
    SEND_PACKET,
    RawDerp,
    assert_relays,
    connect,
    frame,
)
from tests.support import wait_for

WAVE = 200
UPGRADE = b"GET /derp HTTP/1.1\r\nHost: derp.test\r\nConnection: Upgrade\r\nUpgrade: DERP\r\n\r\n"
TLS_HELLO = bytes.fromhex("16030100c4010000c00303") + os.urandom(32) + b"\x00\x00\x02\x13\x01\x01\x00"


def wait_closed(socks: list[socket.socket], timeout: float = 10.0) -> int:
    """Waits until the server closed every socket (EOF or reset); returns how many did."""
    deadline = time.monotonic() + timeout
    pending = {s.fileno(): s for s in socks}
    closed = 0
    while pending and time.monotonic() < deadline:
        ready, _, _ = select.select(list(pending.values())[:1000], [], [], 0.2)
        for s in ready:
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if not data:
                closed += 1
                del pending[s.fileno()]
    for s in socks:
        s.close()
    return closed


def open_wave(port: int, n: int, payload: Callable[[int], bytes], shut: bool = True) -> list[socket.socket]:
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            s.sendall(payload(i))
            if shut:
                s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # already refused and reset: that is an answer too
        socks.append(s)
    return socks


def baseline_connections(server, n: int = 2) -> None:
    wait_for(lambda: server.stats()["connections"] == n, what=f"the server back to {n} connections", timeout=10)


# ---- DERP server ----

HOSTILE_OPENINGS: list[bytes] = [
    b"\x00" * 100,  # not HTTP at all
    TLS_HELLO,  # TLS on the plain port
    os.urandom(300),  # noise
    b"GET /derp HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n",  # head over 8 KiB
    b"GET /derp HTTP/2.0\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n" + b"pipelined junk" * 10,
    UPGRADE + struct.pack(">BI", CLIENT_INFO, 0xFFFFFFFF),  # 4 GiB ClientInfo
    UPGRADE + struct.pack(">BI", CLIENT_INFO, 60) + bytes(60),  # box shorter than its overhead
    UPGRADE + frame(SEND_PACKET, bytes(32) + b"x"),  # not ClientInfo first
    UPGRADE + frame(CLIENT_INFO, os.urandom(32) + os.urandom(100)),  # box that does not open
]


def test_malformed_openings_from_2000_connections(server, bystanders):
    before = server.stats()
    total = 0
    for wave in range(2000 // WAVE):
        socks = open_wave(server.port, WAVE, lambda i, w=wave: HOSTILE_OPENINGS[(w * WAVE + i) % len(HOSTILE_OPENINGS)])
        assert wait_closed(socks) == WAVE, "a hostile connection was left open"
        total += WAVE
        assert_relays(*bystanders)
    baseline_connections(server)
    after = server.stats()
    assert after["accepts"] - before["accepts"] >= total
    assert after["close_http_error"] > before["close_http_error"]
    assert after["close_handshake_error"] - before["close_handshake_error"] >= 4 * total // len(HOSTILE_OPENINGS)
    assert after["clients"] == 2


def test_slowloris_heads_are_cut_at_the_request_deadline(server, bystanders):
    before = server.stats()
    socks = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(100)]
    head = UPGRADE[:40]
    for i in range(len(head)):  # one byte per connection per round
        for s in socks:
            s.send(head[i : i + 1])
        if i % 10 == 0:
            assert_relays(*bystanders)
    assert server.stats()["connections"] == 2 + len(socks)
    server.advance_clock(31_000)  # past the 30 s request-head deadline
    assert wait_closed(socks) == len(socks)
    after = server.stats()
    assert after["close_handshake_timeout"] - before["close_handshake_timeout"] == len(socks)
    assert_relays(*bystanders)
    baseline_connections(server)


def test_half_open_upgrades_time_out(server, bystanders):
    before = server.stats()
    socks = open_wave(server.port, 100, lambda i: UPGRADE, shut=False)
    wait_for(lambda: server.stats()["upgrades"] - before["upgrades"] == len(socks), what="the upgrades", timeout=10)
    assert_relays(*bystanders)
    server.advance_clock(11_000)  # past the 10 s handshake deadline
    assert wait_closed(socks) == len(socks)
    assert server.stats()["close_handshake_timeout"] - before["close_handshake_timeout"] == len(socks)
    assert_relays(*bystanders)


def test_frame_lengths_of_0xffffffff(server, bystanders):
    before = server.stats()
    # A known type: refused at the header, the body is never awaited.
    c = connect(server.port)
    c.send(struct.pack(">BI", SEND_PACKET, 0xFFFFFFFF) + bytes(64))
    c.expect_closed()
    assert server.stats()["close_protocol_error"] == before["close_protocol_error"] + 1
    # An unknown type is skipped whatever its size (spec §13): the server
    # discards what comes without holding it, and the connection lives on.
    d = connect(server.port)
    d.send(struct.pack(">BI", 0x7E, 0xFFFFFFFF))
    for _ in range(64):
        d.send(os.urandom(16384))
    assert_relays(*bystanders)
    assert server.stats()["clients"] == 3
    c.close()
    d.close()
    baseline_connections(server)


def test_clients_that_never_read(server, bystanders):
    before = server.stats()
    deaf = []
    for _ in range(4):
        r = RawDerp(server.port)
        r.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        r.handshake()
        deaf.append(r)
    sender = bystanders[0]
    blob = os.urandom(65536)
    for r in deaf:
        for _ in range(150):  # ~10 MB each, more than the socket buffers hold, never read
            sender.send_packet(r.pub, blob)
    wait_for(lambda: server.stats()["drop_queue_head"] > before["drop_queue_head"], what="queue drops", timeout=10)
    assert_relays(*bystanders)
    server.advance_clock(3_000)  # past the 2 s write deadline of the stuck ones
    wait_for(
        lambda: server.stats()["close_write_timeout"] - before["close_write_timeout"] == len(deaf),
        what="write timeouts",
        timeout=10,
    )
    for r in deaf:
        r.close()
    assert_relays(*bystanders)
    baseline_connections(server)


def test_connect_disconnect_churn(server, bystanders):
    before = server.stats()
    for i in range(2000):
        s = socket.socket()
        if i % 2:  # half of them leave with a reset instead of a FIN
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.connect(("127.0.0.1", server.port))
        if i % 3 == 0:
            s.send(UPGRADE[: i % len(UPGRADE)])
        s.close()
        if i % 500 == 0:
            assert_relays(*bystanders)
    wait_for(
        lambda: server.stats()["accepts"] - before["accepts"] >= 2000,
        what="every churned connection accepted",
        timeout=10,
    )
    baseline_connections(server)
    assert_relays(*bystanders)


def test_tls_garbage():
    with spanza.DerpServer(tls=True, hostname="derp.test") as s:
        ctx = ssl.create_default_context(cadata=s.ca_cert_pem)
        a = connect(s.port, tls_ctx=ctx, server_hostname="derp.test")
        b = connect(s.port, tls_ctx=ctx, server_hostname="derp.test")
        garbage = [
            UPGRADE,
            b"\x16\x03\x01\xff\xff" + os.urandom(200),
            TLS_HELLO[:20],
            os.urandom(1000),
            b"\x16\x03\x03\x00\x05\x01\x00\x00\x01\x00",
            bytes(5000),
        ]
        socks = open_wave(s.port, 300, lambda i: garbage[i % len(garbage)])
        assert wait_closed(socks) == len(socks)
        assert_relays(a, b)
        assert s.stats()["close_http_error"] >= len(socks) // 2
        baseline_connections(s)
        a.close()
        b.close()


# ---- Device: UDP port and UAPI socket ----

A4, B4 = "10.88.0.1", "10.88.0.2"


@pytest.fixture
def pair():
    ka, kb = PrivateKey.generate(), PrivateKey.generate()
    with Device(private_key=ka) as a, Device(private_key=kb) as b:
        a.add_peer(kb.public_key, endpoint=("127.0.0.1", b.listen_port), allowed_ips=[f"{B4}/32"])
        b.add_peer(ka.public_key, endpoint=("127.0.0.1", a.listen_port), allowed_ips=[f"{A4}/32"])
        pkt = packets.icmp_echo(A4, B4, 1, 1)
        a.write_packet(pkt)  # the session exists before the hostility starts
        assert b.read_packet(timeout=5) == pkt
        yield a, b, kb


def still_relays(a: Device, b: Device) -> None:
    pkt = packets.udp(A4, B4, 1000, 2000, os.urandom(200))
    a.write_packet(pkt)
    assert b.read_packet(timeout=5) == pkt


def test_device_udp_garbage_of_every_size(pair):
    a, b, _ = pair
    before = b.stats()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent = 0
    try:
        for n in list(range(1600)) + [2000, 4096, 9000, 32768, 65507]:
            body = os.urandom(n)
            if n >= 4 and n % 5 == 0:  # a plausible type and reserved bytes
                body = bytes([1 + n % 4, 0, 0, 0]) + body[4:]
            s.sendto(body, ("127.0.0.1", b.listen_port))
            sent += 1
            if sent % 200 == 0:
                time.sleep(0.005)  # let the device drain: the kernel would drop, not the device
    finally:
        s.close()
    still_relays(a, b)
    after = b.stats()
    got = after["udp_rx_datagrams"] - before["udp_rx_datagrams"]
    dropped = sum(after["drops"].values()) - sum(before["drops"].values())
    assert got >= sent * 0.9
    assert dropped >= got - 2  # everything but the relayed packet is dropped and counted


def _mac1(msg: bytes, responder_pub: bytes) -> bytes:
    key = hashlib.blake2s(b"mac1----" + responder_pub).digest()
    return hashlib.blake2s(msg, key=key, digest_size=16).digest()


def test_device_handshake_flood(pair):
    a, b, kb = pair
    pub = kb.public_key.raw
    before = b.stats()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    n = 3000
    try:
        for i in range(n):
            body = struct.pack("<II", 1, i) + os.urandom(32 + 48 + 28)
            s.sendto(body + _mac1(body, pub) + bytes(16), ("127.0.0.1", b.listen_port))
            if i % 200 == 0:
                time.sleep(0.005)
    finally:
        s.close()
    still_relays(a, b)  # the established session is untouched
    after = b.stats()
    got = after["udp_rx_datagrams"] - before["udp_rx_datagrams"]
    d0, d1 = before["drops"], after["drops"]
    refused = sum(d1[k] - d0[k] for k in ("handshake_decrypt", "cookie_needed", "rate_limited"))
    assert got >= n * 0.9 and refused >= got - 2
    assert after["initiations_received"] == before["initiations_received"]


UAPI_HOSTILE: list[bytes] = [
    b"\x00\xff\xfe garbage\n\n",
    b"set=1\nprivate_key=zz\n\n",
    b"set=1\npublic_key=" + b"0" * 64 + b"\nallowed_ip=999.1.1.1/99\nendpoint=[::1:1\n\n",
    b"set=1\nlisten_port=99999\nfwmark=-1\npersistent_keepalive_interval=70000\n\n",
    b"get=1\r\n\r\n",
    b"get=2\n\n",
    b"set=1\n" + b"replace_peers=true\n" * 5000 + b"\n",
    b"set=1\npublic_key=" + b"1" * 64 + b"\n" + b"allowed_ip=10.0.0.0/8\n" * 3000 + b"remove=true\n\n",
    b"set=1\n" + b"x" * 300000,  # a line that never ends
    b"set=1\npreshared_key=",  # cut off mid-request
    b"\n\n\n\n",
]


def test_uapi_hostile_text(tmp_path):
    name = f"spzh{os.getpid() % 100000}"
    key = PrivateKey.generate()
    with Device(private_key=key, name=name, uapi_dir=str(tmp_path)) as d:
        path = str(tmp_path / f"{name}.sock")
        config = d.ipc_get()
        # Connections left open while the others are served.
        idle = []
        for _ in range(50):
            u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            u.connect(path)
            u.send(b"set=1\n")
            idle.append(u)
        answered = 0
        for req in UAPI_HOSTILE:
            u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            u.settimeout(5)
            u.connect(path)
            try:
                u.sendall(req)
                u.shutdown(socket.SHUT_WR)
                reply = b""
                while True:
                    chunk = u.recv(65536)
                    if not chunk:
                        break
                    reply += chunk
            except OSError:
                reply = b"<reset>"
            finally:
                u.close()
            # An answer (errno=, as wireguard-go gives) or a close (unknown
            # operations, cut-off or endless requests): never a hang.
            assert reply == b"" or reply == b"<reset>" or b"errno=" in reply, (req[:40], reply[:200])
            answered += b"errno=" in reply
        for u in idle:
            u.close()
        assert d.public_key == key.public_key
        # Rejected requests changed nothing (a set is applied up to its first bad line, as in wireguard-go).
        assert "private_key=" + key.raw.hex() in d.ipc_get()
        assert d.ipc_get().count("public_key=") == config.count("public_key=")
        assert answered >= 5
        assert d.stats()["uapi_requests"] >= answered
