"""Writes the hand-made seeds of the DERP-facing fuzz targets
(derp_server_hs, derp_server_stream, gw_derp_input), framed as their .c
files read them.
Seeds stay under 4 KiB: libFuzzer's -max_len follows the largest seed, and
longer inputs would slow every execution. Run from the source tree:

    python3 tests/fuzz/make_derp_server_seeds.py
"""

from __future__ import annotations

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
# The harness's keys (derp_server_harness.h): the bystander's public key
# (private key 0x23 x 32) and the mesh key.
BYSTANDER = bytes.fromhex("9a4503a98ab10fe8d354c9c42cbd0c9d7944f52e7d14d8ea59775e7dc9e3bf4b")
UNKNOWN = bytes(range(1, 33))
MESH_KEY = b"mesh-key-for-fuzzing-only-012345"
DISCO = b"TS\xf0\x9f\x92\xac" + bytes(32) + bytes(24) + b"disco"


def frame(t: int, body: bytes) -> bytes:
    return struct.pack(">BI", t, len(body)) + body


def send(dst: bytes, pkt: bytes) -> bytes:
    return frame(0x04, dst + pkt)


UPGRADE = b"GET /derp HTTP/1.1\r\nHost: derp.example\r\nConnection: Upgrade\r\nUpgrade: DERP\r\n\r\n"

HS = {
    "allowed": (0, 0, b'{"version":2,"CanAckPings":true}'),
    "allowed_split": (0, 3, b'{"version":2,"CanAckPings":true,"AppName":"t\\u00e9st\\n"}'),
    "stranger_mesh": (1, 0, b'{"meshKey":"%s","version":2}' % MESH_KEY.hex().encode()),
    "stranger_mesh_upper": (1, 7, b'{"MESHKEY":"%s","version":2}' % MESH_KEY.hex().upper().encode()),
    "stranger": (1, 0, b'{"version":2}'),
    "duplicate": (2, 0, b'{"version":2,"IsProber":true}'),
    "raw_short_box": (8, 0, bytes(20)),
    "zero_key": (3, 0, bytes(60)),
    "server_key": (4, 0, bytes(48)),
    "wrong_server": (32, 0, b'{"version":2}'),
    "fast_start": (16, 0, b'{"version":2}'),
    "mesh_null": (0, 0, b'{"version":2,"meshKey":null}'),
    "bad_json": (0, 0, b'{"version":2,"meshKey":"00",}'),
}

