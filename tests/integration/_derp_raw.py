"""A raw-socket DERP speaker for tests: written from the spec (not from our C
codec), with NaCl box from libsodium through ctypes, so it cross-checks the
server's framing and crypto and can send anything malformed on purpose."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import socket
import ssl
import struct
import time
from dataclasses import dataclass

MAGIC = b"DERP\xf0\x9f\x94\x91"
DISCO_MAGIC = b"TS\xf0\x9f\x92\xac"
MESH_KEY = bytes(range(32))  # the mesh key of the shared test server (conftest.py)

SERVER_KEY, CLIENT_INFO, SERVER_INFO, SEND_PACKET, RECV_PACKET = 0x01, 0x02, 0x03, 0x04, 0x05
KEEP_ALIVE, NOTE_PREFERRED, PEER_GONE, PEER_PRESENT, FORWARD_PACKET = 0x06, 0x07, 0x08, 0x09, 0x0A
WATCH_CONNS, CLOSE_PEER, PING, PONG, HEALTH, RESTARTING = 0x10, 0x11, 0x12, 0x13, 0x14, 0x15

_sodium = ctypes.CDLL(ctypes.util.find_library("sodium") or "libsodium.so.23")
_sodium.sodium_init()


def _cbuf(n: int):
    return ctypes.create_string_buffer(n)


def keypair() -> tuple[bytes, bytes]:
    priv = bytearray(os.urandom(32))
    priv[0] &= 248
    priv[31] = (priv[31] & 127) | 64
    return bytes(priv), public(bytes(priv))


def public(priv: bytes) -> bytes:
    out = _cbuf(32)
    assert _sodium.crypto_scalarmult_base(out, priv) == 0
    return out.raw


def box_seal(msg: bytes, their_pub: bytes, my_priv: bytes) -> bytes:
    nonce = os.urandom(24)
    out = _cbuf(len(msg) + 16)
    rc = _sodium.crypto_box_easy(out, msg, ctypes.c_ulonglong(len(msg)), nonce, their_pub, my_priv)
    assert rc == 0
    return nonce + out.raw


def box_open(blob: bytes, their_pub: bytes, my_priv: bytes) -> bytes | None:
    if len(blob) < 40:
        return None
    out = _cbuf(len(blob) - 40)
    rc = _sodium.crypto_box_open_easy(out, blob[24:], ctypes.c_ulonglong(len(blob) - 24), blob[:24], their_pub, my_priv)
    return out.raw if rc == 0 else None


def frame(ftype: int, payload: bytes = b"") -> bytes:
    return struct.pack(">BI", ftype, len(payload)) + payload


def disco_packet(extra: int = 0) -> bytes:
    return DISCO_MAGIC + os.urandom(32 + 24 + extra)


@dataclass
class Frame:
    type: int
    payload: bytes


class Closed(Exception):
    pass


class RawDerp:
    """One DERP connection over a plain or TLS socket, driven synchronously."""

    def __init__(
        self,
        port: int,
        host: str = "127.0.0.1",
        tls_ctx: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        s = socket.create_connection((host, port), timeout=timeout)
        if tls_ctx is not None:
            s = tls_ctx.wrap_socket(s, server_hostname=server_hostname or host)
        self.sock = s
        self.buf = b""
        self.priv, self.pub = keypair()
        self.server_pub: bytes | None = None
        self.server_info: dict | None = None

    # ---- bytes ----
    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> None:
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = self.sock.recv(1 << 17)
        except TimeoutError:
            raise TimeoutError("no data from the server") from None
        except (ConnectionResetError, ssl.SSLError, OSError) as e:
            raise Closed(str(e)) from None
        if not chunk:
            raise Closed("EOF")
        self.buf += chunk

    def read_http_head(self, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            self._fill(deadline)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for ln in lines[1:]:
            k, v = ln.split(":", 1)
            headers[k.strip().lower()] = v.strip()
        return status, headers, head

    def recv_frame(self, timeout: float = 5.0) -> Frame:
        deadline = time.monotonic() + timeout
        while len(self.buf) < 5:
            self._fill(deadline)
        ftype, n = struct.unpack(">BI", self.buf[:5])
        while len(self.buf) < 5 + n:
            self._fill(deadline)
        payload = self.buf[5 : 5 + n]
        self.buf = self.buf[5 + n :]
        return Frame(ftype, payload)

    def recv_type(self, ftype: int, timeout: float = 5.0, skip=(KEEP_ALIVE,)) -> Frame:
        """The next frame of ftype, skipping keepalives (and types in skip)."""
        deadline = time.monotonic() + timeout
        while True:
            f = self.recv_frame(max(0.01, deadline - time.monotonic()))
            if f.type == ftype:
                return f
            if f.type not in skip:
                raise AssertionError(f"expected frame {ftype:#x}, got {f.type:#x} ({f.payload[:40]!r})")

    def expect_closed(self, timeout: float = 5.0) -> None:
        """Waits for EOF (frames before it are discarded)."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self.buf = b""
                self._fill(deadline)
        except Closed:
            return
        except TimeoutError:
            pass
        raise AssertionError("server did not close the connection")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    # ---- protocol ----
    def upgrade(
        self, extra_headers: str = "", fast_start: bool = False, client_info: bytes | None = None, path: str = "/derp"
    ) -> None:
        req = (
            f"GET {path} HTTP/1.1\r\nHost: derp.test\r\nUser-Agent: Go-http-client/1.1\r\n"
            f"Connection: Upgrade\r\n{'Derp-Fast-Start: 1' + chr(13) + chr(10) if fast_start else ''}"
            f"{extra_headers}Upgrade: DERP\r\n\r\n"
        ).encode()
        self.send(req + (client_info or b""))
        if not fast_start:
            status, headers, _ = self.read_http_head()
            assert status == 101, status
            self.http_headers = headers
        f = self.recv_frame()
        assert f.type == SERVER_KEY and f.payload[:8] == MAGIC, f
        self.server_pub = f.payload[8:40]

    def client_info_frame(self, info: dict | None = None, pub: bytes | None = None, priv: bytes | None = None) -> bytes:
        info = {"version": 2, "CanAckPings": True} if info is None else info
        body = json.dumps(info).encode()
        sealed = box_seal(body, self.server_pub, priv or self.priv)
        return frame(CLIENT_INFO, (pub or self.pub) + sealed)

    def handshake(self, info: dict | None = None, wait_info: bool = True) -> None:
        if self.server_pub is None:
            self.upgrade()
        self.send(self.client_info_frame(info))
        if wait_info:
            self.read_server_info()

    def read_server_info(self) -> dict:
        f = self.recv_type(SERVER_INFO)
        plain = box_open(f.payload, self.server_pub, self.priv)
        assert plain is not None, "ServerInfo box did not open"
        self.server_info = json.loads(plain)
        return self.server_info

    def send_packet(self, dst: bytes, data: bytes) -> None:
        self.send(frame(SEND_PACKET, dst + data))

    def recv_packet(self, timeout: float = 5.0) -> tuple[bytes, bytes]:
        f = self.recv_type(RECV_PACKET, timeout)
        return f.payload[:32], f.payload[32:]

    def ping(self, data: bytes) -> None:
        self.send(frame(PING, data))


def connect(port: int, info: dict | None = None, **kw) -> RawDerp:
    c = RawDerp(port, **kw)
    c.handshake(info)
    return c


def assert_relays(a: RawDerp, b: RawDerp, size: int = 100) -> None:
    """a -> b and b -> a still work."""
    for src, dst in ((a, b), (b, a)):
        data = os.urandom(size)
        src.send_packet(dst.pub, data)
        got_src, got = dst.recv_packet()
        assert got_src == src.pub and got == data
