"""Every row of the DERP spec's malformed-input table (§13, server column):
the offending connection is closed (or the frame skipped where the spec
says so), the right counter moves, and other clients keep relaying."""

from __future__ import annotations

import json
import os
import socket
import struct
import time

import pytest

from tests.integration._derp_raw import (
    CLIENT_INFO,
    CLOSE_PEER,
    FORWARD_PACKET,
    HEALTH,
    MESH_KEY,
    NOTE_PREFERRED,
    PEER_GONE,
    PEER_PRESENT,
    PING,
    PONG,
    RECV_PACKET,
    RESTARTING,
    SEND_PACKET,
    SERVER_INFO,
    SERVER_KEY,
    WATCH_CONNS,
    RawDerp,
    assert_relays,
    box_seal,
    connect,
    frame,
)


def _closed_after(server, bystanders, send, counter: str) -> None:
    before = server.stats()
    c = RawDerp(server.port)
    send(c)
    c.expect_closed()
    c.close()
    after = server.stats()
    assert after[counter] == before[counter] + 1, (counter, before[counter], after[counter])
    assert_relays(*bystanders)


# ---- handshake rows ----


def _first_frame(ftype: int, payload: bytes):
    def send(c: RawDerp) -> None:
        c.upgrade()
        c.send(frame(ftype, payload))

    return send


@pytest.mark.parametrize(
    "ftype,payload",
    [
        (SEND_PACKET, bytes(32) + b"x"),
        (PING, b"12345678"),
        (0x42, b"unknown"),
        (NOTE_PREFERRED, b"\x01"),
    ],
    ids=["send-packet", "ping", "unknown-type", "note-preferred"],
)
def test_first_frame_not_client_info_closes(server, bystanders, ftype, payload):
    _closed_after(server, bystanders, _first_frame(ftype, payload), "close_handshake_error")


@pytest.mark.parametrize("length", [55, 256 * 1024 + 1], ids=["short", "over-256KiB"])
def test_client_info_length_out_of_bounds_closes(server, bystanders, length):
    def send(c: RawDerp) -> None:
        c.upgrade()
        # The header alone is enough: the server must refuse before reading the body.
        c.send(struct.pack(">BI", CLIENT_INFO, length) + bytes(min(length, 4096)))

    _closed_after(server, bystanders, send, "close_handshake_error")


@pytest.mark.parametrize("box_len", [24, 39, 40], ids=["nonce-only", "one-short", "empty-box"])
def test_client_info_box_shorter_than_its_overhead_closes(server, bystanders, box_len):
    # 56..71-byte ClientInfo frames pass the frame bound but hold a box
    # shorter than nonce + MAC: the length must not underflow (it did:
    # malloc(~2^64), an abort under ASan).
    def send(c: RawDerp) -> None:
        c.upgrade()
        c.send(frame(CLIENT_INFO, c.pub + os.urandom(box_len)))

    _closed_after(server, bystanders, send, "close_handshake_error")


def test_client_info_box_that_does_not_open_closes(server, bystanders):
    def send(c: RawDerp) -> None:
        c.upgrade()
        f = bytearray(c.client_info_frame())
        f[-1] ^= 1  # flip a ciphertext bit: the MAC fails
        c.send(bytes(f))

    _closed_after(server, bystanders, send, "close_handshake_error")


def test_client_info_sealed_to_another_key_closes(server, bystanders):
    def send(c: RawDerp) -> None:
        c.upgrade()
        other = os.urandom(32)
        sealed = box_seal(b'{"version":2}', other, c.priv)
        c.send(frame(CLIENT_INFO, c.pub + sealed))

    _closed_after(server, bystanders, send, "close_handshake_error")


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1,2,3]",
        b'{"version":"two"}',
        b'{"CanAckPings":1}',
        b'{"version":2}garbage',
    ],
    ids=["truncated", "not-object", "version-string", "bool-as-int", "trailing-garbage"],
)
def test_client_info_invalid_json_closes(server, bystanders, body):
    def send(c: RawDerp) -> None:
        c.upgrade()
        c.send(frame(CLIENT_INFO, c.pub + box_seal(body, c.server_pub, c.priv)))

    _closed_after(server, bystanders, send, "close_handshake_error")


@pytest.mark.parametrize(
    "mesh_key", ["", None, "abcd", "zz" * 32, "00" * 33], ids=["empty", "null", "short", "not-hex", "long"]
)
def test_client_info_bad_mesh_key_closes(server, bystanders, mesh_key):
    def send(c: RawDerp) -> None:
        c.upgrade()
        body = json.dumps({"meshKey": mesh_key, "version": 2}).encode()
        c.send(frame(CLIENT_INFO, c.pub + box_seal(body, c.server_pub, c.priv)))

    _closed_after(server, bystanders, send, "close_handshake_error")


