"""HTTP/1.1 framing for the two ends Spanza runs itself: one request's
exchange (`exchange`, behind ``Peer.request``/``http_get``) and a server
that answers GET and HEAD with one body (`BodyServer`, behind
``serve_http(body=...)``).

Neither needs http.client, http.server or the email package they parse
headers with (~20 ms of imports, a third of `spanza demo`'s cold start).
Both read with limits: a head of at most MAX_LINE bytes a line and
MAX_HEADERS lines; anything else malformed is an HTTPProtocolError (client)
or a 400 and a closed connection (server). Handler classes and keep-alive
client connections still use the standard library (``serve_http(handler)``,
``Peer.http_connection``).
"""

from __future__ import annotations

import contextlib
import threading
import time

from spanza import _sock
from spanza._log import get_logger
from spanza.errors import ConfigError, HTTPProtocolError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from _socket import socket
    from collections.abc import Mapping
    from typing import Any, BinaryIO

    from spanza.netstack import Listener

log = get_logger("spanza.http")

MAX_LINE = 65536  # as http.client's _MAXLINE
MAX_HEADERS = 100  # as http.client's _MAXHEADERS
MAX_REQUEST_BODY = 1 << 20  # what the body server reads (and drops) of a request's body
IDLE_TIMEOUT = 60.0  # seconds the body server keeps an idle keep-alive connection
MAX_CONNECTIONS = 512  # open connections (threads) of one body server; more get 503
_TRUST_LEN = 64 << 20  # a body length read in one allocation (larger: in pieces)
_READ_PIECE = 1 << 20  # the piece of a larger body
_JOIN_BELOW = 1 << 16  # a body this small goes in one write with its head
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_REASONS = {
    200: "OK",
    400: "Bad Request",
    405: "Method Not Allowed",
    413: "Content Too Large",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}

Headers = list[tuple[str, str]]


class _TooLarge(HTTPProtocolError):
    pass


# ---- reading ------------------------------------------------------------------------


def _digits(s: str) -> bool:
    # ASCII only: str.isdigit() takes "²" (latin-1 0xB2), which int() refuses.
    return s.isascii() and s.isdigit()


def _line(f: BinaryIO, what: str) -> bytes:
    line = f.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise HTTPProtocolError(f"{what}: a line longer than {MAX_LINE} bytes")
    return line


def _headers(f: BinaryIO, what: str, *, unfold: bool = False) -> Headers:
    """Header fields until the empty line. A line folded onto the one before
    (obsolete, RFC 9112 5.2) is joined to it with `unfold` (a client must
    accept it), else refused (a server may)."""
    out: Headers = []
    lines = 0
    while True:
        line = _line(f, what)
        if line in (b"\r\n", b"\n"):
            return out
        if not line:
            raise HTTPProtocolError(f"{what}: the connection closed inside the header")
        lines += 1
        if lines > MAX_HEADERS:
            raise HTTPProtocolError(f"{what}: more than {MAX_HEADERS} header lines")
        if unfold and out and line[:1] in (b" ", b"\t"):
            name, value = out[-1]
            out[-1] = (name, f"{value} {line.decode('latin-1').strip()}".strip())
            continue
        name, colon, value = line.decode("latin-1").partition(":")
        if not colon or not name or not _TOKEN.issuperset(name):
            raise HTTPProtocolError(f"{what}: not a header line: {line[:80]!r}")
        out.append((name, value.strip(" \t\r\n")))


def _field(headers: Headers, name: str) -> str | None:
    """The field's value (several joined with ", "), or None."""
    vals = [v for k, v in headers if k.lower() == name]
    return ", ".join(vals) if vals else None


def _content_length(headers: Headers, what: str) -> int | None:
    value = _field(headers, "content-length")
    if value is None:
        return None
    # Repeated with one value ("5, 5") is allowed (RFC 9110 8.6), else not.
    parts = {p.strip() for p in value.split(",")}
    if len(parts) != 1 or not _digits(next(iter(parts))):
        raise HTTPProtocolError(f"{what}: bad Content-Length {value[:40]!r}")
    return int(parts.pop())


def _chunked(f: BinaryIO, what: str, limit: int | None = None) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        size_text = _line(f, what).split(b";", 1)[0].strip()
        # 1*HEXDIG (RFC 9112 7.1), stricter than int(): no sign, 0x or _.
        if not size_text or not _HEX.issuperset(size_text):
            raise HTTPProtocolError(f"{what}: bad chunk size {size_text[:20]!r}")
        size = int(size_text, 16)
        if size == 0:
            _headers(f, what)  # the trailer, dropped
            return b"".join(parts)
        total += size
        if limit is not None and total > limit:
            raise _TooLarge(f"{what}: a body over {limit} bytes")
        parts.append(_exactly(f, size, what))
        if _line(f, what) not in (b"\r\n", b"\n"):
            raise HTTPProtocolError(f"{what}: no line end after a chunk")


