"""DerpClient against a scripted fake server (tests/integration/derp_fake_server.py):
handshake, frames both ways, events, pings, timers, the send queue."""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import threading
import time

import pytest

import spanza
from spanza.derp import node_public_key
from spanza.derp_client import (
    Connected,
    Disconnected,
    Health,
    PeerGone,
    PeerPresent,
    Restarting,
    backoff_ms,
)
from tests.integration.derp_fake_server import (
    HEALTH,
    KEEP_ALIVE,
    NOTE_PREFERRED,
    PEER_GONE,
    PEER_PRESENT,
    PING,
    PONG,
    RESTARTING,
    SEND_PACKET,
    FakeServer,
    frame,
    hold,
    mute,
    serve,
)
from tests.support import assert_close_wakes, wait_for

PEER = bytes(range(32))


def client(url: str, **kw) -> spanza.DerpClient:
    kw.setdefault("backoff_max_ms", 200)
    return spanza.DerpClient(url, os.urandom(32), **kw)


def next_result(srv: FakeServer, want: int, timeout: float = 5) -> bytes:
    """The payload of the next frame of type `want` the client sent."""
    deadline = time.monotonic() + timeout
    while True:
        kind, payload = srv.results.get(timeout=max(0.01, deadline - time.monotonic()))
        if kind == want:
            return payload


def connected_conn(srv: FakeServer):
    kind, conn = srv.results.get(timeout=5)
    assert kind == "connected"
    return conn


def test_handshake_is_what_go_sends_and_packets_flow_both_ways():
    with FakeServer([serve]) as srv, client(srv.url) as c:
        c.wait_connected(5)
        conn = connected_conn(srv)
        # The upgrade request, byte for byte as Go's client writes it.
        assert (
            conn.request
            == (
                f"GET /derp HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n"
                "User-Agent: Go-http-client/1.1\r\nConnection: Upgrade\r\n"
                "Upgrade: DERP"
            ).encode()
        )
        assert conn.client_info == {"version": 2, "CanAckPings": True}
        assert conn.client_pub == c.public_key
        assert c.next_event(1) == Connected(srv.pub)

        for size in (0, 1, 1400, 65536):
            data = os.urandom(size)
            c.send(PEER, data)
            assert next_result(srv, SEND_PACKET) == PEER + data
            conn.recv_packet(PEER, data)
            assert c.recv(5) == (PEER, data)
        st = c.stats()
        assert st["packets_sent"] == 4 and st["bytes_sent"] == 1 + 1400 + 65536
        assert st["packets_recv"] == 4 and st["state"] == "connected"


def test_the_connected_event_is_queued_when_wait_connected_returns():
    # The event is queued with the state change it reports. It used to be
    # queued a moment after: under load, events() right after
    # wait_connected() missed it, and a later next_event() returned it.
    with spanza.DerpServer() as srv:
        for _ in range(20):
            with client(srv.url) as c:
                c.wait_connected(5)
                assert c.events() == [Connected(srv.public_key)]


def test_send_over_64k_is_refused():
    with FakeServer([serve]) as srv, client(srv.url) as c:
        with pytest.raises(spanza.ConfigError, match="65536"):
            c.send(PEER, bytes(65537))


def test_events_and_server_pings():
    with FakeServer([serve]) as srv, client(srv.url) as c:
        c.wait_connected(5)
        conn = connected_conn(srv)
        assert isinstance(c.next_event(1), Connected)
        other = os.urandom(32)
        conn.send(frame(PEER_GONE, other + b"\x01"))
        conn.send(frame(PEER_GONE, other))  # old servers: no reason byte
        ip = ipaddress.IPv6Address("::ffff:10.1.2.3").packed
        conn.send(frame(PEER_PRESENT, other + ip + struct.pack(">H", 4242) + b"\x02"))
        conn.send(frame(HEALTH, b"too many dups"))
        conn.send(frame(HEALTH, b""))
        conn.send(frame(RESTARTING, struct.pack(">II", 1500, 30000)))
        conn.send(frame(KEEP_ALIVE))
        conn.send(frame(PING, b"12345678"))
        assert next_result(srv, PONG) == b"12345678"
        evs = [c.next_event(5) for _ in range(6)]
        assert evs == [
            PeerGone(other, PeerGone.NOT_HERE),
            PeerGone(other, PeerGone.DISCONNECTED),
            PeerPresent(other, ipaddress.IPv4Address("10.1.2.3"), 4242, 2),
            Health("too many dups"),
            Health(""),
            Restarting(1.5, 30.0),
        ]
        st = c.stats()
        assert st["keepalives_recv"] == 1 and st["pings_recv"] == 1
        assert st["bad_frames"] == 0 and st["connects"] == 1