def test_all_zero_client_key_closes(server, bystanders):
    def send(c: RawDerp) -> None:
        c.upgrade()
        body = b'{"version":2}'
        c.send(frame(CLIENT_INFO, bytes(32) + bytes(24) + bytes(16 + len(body))))

    _closed_after(server, bystanders, send, "close_handshake_error")


def _wait_connections(server, n: int) -> None:
    deadline = time.monotonic() + 5
    while server.stats()["connections"] != n:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_handshake_not_finished_in_10s_closes(server, bystanders):
    def send(c: RawDerp) -> None:
        c.upgrade()
        c.send(c.client_info_frame()[:40])  # a partial ClientInfo, then silence
        server.advance_clock(9_990)
        assert server.stats()["close_handshake_timeout"] == before
        server.advance_clock(20)

    before = server.stats()["close_handshake_timeout"]
    _closed_after(server, bystanders, send, "close_handshake_timeout")


def test_silent_after_tcp_connect_closes_after_30s(server, bystanders):
    n = server.stats()["connections"]

    def send(c: RawDerp) -> None:
        _wait_connections(server, n + 1)  # accepted
        server.advance_clock(30_001)

    _closed_after(server, bystanders, send, "close_handshake_timeout")


# ---- steady-state rows ----


def _after_handshake(data: bytes, info: dict | None = None):
    def send(c: RawDerp) -> None:
        c.handshake(info)
        c.send(data)

    return send


@pytest.mark.parametrize("payload", [b"", b"\x01\x01"], ids=["empty", "two-bytes"])
def test_note_preferred_wrong_length_closes(server, bystanders, payload):
    _closed_after(server, bystanders, _after_handshake(frame(NOTE_PREFERRED, payload)), "close_protocol_error")


def test_send_packet_shorter_than_a_key_closes(server, bystanders):
    _closed_after(server, bystanders, _after_handshake(frame(SEND_PACKET, bytes(31))), "close_protocol_error")


def test_send_packet_over_64KiB_closes(server, bystanders):
    def send(c: RawDerp) -> None:
        c.handshake()
        c.send(struct.pack(">BI", SEND_PACKET, 32 + 65537) + bytes(1024))

    _closed_after(server, bystanders, send, "close_protocol_error")


@pytest.mark.parametrize(
    "data",
    [
        frame(FORWARD_PACKET, bytes(64) + b"pkt"),
        frame(WATCH_CONNS),
        frame(CLOSE_PEER, bytes(32)),
    ],
    ids=["forward-packet", "watch-conns", "close-peer"],
)
def test_privileged_frames_without_mesh_key_close(server, bystanders, data):
    _closed_after(server, bystanders, _after_handshake(data), "close_permission")


@pytest.mark.parametrize(
    "data",
    [
        frame(WATCH_CONNS, b"x"),
        frame(CLOSE_PEER, bytes(31)),
        frame(CLOSE_PEER, bytes(33)),
        frame(FORWARD_PACKET, bytes(63)),
    ],
    ids=["watch-conns-nonempty", "close-peer-31", "close-peer-33", "forward-packet-63"],
)
def test_privileged_frames_with_wrong_length_close(server, bystanders, data):
    mesh = {"meshKey": MESH_KEY.hex(), "version": 2}
    _closed_after(server, bystanders, _after_handshake(data, mesh), "close_protocol_error")


@pytest.mark.parametrize("payload", [b"1234567", bytes(1001)], ids=["7-bytes", "1001-bytes"])
def test_ping_wrong_length_closes(server, bystanders, payload):
    _closed_after(server, bystanders, _after_handshake(frame(PING, payload)), "close_protocol_error")


def test_ping_of_1000_bytes_is_answered_with_the_first_8(server, bystanders):
    c = connect(server.port)
    data = os.urandom(1000)
    c.ping(data)
    assert c.recv_type(PONG).payload == data[:8]
    c.close()


# ---- frames the server skips: connection kept ----


