"""A scriptable fake DERP server on a raw socket, for client tests.

It speaks just enough DERP (spec §7, §9) to be a server, and lets a test
script every connection: send hostile bytes, go silent, ignore pings.
NaCl boxes come from PyNaCl, independent of Spanza's C code.
"""

from __future__ import annotations

import json
import queue
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from nacl.public import Box, PrivateKey, PublicKey

MAGIC = b"DERP\xf0\x9f\x94\x91"

SERVER_KEY, CLIENT_INFO, SERVER_INFO, SEND_PACKET, RECV_PACKET, KEEP_ALIVE = 1, 2, 3, 4, 5, 6
NOTE_PREFERRED, PEER_GONE, PEER_PRESENT = 7, 8, 9
PING, PONG, HEALTH, RESTARTING = 0x12, 0x13, 0x14, 0x15

RESPONSE_101 = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: DERP\r\nConnection: Upgrade\r\nDerp-Version: 2\r\n"


def frame(ftype: int, payload: bytes = b"") -> bytes:
    return struct.pack(">BI", ftype, len(payload)) + payload


class Conn:
    """One accepted connection, with DERP helpers."""

    def __init__(self, server: FakeServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.buf = b""
        self.client_pub: bytes | None = None
        self.client_info: dict | None = None
        self.request = b""
        sock.settimeout(10)

    def _fill(self) -> None:
        data = self.sock.recv(1 << 20)
        if not data:
            raise EOFError("client closed")
        self.buf += data

    def read_request(self) -> bytes:
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.request = head
        return head

    def read_frame(self, timeout: float | None = 10) -> tuple[int, bytes]:
        self.sock.settimeout(timeout)
        while len(self.buf) < 5:
            self._fill()
        ftype, n = struct.unpack(">BI", self.buf[:5])
        while len(self.buf) < 5 + n:
            self._fill()
        payload, self.buf = self.buf[5 : 5 + n], self.buf[5 + n :]
        return ftype, payload

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_101(self) -> None:
        self.send(RESPONSE_101 + b"Derp-Public-Key: " + self.server.pub.hex().encode() + b"\r\n\r\n")

    def handshake(self, server_info: dict | None = None) -> None:
        """Request -> 101 + ServerKey -> ClientInfo -> ServerInfo."""
        self.read_request()
        self.send_101()
        self.send(frame(SERVER_KEY, MAGIC + self.server.pub))
        ftype, payload = self.read_frame()
        assert ftype == CLIENT_INFO, f"first client frame is type {ftype}"
        self.client_pub = payload[:32]
        box = Box(self.server.priv, PublicKey(self.client_pub))
        self.client_info = json.loads(box.decrypt(payload[56:], payload[32:56]))
        sealed = box.encrypt(json.dumps(server_info or {"version": 2}).encode())
        self.send(frame(SERVER_INFO, bytes(sealed.nonce) + bytes(sealed.ciphertext)))

    def recv_packet(self, src: bytes, data: bytes) -> None:
        self.send(frame(RECV_PACKET, src + data))

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


Script = Callable[[Conn], None]


@dataclass
class FakeServer:
    """Accepts connections on 127.0.0.1 and runs scripts[i] on the i-th
    (the last script repeats). A script returning keeps the connection open
    until the server closes; raising EOFError/OSError just ends it."""

    scripts: list[Script]
    port: int = 0
    host: str = "127.0.0.1"
    tls: ssl.SSLContext | None = None
    priv: PrivateKey = field(default_factory=PrivateKey.generate)
    accepted: int = 0
    errors: list[str] = field(default_factory=list)
    results: queue.Queue = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        self.pub = bytes(self.priv.public_key)
        self.lsock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((self.host, self.port))
        self.lsock.listen(16)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self.conns: list[Conn] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/derp"

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self.lsock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            script = self.scripts[min(self.accepted, len(self.scripts) - 1)]
            self.accepted += 1
            conn = Conn(self, sock)
            self.conns.append(conn)
            threading.Thread(target=self._run, args=(script, conn), daemon=True).start()

    def _run(self, script: Script, conn: Conn) -> None:
        try:
            if self.tls:
                conn.sock = self.tls.wrap_socket(conn.sock, server_side=True)
                self.results.put(("tls", conn.sock.selected_alpn_protocol(), conn.sock.version()))
            script(conn)
        except (EOFError, OSError, ssl.SSLError):
            pass
        except Exception as exc:  # reported to the test
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def wait_accepted(self, n: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while self.accepted < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fake server: {self.accepted} connections, wanted {n}")
            time.sleep(0.01)

    def close(self) -> None:
        self._stop.set()
        self.lsock.close()
        self._thread.join(2)
        for c in self.conns:
            c.close()

    def __enter__(self) -> FakeServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def hold(conn: Conn, seconds: float = 30) -> None:
    """Keeps a connection open, reading (and discarding) until it closes."""
    conn.sock.settimeout(seconds)
    try:
        while conn.sock.recv(65536):
            pass
    except TimeoutError:
        pass


def expect_sent(server: FakeServer, data: bytes, timeout: float = 5) -> None:
    """Waits for the client's SendPacket frame carrying `data` (its other
    frames are skipped) on server.results, as `serve` reports them."""
    while True:
        kind, payload = server.results.get(timeout=timeout)
        if kind == SEND_PACKET:
            assert payload == data
            return


def mute(conn: Conn) -> None:
    """A server that completes the handshake, reports it, then never sends
    or answers anything."""
    conn.handshake()
    conn.server.results.put(("connected", conn))
    hold(conn)


def serve(conn: Conn) -> None:
    """A well-behaved server: handshake, then answer pings and report every
    frame the client sends on server.results."""
    conn.handshake()
    conn.server.results.put(("connected", conn))
    while True:
        ftype, payload = conn.read_frame(timeout=30)
        if ftype == PING:
            conn.send(frame(PONG, payload[:8]))
        conn.server.results.put((ftype, payload))
