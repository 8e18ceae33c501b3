"""Hostile servers: whatever a server sends, the client drops that
connection, counts it, says why, reconnects, and never crashes."""

from __future__ import annotations

import json
import os
import random
import struct
from collections.abc import Callable

import pytest
from nacl.public import Box, PublicKey

import spanza
from tests.integration.derp_fake_server import (
    CLIENT_INFO,
    MAGIC,
    SERVER_INFO,
    SERVER_KEY,
    Conn,
    FakeServer,
    expect_sent,
    frame,
    hold,
    serve,
)

PEER = bytes(range(32))


def sends(payload: bytes, *, after: Callable[[Conn], None]) -> Callable[[Conn], None]:
    """A server script: the steps of `after`, then `payload`, then silence."""

    def script(conn: Conn) -> None:
        after(conn)
        conn.send(payload)
        hold(conn, 5)

    return script


def greeted(conn: Conn) -> None:
    conn.read_request()
    conn.send_101()


def keyed(conn: Conn) -> None:
    greeted(conn)
    conn.send(frame(SERVER_KEY, MAGIC + conn.server.pub))
    assert conn.read_frame()[0] == CLIENT_INFO


def raw(payload: bytes) -> Callable[[Conn], None]:
    return sends(payload, after=Conn.read_request)


def after_101(payload: bytes) -> Callable[[Conn], None]:
    return sends(payload, after=greeted)


def after_server_key(payload: bytes) -> Callable[[Conn], None]:
    return sends(payload, after=keyed)


def handshake_then(payload: bytes) -> Callable[[Conn], None]:
    return sends(payload, after=Conn.handshake)


def bad_server_info(plaintext: bytes) -> Callable[[Conn], None]:
    def script(conn: Conn) -> None:
        greeted(conn)
        conn.send(frame(SERVER_KEY, MAGIC + conn.server.pub))
        _, payload = conn.read_frame()
        sealed = Box(conn.server.priv, PublicKey(payload[:32])).encrypt(plaintext)
        conn.send(frame(SERVER_INFO, bytes(sealed.nonce) + bytes(sealed.ciphertext)))
        hold(conn, 5)

    return script