def test_short_and_unknown_frames_are_dropped_and_the_connection_kept():
    with FakeServer([serve]) as srv, client(srv.url) as c:
        c.wait_connected(5)
        conn = connected_conn(srv)
        conn.send(frame(5, b"short"))  # RecvPacket < 32
        conn.send(frame(PEER_GONE, b"x" * 31))  # PeerGone < 32
        conn.send(frame(PEER_PRESENT, b"x" * 40))  # not 32, 50 or 51+
        conn.send(frame(RESTARTING, b"1234567"))
        conn.send(frame(PING, b"1234567"))
        conn.send(frame(PONG, b"1234567"))
        conn.send(frame(0x0B, b"unknown type"))
        conn.send(frame(0x77, os.urandom(100000)))
        conn.send(frame(1, b"\x00" * 40))  # a ServerKey after the handshake is ignored
        conn.recv_packet(PEER, b"still here")
        assert c.recv(5) == (PEER, b"still here")
        st = c.stats()
        assert st["bad_frames"] == 6
        assert st["unknown_frames"] == 2
        assert st["connects"] == 1 and st["protocol_errors"] == 0


def test_note_preferred_sent_now_and_after_reconnect():
    with FakeServer([serve]) as srv, client(srv.url) as c:
        c.wait_connected(5)
        connected_conn(srv)
        c.note_preferred(True)
        assert next_result(srv, NOTE_PREFERRED) == b"\x01"
        c.reconnect()
        connected_conn(srv)
        assert next_result(srv, NOTE_PREFERRED) == b"\x01"
        c.note_preferred(False)
        assert next_result(srv, NOTE_PREFERRED) == b"\x00"
        assert c.stats()["reconnects"] == 1


def test_ping_round_trip():
    with FakeServer([serve]) as srv, client(srv.url) as c:
        c.wait_connected(5)
        rtt = c.ping(5)
        assert 0 < rtt < 5
        st = c.stats()
        assert st["pings_sent"] == 1 and st["pongs_recv"] == 1


def test_ping_not_connected():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens
        with client(f"http://127.0.0.1:{port}/derp") as c:
            with pytest.raises(spanza.SpanzaError, match="not connected"):
                c.ping(1)


def test_unanswered_ping_drops_the_connection():
    with FakeServer([mute, serve]) as srv, client(srv.url, ping_timeout_ms=300) as c:
        c.wait_connected(5)
        connected_conn(srv)
        with pytest.raises(spanza.SpanzaError):
            c.ping(5)  # fails when the connection is dropped (ENOTCONN), not by timeout
        connected_conn(srv)  # and a new connection was made
        c.wait_connected(5)
        st = c.stats()
        assert st["ping_timeouts"] == 1 and st["disconnects"] == 1
        assert "ping unanswered" in [e for e in c.events() if isinstance(e, Disconnected)][0].reason


def test_silent_server_is_declared_dead_after_read_timeout():
    with FakeServer([mute, serve]) as srv, client(srv.url, read_timeout_ms=300) as c:
        c.wait_connected(5)
        connected_conn(srv)
        connected_conn(srv)  # the second connection: the first was declared dead
        st = c.stats()
        assert st["read_timeouts"] == 1 and st["disconnects"] == 1
        assert c.last_error == "no frame from the server for 300 ms"