def _exactly(f: BinaryIO, n: int, what: str) -> bytes:
    # A read of n allocates n bytes first, and n is the peer's word: up to
    # _TRUST_LEN in one read (one copy), beyond in pieces joined at the end
    # (a Content-Length or chunk size of 2^60 must not be allocated).
    piece = n if n <= _TRUST_LEN else _READ_PIECE
    parts = []
    got = 0
    while got < n:
        part = f.read(min(n - got, piece))
        if not part:
            raise HTTPProtocolError(f"{what}: the connection closed after {got} of {n} body bytes")
        parts.append(part)
        got += len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def read_response(f: BinaryIO, method: str, what: str) -> tuple[int, str, Headers, bytes]:
    """Status, reason, header fields and body of one response (interim 1xx
    responses skipped)."""
    while True:
        line = _line(f, what)
        if not line:
            raise HTTPProtocolError(f"{what}: the server closed the connection without a response")
        version, _, rest = line.decode("latin-1").rstrip("\r\n").partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or len(code) != 3 or not _digits(code):
            raise HTTPProtocolError(f"{what}: not an HTTP/1.x status line: {line[:80]!r}")
        status = int(code)
        headers = _headers(f, what, unfold=True)
        if not 100 <= status < 200:
            break
    if method == "HEAD" or status in (204, 304):
        return status, reason, headers, b""
    coding = _field(headers, "transfer-encoding")
    if coding is not None:
        if coding.lower().rsplit(",", 1)[-1].strip() != "chunked":
            raise HTTPProtocolError(f"{what}: unsupported Transfer-Encoding {coding[:40]!r}")
        return status, reason, headers, _chunked(f, what)
    length = _content_length(headers, what)
    body = f.read() if length is None else _exactly(f, length, what)
    return status, reason, headers, body


# ---- the client ---------------------------------------------------------------------------


def _check_token(value: str, what: str) -> None:
    if not value or not _TOKEN.issuperset(value):
        raise ConfigError(f"{what}: {value!r} is not an HTTP token")


def _check_text(value: str, what: str) -> None:
    if any(c in value for c in "\r\n\0"):
        raise ConfigError(f"{what}: {value!r} holds a line break or NUL")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ConfigError(f"{what}: {value!r} is not latin-1 text (HTTP header values are bytes)") from None


def request_head(method: str, host: str, port: int, path: str, headers: Mapping[str, str], body: bytes | None) -> bytes:
    """The request line and header of one request (Connection: close)."""
    _check_token(method, "method")
    if any(c in path for c in " \t\r\n\0") or not path.startswith("/"):
        raise ConfigError(f"url: the path {path!r} holds a space or control character")
    if not path.isascii():
        raise ConfigError(f"url: the path {path!r} is not ASCII: percent-encode it (urllib.parse.quote)")
    given = {k.lower() for k in headers}
    netloc = f"[{host}]" if ":" in host else host
    lines = [f"{method} {path} HTTP/1.1"]
    if "host" not in given:
        lines.append(f"Host: {netloc}" if port == 80 else f"Host: {netloc}:{port}")
    if "accept-encoding" not in given:
        lines.append("Accept-Encoding: identity")
    for k, v in headers.items():
        _check_token(k, "header name")
        _check_text(str(v), f"header {k}")
        lines.append(f"{k}: {v}")
    if "content-length" not in given and (body is not None or method in ("POST", "PUT", "PATCH")):
        lines.append(f"Content-Length: {len(body or b'')}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def exchange(sock: socket, method: str, url: str, head: bytes, body: bytes | None) -> tuple[int, str, Headers, bytes]:
    """Sends one request on a connected socket (socket.socket or _socket's)
    and reads its response (the socket's timeout applies to each read);
    closes the socket."""
    try:
        with _sock.reader(sock) as f:
            small = body is not None and len(body) < _JOIN_BELOW
            sock.sendall(head + body if body is not None and small else head)
            if body and not small:
                sock.sendall(body)
            return read_response(f, method, f"{method} {url}")
    finally:
        sock.close()


# ---- the body server ------------------------------------------------------------------


def http_date(t: float | None = None) -> str:
    """RFC 9110's IMF-fixdate (no locale: the names are fixed)."""
    tm = time.gmtime(t)
    return (
        f"{_DAYS[tm.tm_wday]}, {tm.tm_mday:02d} {_MONTHS[tm.tm_mon - 1]} {tm.tm_year} "
        f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} GMT"
    )