@pytest.mark.parametrize(
    "data",
    [
        frame(RECV_PACKET, bytes(5)),  # short RecvPacket (a server-to-client type)
        frame(PEER_GONE, bytes(3)),
        frame(PEER_PRESENT, bytes(10)),
        frame(RESTARTING, bytes(2)),
        frame(HEALTH, b"x" * 100),
        frame(SERVER_KEY, b"nonsense"),
        frame(SERVER_INFO, b""),
        frame(PONG, b"1"),  # pongs are ignored
        frame(CLIENT_INFO, b"again"),  # a second ClientInfo is just an unknown frame
        frame(0x0B, b"unknown"),
        frame(0xFF, bytes(2 * 1024 * 1024)),  # > 1 MiB: unknown types are skipped whatever their size
    ],
    ids=[
        "recv-packet-short",
        "peer-gone-short",
        "peer-present-short",
        "restarting-short",
        "health",
        "server-key",
        "server-info",
        "pong",
        "client-info-again",
        "unknown-0b",
        "unknown-2MiB",
    ],
)
def test_skipped_frames_keep_the_connection(server, bystanders, data):
    c = connect(server.port)
    peer = connect(server.port)
    c.send(data)
    assert_relays(c, peer)
    c.ping(b"stillhere")
    assert c.recv_type(PONG).payload == b"stillher"
    c.close()
    peer.close()
    assert_relays(*bystanders)


def test_unknown_frame_split_across_many_writes_is_skipped(server, bystanders):
    c = connect(server.port)
    peer = connect(server.port)
    data = frame(0x33, os.urandom(100_000))
    for i in range(0, len(data), 7_777):
        c.send(data[i : i + 7_777])
    assert_relays(c, peer)
    c.close()
    peer.close()


# ---- HTTP ----


@pytest.mark.parametrize("headers", ["", "Upgrade: h2c\r\n"], ids=["missing", "wrong"])
def test_derp_without_upgrade_gets_426(server, bystanders, headers):
    before = server.stats()
    c = RawDerp(server.port)
    c.send(f"GET /derp HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
    status, hdrs, _ = c.read_http_head()
    assert status == 426
    assert c.buf.startswith(b"DERP requires connection upgrade")
    c.expect_closed()
    assert server.stats()["close_http_error"] == before["close_http_error"] + 1
    assert_relays(*bystanders)


def test_426_survives_pipelined_bytes_the_server_never_reads(server, bystanders):
    """The response is not lost to a reset when the client sent more than the head."""
    c = RawDerp(server.port)
    c.send(b"GET /derp HTTP/1.1\r\nHost: x\r\n\r\n" + frame(SEND_PACKET, bytes(32) + bytes(60_000)))
    status, hdrs, _ = c.read_http_head()
    assert status == 426
    while len(c.buf) < int(hdrs["content-length"]):
        c._fill(time.monotonic() + 5)
    assert c.buf.startswith(b"DERP requires connection upgrade\n")
    c.sock.shutdown(socket.SHUT_WR)
    c.expect_closed()
    assert_relays(*bystanders)


@pytest.mark.parametrize(
    "req,status",
    [
        (b"garbage\r\n\r\n", 400),
        (b"GET /derp HTTP/2.0\r\n\r\n", 505),
        (b"GET /derp HTTP/1.1\r\nNo-Colon\r\n\r\n", 400),
        (b"GET /derp HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n", 431),
    ],
    ids=["garbage", "http2", "bad-header", "huge-head"],
)
def test_malformed_http_gets_an_error_and_close(server, bystanders, req, status):
    c = RawDerp(server.port)
    c.send(req)
    got, _, _ = c.read_http_head()
    assert got == status
    c.expect_closed()
    assert_relays(*bystanders)


def test_a_head_sent_in_pieces_is_searched_once(server, bystanders):
    """A client that sends its request head a few bytes at a time must not
    make the server search the whole head again for each piece: that is
    quadratic CPU for one slow connection. The server counts the bytes it
    examines for the end of heads; each piece here is sent once the server
    has read the one before, so each is a read of its own. Searching only the
    new bytes (and the two before them, where the blank line may begin), then
    parsing the head once, examines at most 2 x the head + 2 x the reads;
    a rescan per read would examine about reads^2 / 2 x the piece size
    (here ~65 x more)."""
    head = b"GET /derp/probe HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 6000 + b"\r\n\r\n"
    piece = 16
    c = RawDerp(server.port)
    start = scanned = server.stats()["http_head_bytes_scanned"]
    reads = 0
    for i in range(0, len(head), piece):
        c.send(head[i : i + piece])
        reads += 1
        deadline = time.monotonic() + 5
        while server.stats()["http_head_bytes_scanned"] == scanned:
            assert time.monotonic() < deadline, f"the server did not read piece {reads}"
            time.sleep(0.0005)
        scanned = server.stats()["http_head_bytes_scanned"]
    status, _, _ = c.read_http_head()
    assert status == 200
    c.expect_closed()
    examined = scanned - start
    assert len(head) <= examined <= 2 * len(head) + 2 * reads, (examined, len(head), reads)
    assert_relays(*bystanders)
