"""Volume through the netstack's socket bridges: big transfers intact, many
connections at once, and flow control that bounds memory."""

from __future__ import annotations

import hashlib
import random
import socket
import socketserver
import threading
import time

import pytest

from tests.integration.netstack_helpers import A4, A6

MiB = 1 << 20


def chunks(seed: int, total: int, size: int = MiB):
    rnd = random.Random(seed)
    for _ in range(total // size):
        yield rnd.randbytes(size)


def expected_sha(seed: int, total: int) -> str:
    h = hashlib.sha256()
    for c in chunks(seed, total):
        h.update(c)
    return h.hexdigest()


def drain_sha(sock: socket.socket) -> tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    buf = bytearray(MiB)
    while k := sock.recv_into(buf):
        h.update(memoryview(buf)[:k])
        n += k
    return n, h.hexdigest()


@pytest.mark.slow
def test_100_mib_each_way_arrives_intact(link_pair):
    a, b, wire = link_pair
    total = 100 * MiB
    lst = a.listen(6000)
    c = b.connect((A4, 6000), timeout=10)
    s, _ = lst.accept()
    results = {}

    def send(sock: socket.socket, seed: int) -> None:
        for chunk in chunks(seed, total):
            sock.sendall(chunk)
        sock.shutdown(socket.SHUT_WR)

    def recv(sock: socket.socket, name: str) -> None:
        results[name] = drain_sha(sock)

    threads = [
        threading.Thread(target=send, args=(c, 1)),
        threading.Thread(target=send, args=(s, 2)),
        threading.Thread(target=recv, args=(s, "at_a")),
        threading.Thread(target=recv, args=(c, "at_b")),
    ]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    elapsed = time.monotonic() - t0
    assert results["at_a"] == (total, expected_sha(1, total))
    assert results["at_b"] == (total, expected_sha(2, total))
    print(f"2 x 100 MiB full duplex in {elapsed:.2f} s")
    c.close()
    s.close()
    lst.close()


def test_200_concurrent_connections_complete_intact(link_pair):
    a, b, wire = link_pair
    n, size = 200, 64 * 1024

    class Echo(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            buf = bytearray(65536)
            while k := self.request.recv_into(buf):
                self.request.sendall(buf[:k])

    server = a.make_server(6001, Echo, socketserver.ThreadingTCPServer, backlog=n)
    server.daemon_threads = True
    st = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    st.start()
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def client(i: int) -> None:
        try:
            addr = A4 if i % 2 else A6
            sock = b.connect((addr, 6001), timeout=30)
            payload = random.Random(i).randbytes(size)
            barrier.wait(30)  # all 200 open at once
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            got = bytearray()
            while chunk := sock.recv(65536):
                got += chunk
            assert bytes(got) == payload, f"connection {i}: {len(got)} bytes, corrupted or short"
            sock.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    server.shutdown()
    st.join(10)
    server.server_close()
    assert not errors, errors[:3]
    assert all(not t.is_alive() for t in threads)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (a.stats()["tcp_open"] or b.stats()["tcp_open"]):
        time.sleep(0.05)
    assert a.stats()["tcp_open"] == 0 and b.stats()["tcp_open"] == 0


def test_slow_reader_slows_the_sender_and_bounds_memory(pair):
    a, b, wire = pair
    lst = a.listen(6002)
    c = b.connect((A4, 6002), timeout=5)
    s, _ = lst.accept()
    c.setblocking(False)
    pattern = bytes(range(256)) * 256  # 64 KiB
    sent = 0
    last_progress = time.monotonic()
    # Write as fast as possible while nobody reads: the sender must stall.
    while time.monotonic() - last_progress < 0.5:
        try:
            sent += c.send(pattern[sent % 65536 :])  # keep the stream periodic
            last_progress = time.monotonic()
        except BlockingIOError:
            time.sleep(0.01)
        assert sent < 64 * MiB, "no backpressure: the sender never stalled"
    in_flight = sent
    # Bounded by two socketpairs' buffers, lwIP's 1 MiB send buffer and the
    # 1 MiB receive window: a few MiB, not more.
    assert MiB < in_flight < 8 * MiB, in_flight
    print(f"in flight when the sender stalled: {in_flight} bytes")
    wire_bytes = sum(wire.stats()["bytes"])
    time.sleep(0.3)
    assert sum(wire.stats()["bytes"]) - wire_bytes < 64 * 1024  # stalled, not retransmitting
    # A slow reader lets the sender go on at its pace, and everything arrives.
    received = 0
    more = 0
    s.settimeout(5)
    buf = bytearray(256 * 1024)
    for _ in range(40):
        k = s.recv_into(buf)
        assert buf[:k] == (pattern * 5)[received % 65536 : received % 65536 + k]
        received += k
        try:
            more += c.send(pattern[(in_flight + more) % 65536 :])
        except BlockingIOError:
            pass
    c.setblocking(True)
    c.shutdown(socket.SHUT_WR)
    total = in_flight + more
    while k := s.recv_into(buf):
        assert buf[:k] == (pattern * 5)[received % 65536 : received % 65536 + k]
        received += k
    assert received == total
    c.close()
    s.close()
    lst.close()