STREAM = {
    # flags 0: the fuzzed bytes start with the request
    "upgrade_then_junk": (0, 0, UPGRADE + frame(0x02, bytes(60))),
    "generate_204": (0, 0, b"GET /generate_204 HTTP/1.1\r\nHost: a\r\nX-Tailscale-Challenge: abc-1.2:3\r\n\r\n"),
    "home": (0, 5, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
    "probe_head": (0, 0, b"HEAD /derp/probe HTTP/1.1\r\n\r\n"),
    "probe_post": (0, 0, b"POST /derp/latency-check HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
    "robots": (0, 0, b"GET /robots.txt HTTP/1.1\r\n\r\n"),
    "no_upgrade": (0, 0, b"GET /derp HTTP/1.1\r\nHost: a\r\n\r\n"),
    "websocket": (
        0,
        0,
        (b"GET /derp HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Protocol: derp\r\n\r\n"),
    ),
    "http10": (0, 0, b"GET /derp HTTP/1.0\r\n\r\n"),
    "http2": (0, 0, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    "long_head": (32, 0, b"GET / HTTP/1.1\r\nX: " + b"a" * 3000),
    "tls_hello": (0, 0, bytes.fromhex("160301020001") + bytes(64)),
    # flags 1: after a valid head, the handshake frame is fuzzed
    "ci_garbage": (1, 0, frame(0x02, bytes(71))),
    "ci_huge": (1, 0, struct.pack(">BI", 0x02, 0xFFFFFFFF)),
    "not_ci_first": (1, 0, frame(0x12, b"12345678")),
    # flags 2: registered (allowed key)
    "frames": (
        2,
        0,
        send(BYSTANDER, b"hello")
        + send(BYSTANDER, DISCO)
        + send(UNKNOWN, DISCO)
        + send(UNKNOWN, b"x")
        + frame(0x12, b"pingpong")
        + frame(0x07, b"\x01")
        + frame(0x07, b"\x00")
        + frame(0x06, b"")
        + frame(0x13, b"pongpong")
        + frame(0x7F, b"unknown"),
    ),
    "frames_split": (2, 1, send(BYSTANDER, b"a" * 100) + frame(0x12, b"pingpong")),
    "send_over_max": (2, 0, struct.pack(">BI", 0x04, 32 + 65536 + 1) + BYSTANDER),
    "send_short": (2, 0, frame(0x04, bytes(31))),
    "ping_long": (2, 0, frame(0x12, bytes(1001))),
    "pref_bad": (2, 0, frame(0x07, b"\x01\x01")),
    "len_ffffffff": (2, 0, struct.pack(">BI", 0x04, 0xFFFFFFFF)),
    "unknown_huge": (2, 0, struct.pack(">BI", 0x7E, 0xFFFFFFFF) + bytes(100)),
    "privileged": (2, 0, frame(0x10, b"")),
    "flood": (2, 0, send(BYSTANDER, b"y" * 20) * 60),
    # flags 3: registered with the mesh key
    "mesh": (
        3,
        0,
        frame(0x10, b"")
        + frame(0x0A, UNKNOWN + BYSTANDER + b"fwd")
        + frame(0x0A, BYSTANDER + UNKNOWN + DISCO)
        + frame(0x11, UNKNOWN)
        + frame(0x11, BYSTANDER)
        + frame(0x10, bytes(1)),
    ),
    "mesh_fwd_short": (3, 0, frame(0x0A, bytes(63))),
    # bit 2: the bystander's key again (a duplicate); bit 4: the clock jumps
    "duplicate": (2 | 4, 0, send(BYSTANDER, b"to myself") + frame(0x12, b"pingpong")),
    "clock_jump": (2 | 16, 0, send(BYSTANDER, b"z")),
    "handshake_timeout": (1 | 16, 0, b""),
    "fast_start": (2 | 8, 0, frame(0x12, b"pingpong")),
}

# gw_derp_input: the gateways' peers are keys of 32 x 0x01, 0x02, 0x03.
PEER = [bytes([k]) * 32 for k in (1, 2, 3)]


def recv(src: bytes, pkt: bytes) -> bytes:
    return frame(0x05, src + pkt)


GW_FRAMES = (
    recv(PEER[0], b"wg1")
    + recv(PEER[1], b"wg2" * 100)
    + recv(PEER[2], b"")
    + recv(UNKNOWN, b"stranger")
    + frame(0x08, PEER[1] + b"\x00")
    + frame(0x12, b"pingpong")
)
GW = {
    "endpoint": (0, 0, GW_FRAMES),
    "learned": (1, 0, GW_FRAMES),
    "split": (1, 3, recv(PEER[0], b"x" * 40) + recv(PEER[1], b"y")),
    "big": (0, 0, recv(PEER[0], bytes(3000))),
    "no_destination": (2, 0, GW_FRAMES),
    "short_recv": (1, 0, frame(0x05, bytes(31))),
}


def write(target: str, seeds: dict[str, tuple[int, int, bytes]]) -> None:
    out = os.path.join(HERE, "corpus", target)
    os.makedirs(out, exist_ok=True)
    for name, (flags, chunk, body) in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(bytes([flags, chunk]) + body)


if __name__ == "__main__":
    write("derp_server_hs", HS)
    write("derp_server_stream", STREAM)
    write("gw_derp_input", GW)