def test_keepalives_keep_a_connection_alive():
    def keepalive(conn):
        conn.handshake()
        conn.server.results.put(("connected", conn))
        for _ in range(15):
            conn.send(frame(KEEP_ALIVE))
            time.sleep(0.05)
        hold(conn)

    with FakeServer([keepalive, serve]) as srv, client(srv.url, read_timeout_ms=250) as c:
        c.wait_connected(5)
        connected_conn(srv)
        wait_for(lambda: c.stats()["keepalives_recv"] >= 15, what="15 keepalives")
        st = c.stats()
        assert st["read_timeouts"] == 0 and st["connects"] == 1


def test_idle_ping_keeps_a_quiet_connection_alive():
    with FakeServer([serve]) as srv, client(srv.url, idle_ping_ms=50, read_timeout_ms=400) as c:
        c.wait_connected(5)
        wait_for(lambda: c.stats()["pongs_recv"] >= 8, what="8 idle pings answered")
        st = c.stats()
        assert st["read_timeouts"] == 0 and st["ping_timeouts"] == 0 and st["connects"] == 1


def test_queue_while_down_bounded_then_delivered_in_order():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with client(f"http://127.0.0.1:{port}/derp", queue_size=8, backoff_max_ms=50) as c:
        for i in range(20):
            c.send(PEER, bytes([i]) * 10)
        wait_for(lambda: c.stats()["queued"] == 8, what="8 queued")
        st = c.stats()
        assert st["drops_queue_full"] == 12 and st["packets_sent"] == 0
        assert st["connect_failures"] >= 1
        assert "Connection refused" in c.last_error
        with FakeServer([serve], port=port) as srv:
            c.wait_connected(10)
            got = [next_result(srv, SEND_PACKET) for _ in range(8)]
            assert got == [PEER + bytes([i]) * 10 for i in range(12, 20)]
        assert c.stats()["queued"] == 0


def test_connection_lost_reports_disconnected_and_reconnects():
    def one_shot(conn):
        conn.handshake()
        conn.server.results.put(("connected", conn))
        time.sleep(0.1)
        conn.close()

    with FakeServer([one_shot, serve]) as srv, client(srv.url) as c:
        c.wait_connected(5)
        connected_conn(srv)
        conn = connected_conn(srv)
        c.wait_connected(5)
        evs = c.events(1)
        kinds = [type(e) for e in evs]
        assert kinds[:3] == [Connected, Disconnected, Connected], evs
        assert "server closed the connection" in evs[1].reason
        c.send(PEER, b"after")
        assert next_result(srv, SEND_PACKET) == PEER + b"after"
        assert conn.client_pub == c.public_key
        st = c.stats()
        assert st["disconnects"] == 1 and st["reconnects"] == 1 and st["connects"] == 2


def test_hostname_is_resolved_off_the_loop():
    # "localhost" goes through getaddrinfo on a helper thread; ::1 may come
    # first and be refused, then 127.0.0.1 is tried.
    with FakeServer([serve]) as srv, client(f"http://localhost:{srv.port}/derp") as c:
        c.wait_connected(5)
        conn = connected_conn(srv)
        assert conn.request.split(b"\r\n")[1] == f"Host: localhost:{srv.port}".encode()


def test_unresolvable_host_is_reported():
    with client("http://no-such-host.invalid:3340/derp", backoff_max_ms=100) as c:
        wait_for(lambda: c.stats()["connect_failures"] >= 1, 15, "a failed lookup")
        assert "cannot resolve no-such-host.invalid" in c.last_error
        with pytest.raises(TimeoutError, match="cannot resolve"):
            c.wait_connected(0.01)


def test_recv_and_event_timeouts():
    with FakeServer([serve]) as srv, client(srv.url) as c:
        with pytest.raises(TimeoutError):
            c.recv(0.05)
        c.wait_connected(5)
        c.next_event(1)
        with pytest.raises(TimeoutError):
            c.next_event(0.05)
        assert c.events(0) == []


def test_close_wakes_a_blocked_recv():
    with FakeServer([serve]) as srv:
        c = client(srv.url)
        assert_close_wakes(lambda: c.recv(30), c.close)
        with pytest.raises(spanza.ClosedError):
            c.send(PEER, b"x")
        c.close()  # twice is fine