CASES = {
    "garbage instead of HTTP": (raw(b"\x00\xffgarbage\r\n\r\n"), "malformed HTTP"),
    "HTTP 200": (raw(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"), "HTTP 200"),
    "HTTP 426": (raw(b"HTTP/1.1 426 Upgrade Required\r\n\r\n"), "HTTP 426"),
    "endless HTTP head": (raw(b"HTTP/1.1 101 Switching Protocols\r\n" + b"X: " + b"a" * 9000), "HTTP"),
    "not HTTP at all": (raw(os.urandom(64) + b"\r\n\r\n"), "HTTP"),
    "first frame not ServerKey": (after_101(frame(5, PEER + b"x")), "invalid server greeting"),
    "bad magic": (after_101(frame(SERVER_KEY, b"DERQ\xf0\x9f\x94\x91" + bytes(range(32)))), "invalid server greeting"),
    "short ServerKey": (after_101(frame(SERVER_KEY, MAGIC + bytes(31))), "invalid server greeting"),
    "ServerKey over 1024": (
        after_101(frame(SERVER_KEY, MAGIC + bytes(range(32)) + bytes(1000))),
        "invalid server greeting",
    ),
    "all-zero server key": (after_101(frame(SERVER_KEY, MAGIC + bytes(32))), "all-zero key"),
    "frame length 2^32-1": (after_101(struct.pack(">BI", SERVER_KEY, 0xFFFFFFFF)), "over the 1 MiB limit"),
    "ServerInfo box garbage": (after_server_key(frame(SERVER_INFO, os.urandom(80))), "invalid ServerInfo"),
    "ServerInfo too short": (after_server_key(frame(SERVER_INFO, os.urandom(10))), "invalid ServerInfo"),
    "ServerInfo not JSON": (bad_server_info(b"{not json"), "invalid ServerInfo"),
    "oversized frame after handshake": (handshake_then(struct.pack(">BI", 5, (1 << 20) + 1)), "over the 1 MiB limit"),
    "oversized unknown frame": (handshake_then(struct.pack(">BI", 0x42, (1 << 20) + 1)), "over the 1 MiB limit"),
    "oversized ServerInfo": (
        after_server_key(struct.pack(">BI", SERVER_INFO, (1 << 20) + 100)),
        "over the 1 MiB limit",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_server_is_dropped_counted_and_survived(name):
    script, why = CASES[name]
    with FakeServer([script, serve]) as srv:
        with spanza.DerpClient(srv.url, os.urandom(32), backoff_max_ms=100) as c:
            kind, _ = srv.results.get(timeout=10)  # only the good script reports
            assert kind == "connected" and srv.accepted == 2
            c.wait_connected(10)
            st = c.stats()
            assert st["protocol_errors"] == 1, st
            assert st["connect_failures"] + st["disconnects"] == 1
            assert why in c.last_error
            # and the next connection works
            c.send(PEER, b"ok")
            expect_sent(srv, PEER + b"ok")
        assert not srv.errors


def test_connection_closed_mid_frame():
    def truncated(conn):
        conn.handshake()
        conn.send(struct.pack(">BI", 5, 100) + PEER + b"partial")
        conn.close()

    with FakeServer([truncated, serve]) as srv:
        with spanza.DerpClient(srv.url, os.urandom(32), backoff_max_ms=100) as c:
            kind, _ = srv.results.get(timeout=10)
            assert kind == "connected" and srv.accepted == 2
            c.wait_connected(10)
            st = c.stats()
            assert st["protocol_errors"] == 0 and st["packets_recv"] == 0
            assert st["disconnects"] == 1 and st["reconnects"] == 1


def test_server_key_mismatch_is_refused():
    with FakeServer([serve]) as srv:
        with spanza.DerpClient(srv.url, os.urandom(32), server_key=os.urandom(32), backoff_max_ms=100) as c:
            # a protocol failure that repeats: said before the timeout
            with pytest.raises(spanza.errors.RelayError, match="does not match the expected key"):
                c.wait_connected(5)
            assert c.stats()["protocol_errors"] >= 1
        with spanza.DerpClient(srv.url, os.urandom(32), server_key=srv.pub) as c:
            c.wait_connected(5)


def test_random_bytes_never_crash_the_client():
    rng = random.Random(1234)
    scripts = []
    for i in range(24):
        blob = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 3000)))
        if i % 3 == 0:
            scripts.append(raw(blob))
        elif i % 3 == 1:
            scripts.append(after_101(blob))
        else:
            # plausible frame headers with random types and lengths
            frames = b"".join(
                struct.pack(">BI", rng.randint(0, 0x20), rng.randint(0, 300))
                + bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))
                for _ in range(20)
            )
            scripts.append(handshake_then(frames))
    scripts.append(serve)
    with FakeServer(scripts) as srv:
        with spanza.DerpClient(
            srv.url, os.urandom(32), backoff_base_ms=1, backoff_max_ms=20, read_timeout_ms=500, connect_timeout_ms=500
        ) as c:
            srv.wait_accepted(len(scripts), timeout=60)
            c.wait_connected(10)
            c.send(PEER, b"alive")
            expect_sent(srv, PEER + b"alive")
            assert c.stats()["connect_attempts"] >= len(scripts)


def test_client_info_is_sealed_to_the_server_key():
    """The ClientInfo box opens with the server's key and the client's
    public key, and holds exactly what Go's client sends."""
    with FakeServer([serve]) as srv:
        with spanza.DerpClient(srv.url, os.urandom(32)) as c:
            c.wait_connected(5)
            _, conn = srv.results.get(timeout=5)
            assert conn.client_info == json.loads('{"version":2,"CanAckPings":true}')


def test_http_head_dribbled_byte_by_byte_and_bare_lf():
    def dribble(conn):
        conn.read_request()
        head = b"HTTP/1.1 101 Switching Protocols\nUpgrade: DERP\nConnection: Upgrade\n\n"
        for b in head:
            conn.send(bytes([b]))
        conn.send(frame(SERVER_KEY, MAGIC + conn.server.pub))
        ftype, payload = conn.read_frame()
        box = Box(conn.server.priv, PublicKey(payload[:32]))
        sealed = box.encrypt(b'{"version":2}')
        conn.send(frame(SERVER_INFO, bytes(sealed.nonce) + bytes(sealed.ciphertext)))
        conn.server.results.put(("connected", conn))
        hold(conn, 10)

    with FakeServer([dribble]) as srv:
        with spanza.DerpClient(srv.url, os.urandom(32)) as c:
            c.wait_connected(10)
            assert c.stats()["protocol_errors"] == 0