def _response(status: int, headers: Headers, body: bytes, keep: bool) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS[status]}", "Server: spanza", f"Date: {http_date()}"]
    lines += [f"{k}: {v}" for k, v in headers]
    lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: keep-alive" if keep else "Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class BodyServer:
    """Answers GET and HEAD with one body on a listener, a thread per
    connection (keep-alive as HTTP/1.1 wants, at most MAX_CONNECTIONS open:
    more get 503); other methods get 405, a malformed request 400 and a
    closed connection. Has the surface of a
    socketserver server that `spanza.netstack.ServerThread` runs."""

    timeout: float | None = None

    def __init__(self, listener: Listener, body: bytes, content_type: str = "text/plain") -> None:
        _check_text(content_type, "content_type")
        self.listener = listener
        self.body = bytes(body)
        self.content_type = content_type
        self.server_address = listener.getsockname()
        self._conns: set[socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.refused = 0  # connections answered 503 (over MAX_CONNECTIONS)

    def fileno(self) -> int:
        return self.listener.fileno()

    def handle_request(self) -> None:
        try:
            sock, addr = self.listener._accept(_sock.socket)
        except OSError:
            return
        with self._lock:
            busy = len(self._conns) >= MAX_CONNECTIONS
            if not self._closed and not busy:
                self._conns.add(sock)
        if self._closed or busy:
            # Over the limit: a thread per connection must stay bounded
            # whatever a client opens (idle ones wait IDLE_TIMEOUT each).
            if busy:
                self.refused += 1
                with contextlib.suppress(OSError):
                    sock.sendall(_response(503, [("Retry-After", "1")], b"", False))
            sock.close()
            return
        threading.Thread(target=self._serve, args=(sock, addr), name=f"http {addr[0]}", daemon=True).start()

    def service_actions(self) -> None:
        pass

    def server_close(self) -> None:
        with self._lock:
            self._closed = True
            conns, self._conns = self._conns, set()
        self.listener.close()
        for s in conns:
            # Wakes the connection's thread out of its read; it closes the socket.
            try:
                s.shutdown(_sock.SHUT_RDWR)
            except OSError:
                pass

    def _serve(self, sock: socket, addr: Any) -> None:
        try:
            sock.settimeout(IDLE_TIMEOUT)
            with _sock.reader(sock) as f:
                while self._answer(sock, f, addr):
                    pass
        except (OSError, HTTPProtocolError) as e:
            # A reset, the idle timeout, a request cut short: that connection's end only.
            log.debug("http %s: %s", addr[0], e)
        finally:
            with self._lock:
                self._conns.discard(sock)
            sock.close()

    def _answer(self, sock: socket, f: BinaryIO, addr: Any) -> bool:
        """Reads and answers one request; False when the connection ends."""
        what = f"request from {addr[0]}"
        line = _line(f, what)
        if not line:
            return False  # closed between requests
        parts = line.decode("latin-1").rstrip("\r\n").split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            sock.sendall(_response(400, [], b"", False))
            return False
        method, target, version = parts
        if version not in ("HTTP/1.0", "HTTP/1.1"):
            sock.sendall(_response(505, [], b"", False))
            return False
        try:
            headers = _headers(f, what)
            if (_field(headers, "expect") or "").lower() == "100-continue" and version == "HTTP/1.1":
                sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")  # curl waits for it before a body
            if not self._drop_body(f, headers, what):
                sock.sendall(_response(413, [], b"", False))
                return False
        except HTTPProtocolError:
            sock.sendall(_response(400, [], b"", False))
            return False
        conn = (_field(headers, "connection") or "").lower()
        keep = "keep-alive" in conn if version == "HTTP/1.0" else "close" not in conn
        if method in ("GET", "HEAD"):
            head = _response(200, [("Content-Type", self.content_type)], self.body, keep)
            if method == "HEAD":
                sock.sendall(head)
            elif len(self.body) < _JOIN_BELOW:
                sock.sendall(head + self.body)  # one segment for a small answer
            else:
                # Not joined (that would copy the body), and blocking: with a
                # timeout, sendall polls after every full socket buffer (as
                # http.server's handlers, which set none, do not).
                sock.sendall(head)
                sock.settimeout(None)
                try:
                    sock.sendall(self.body)
                finally:
                    sock.settimeout(IDLE_TIMEOUT)
        else:
            sock.sendall(_response(405, [("Allow", "GET, HEAD")], b"", keep))
        log.debug("http %s: %s %s -> %s", addr[0], method, target[:200], 200 if method in ("GET", "HEAD") else 405)
        return keep

    @staticmethod
    def _drop_body(f: BinaryIO, headers: Headers, what: str) -> bool:
        """Reads a request's body (to keep the connection in step) and drops
        it; False if it is over MAX_REQUEST_BODY (not read)."""
        if _field(headers, "transfer-encoding") is not None:
            try:
                _chunked(f, what, MAX_REQUEST_BODY)
            except _TooLarge:
                return False
            return True
        length = _content_length(headers, what) or 0
        if length > MAX_REQUEST_BODY:
            return False
        _exactly(f, length, what)
        return True