def test_recv_queue_overflow_is_counted():
    with FakeServer([serve]) as srv, client(srv.url, recv_queue=4) as c:
        c.wait_connected(5)
        conn = connected_conn(srv)
        for i in range(10):
            conn.recv_packet(PEER, bytes([i]))
        wait_for(lambda: c.stats()["packets_recv"] == 10, what="10 packets")
        assert c.stats()["drops_recv_queue"] == 6
        assert [c.recv(1)[1] for _ in range(4)] == [bytes([i]) for i in range(6, 10)]


def test_many_sends_from_python_threads_arrive():
    n, size = 400, 1000
    with FakeServer([serve]) as srv, client(srv.url) as c:
        c.wait_connected(5)
        connected_conn(srv)

        def sender(tag: int):
            for i in range(n):
                c.send(PEER, bytes([tag]) + i.to_bytes(4, "big") + bytes(size))

        threads = [threading.Thread(target=sender, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        seen: dict[int, list[int]] = {t: [] for t in range(4)}
        for _ in range(4 * n):
            p = next_result(srv, SEND_PACKET, 10)
            seen[p[32]].append(int.from_bytes(p[33:37], "big"))
        assert all(v == list(range(n)) for v in seen.values())  # per-thread order kept
        assert c.stats()["drops_queue_full"] == 0


def test_congestion_left_by_the_queue_drained_at_connect_resumes_senders():
    """Packets queued while connecting fill the socket once the handshake
    completes, so the client is congested without any send having found it
    so. Python sends held back behind that must resume when it drains
    (on_writable), not time out."""
    queued, later, big = 300, 1100, 60_000  # 18 MB: more than loopback buffers hold
    go = threading.Event()

    def slow_reader(conn):
        go.wait(10)
        conn.handshake()
        time.sleep(0.5)  # not reading yet: the client's socket fills up
        n = 0
        while n < queued + later:
            ftype, _ = conn.read_frame(timeout=30)
            n += ftype == SEND_PACKET
        conn.server.results.put(("received", n))
        hold(conn)

    with FakeServer([slow_reader]) as srv, client(srv.url, queue_size=queued) as c:
        for _ in range(queued):
            c.send(PEER, bytes(big))
        wait_for(lambda: c.stats()["packets_sent"] == 0 and srv.accepted == 1, what="the connection attempt")
        go.set()
        c.wait_connected(5)
        for i in range(later):  # more than the Python-side outbox (1024) holds
            c.send(PEER, i.to_bytes(2, "big"), timeout=5)
        assert srv.results.get(timeout=30) == ("received", queued + later)
        assert c.stats()["drops_queue_full"] == 0


def test_public_key_and_key_forms(tmp_path):
    # RFC 7748 vector, as in the spec (§4).
    priv = "privkey:77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
    pub = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    assert node_public_key(priv) == pub
    cfg = tmp_path / "derper.json"
    cfg.write_text(f'{{"PrivateKey": "{priv}"}}')
    with FakeServer([serve]) as srv:
        for key in (priv, cfg, str(cfg), bytes.fromhex(priv[8:])):
            with spanza.DerpClient(srv.url, key) as c:
                assert c.public_key == pub
                c.wait_connected(5)
                c.send("nodekey:" + PEER.hex(), b"k")
                assert next_result(srv, SEND_PACKET) == PEER + b"k"


@pytest.mark.parametrize(
    "url, kw, match",
    [
        ("ftp://x/derp", {}, "http:// or https://"),
        ("http://[::1/derp", {}, "unclosed"),
        ("http://h:0/derp", {}, "port"),
        ("http://h:99999/derp", {}, "bad port|port out of range"),
        ("http://h/other", {}, "path must be /derp"),
        ("http://bad host/derp", {}, "bad character"),
        ("http://h/derp", {"insecure": True}, "https"),
        ("https://h/derp", {"pin_sha256": "abcd"}, "pin_sha256"),
        ("https://h/derp", {"ca_file": "/nonexistent.pem"}, "ca_file"),
        ("http://h/derp", {"queue_size": 0}, "queue_size"),
    ],
)
def test_bad_configuration_is_a_clear_error(url, kw, match):
    with pytest.raises(spanza.ConfigError, match=match):
        spanza.DerpClient(url, os.urandom(32), **kw)


@pytest.mark.parametrize(
    "key, match",
    [(bytes(32), "all zero"), (b"short", "32 bytes"), ("nodekey:" + "00" * 32, "privkey"), ("privkey:zz", "hex")],
)
def test_bad_private_key(key, match):
    with pytest.raises(spanza.ConfigError, match=match):
        spanza.DerpClient("http://127.0.0.1:1/derp", key)


def test_backoff_is_tailscales_formula():
    # min(n*n*10 ms, 5 s) * [0.5, 1.5): rnd picks the point in the range.
    assert backoff_ms(0) == 0
    assert backoff_ms(1, rnd=0) == 5
    assert backoff_ms(1, rnd=2**32 - 1) == 14
    assert backoff_ms(3, rnd=2**31) == 90
    assert backoff_ms(22, rnd=0) == 2420  # 22*22*10 = 4840, under the cap
    assert backoff_ms(23, rnd=2**31) == 5000
    assert backoff_ms(1000, rnd=2**32 - 1) == 7499
    assert backoff_ms(10**6, 10, 5000, 2**31) == 5000
    # grows with n until the cap
    seq = [backoff_ms(n, rnd=2**31) for n in range(1, 30)]
    assert seq == sorted(seq) and seq[-1] == 5000


def test_server_token_bucket_drops_over_budget():
    def limited(conn):
        conn.handshake({"version": 2, "TokenBucketBytesPerSecond": 1, "TokenBucketBytesBurst": 2000})
        conn.server.results.put(("connected", conn))
        while True:
            ftype, payload = conn.read_frame(timeout=30)
            conn.server.results.put((ftype, payload))

    with FakeServer([limited]) as srv, client(srv.url) as c:
        c.wait_connected(5)
        connected_conn(srv)
        for _ in range(10):
            c.send(PEER, bytes(500))  # each costs 5 + 32 + 500 tokens, as in Go
        for _ in range(3):
            assert next_result(srv, SEND_PACKET) == PEER + bytes(500)
        wait_for(lambda: c.stats()["drops_rate_limit"] == 7, what="7 rate-limited drops")
        assert c.stats()["packets_sent"] == 3


def test_close_races_with_calls_from_other_threads():
    # Calls racing with close() get ClosedError, never freed memory.
    with FakeServer([serve]) as srv:
        for _ in range(5):
            c = client(srv.url)
            errors: list[BaseException] = []
            stop = threading.Event()

            def hammer(c=c, errors=errors, stop=stop):
                while not stop.is_set():
                    try:
                        c.send(PEER, b"x")
                        c.stats()
                        _ = c.last_error
                        c.recv(0)
                    except (spanza.ClosedError, TimeoutError):
                        pass
                    except BaseException as e:
                        errors.append(e)
                        return

            threads = [threading.Thread(target=hammer) for _ in range(3)]
            for t in threads:
                t.start()
            time.sleep(0.05)
            c.close()
            stop.set()
            for t in threads:
                t.join(5)
            assert not errors
            assert c.closed and not c.connected and c.last_error == ""


def test_spanza_key_objects_and_wireguard_base64():
    priv = spanza.PrivateKey.generate()
    peer = spanza.PrivateKey.generate().public_key
    with FakeServer([serve]) as srv:
        for key in (priv, str(priv)):  # the object, and WireGuard's base64 text
            with spanza.DerpClient(srv.url, key) as c:
                assert c.public_key == priv.public_key.raw
                c.wait_connected(5)
                c.send(peer, b"obj")
                assert next_result(srv, SEND_PACKET) == peer.raw + b"obj"
                c.send(str(peer), b"b64")
                assert next_result(srv, SEND_PACKET) == peer.raw + b"b64"


def test_client_and_events_live_in_spanza_derp():
    import spanza.derp
    import spanza.derp_client

    assert spanza.derp.DerpClient is spanza.DerpClient is spanza.derp_client.DerpClient
    assert spanza.derp.PeerGone is PeerGone and spanza.derp.backoff_ms is backoff_ms
