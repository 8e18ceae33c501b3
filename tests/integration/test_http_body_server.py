"""serve_http(body=...): Spanza's own HTTP/1.1 answer on a memory wire,
with the standard library's client and raw sockets, and Spanza's client
against the standard library's server."""

from __future__ import annotations

import http.server
import threading

import pytest

from spanza import _http1, web
from spanza.errors import ConfigError, HTTPProtocolError
from spanza.netstack import HTTPConnection
from tests.integration.netstack_helpers import A4, A6
from tests.support import wait_for

BODY = b"one body for every GET\n"


def _raw(b, request: bytes, addr: str = A4, port: int = 80) -> bytes:
    """Sends raw bytes, returns everything until the server closes."""
    s = b.connect((addr, port), timeout=5)
    with s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


@pytest.mark.parametrize("addr", [A4, A6])
def test_stdlib_client_keeps_the_connection_alive(pair, addr):
    a, b, _ = pair
    with a.serve_http(80, body=BODY, content_type="text/x-test"):
        conn = HTTPConnection(b, addr, 80, timeout=5)
        for _ in range(3):  # one connection, three requests
            conn.request("GET", "/anything")
            r = conn.getresponse()
            assert (r.status, r.read(), r.getheader("Content-Type")) == (200, BODY, "text/x-test")
            assert r.getheader("Date").endswith(" GMT")
        conn.request("HEAD", "/")
        r = conn.getresponse()
        assert (r.status, r.getheader("Content-Length"), r.read()) == (200, str(len(BODY)), b"")
        conn.close()


def test_other_methods_get_405_and_the_connection_stays_usable(pair):
    a, b, _ = pair
    with a.serve_http(80, body=BODY):
        conn = HTTPConnection(b, A4, 80, timeout=5)
        conn.request("POST", "/", body=b"x" * 1000)  # the body is read and dropped
        r = conn.getresponse()
        assert (r.status, r.getheader("Allow"), r.read()) == (405, "GET, HEAD", b"")
        conn.request("GET", "/")
        assert conn.getresponse().read() == BODY
        conn.close()


def test_chunked_request_body_is_dropped_in_step(pair):
    a, b, _ = pair
    with a.serve_http(80, body=BODY):
        out = _raw(
            b,
            b"PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
    assert out.startswith(b"HTTP/1.1 405 ")
    assert out.endswith(b"\r\n\r\n" + BODY)
    assert out.count(b"HTTP/1.1 ") == 2


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (b"GET /\r\n\r\n", b"400"),  # HTTP/0.9
        (b"GARBAGE\r\n\r\n", b"400"),
        (b"GET / HTTP/2.0\r\n\r\n", b"505"),
        (b"GET / HTTP/1.1\r\nno colon\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", b"400"),  # obs-fold: refused by a server
        (b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nContent-Length: \xb2\r\n\r\n", b"400"),
        (b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (_http1.MAX_REQUEST_BODY + 1), b"413"),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * (_http1.MAX_LINE + 10) + b"\r\n\r\n", b"400"),
    ],
)
def test_bad_requests_get_an_error_and_a_closed_connection(pair, request_bytes, status):
    a, b, _ = pair
    with a.serve_http(80, body=BODY):
        out = _raw(b, request_bytes)
        assert out.startswith(b"HTTP/1.1 " + status + b" ")
        assert b"Connection: close" in out
        assert _raw(b, b"GET / HTTP/1.0\r\n\r\n").endswith(BODY)  # the server goes on


def test_expect_100_continue_is_answered(pair):
    a, b, _ = pair
    with a.serve_http(80, body=BODY):
        s = b.connect((A4, 80), timeout=5)
        with s:
            s.sendall(b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
            assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"  # before the body is sent
            s.sendall(b"abc")
            assert s.recv(200).startswith(b"HTTP/1.1 405 ")


def test_http10_closes_unless_asked(pair):
    a, b, _ = pair
    with a.serve_http(80, body=BODY):
        assert _raw(b, b"GET / HTTP/1.0\r\n\r\n").endswith(b"Connection: close\r\n\r\n" + BODY)


def test_closing_the_server_ends_idle_connections(pair):
    a, b, _ = pair
    srv = a.serve_http(80, body=BODY)
    conn = b.connect((A4, 80), timeout=5)
    conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    got = b""
    while not got.endswith(BODY):
        chunk = conn.recv(65536)
        assert chunk
        got += chunk
    name = "http " + b.addresses[0]
    assert [t for t in threading.enumerate() if t.name == name]  # the idle keep-alive thread
    srv.close()
    assert conn.recv(10) == b""  # closed by the server, not left to its 60 s idle timeout
    conn.close()
    wait_for(lambda: not [t for t in threading.enumerate() if t.name == name], what="connection threads to end")


def test_connections_over_the_limit_get_503(pair, monkeypatch):
    a, b, _ = pair
    monkeypatch.setattr(_http1, "MAX_CONNECTIONS", 2)
    with a.serve_http(80, body=BODY) as srv:
        idle = [b.connect((A4, 80), timeout=5) for _ in range(2)]
        wait_for(lambda: len(srv.server._conns) == 2, what="two connections served")
        assert _raw(b, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 503 ")
        assert srv.server.refused == 1
        idle[0].close()
        wait_for(lambda: len(srv.server._conns) == 1, what="the closed one to be gone")
        assert _raw(b, b"GET / HTTP/1.0\r\n\r\n").endswith(BODY)  # room again
        idle[1].close()


def test_serve_http_takes_one_of_handler_directory_body(pair, tmp_path):
    a, b, _ = pair
    with pytest.raises(ConfigError, match="not several"):
        a.serve_http(80, body=b"x", directory=str(tmp_path))
    with pytest.raises(ConfigError, match=r"content_type: .* holds a line break"):
        a.serve_http(80, body=b"x", content_type="text/plain\r\nSet-Cookie: x=1")
    with pytest.raises(TypeError, match="body is int, want bytes or str"):
        a.serve_http(80, body=42)  # type: ignore[arg-type]
    with a.serve_http(80, body="é"):  # neither call left the port taken; a str is UTF-8
        assert web.exchange(b, "GET", f"http://{A4}/")[3] == "é".encode()


class _Chunked(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for part in (b"chunked ", b"from ", b"http.server"):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, *args: object) -> None:
        pass


def test_spanza_client_reads_stdlib_server(pair):
    a, b, _ = pair
    with a.serve_http(80, _Chunked):
        status, reason, headers, body = web.exchange(b, "GET", f"http://{A4}/")
        assert (status, reason, body) == (200, "OK", b"chunked from http.server")
        r = web.request(b, "GET", f"http://[{A6}]:80/")
        assert (r.ok, r.body, r.headers["transfer-encoding"]) == (True, b"chunked from http.server", "chunked")


def test_spanza_client_on_a_server_that_hangs_up(pair):
    a, b, _ = pair
    lst = a.listen(81)

    def serve() -> None:
        s, _ = lst.accept()
        s.recv(65536)
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
        s.close()

    t = threading.Thread(target=serve)
    t.start()
    with pytest.raises(HTTPProtocolError, match=r"GET http://192.168.4.1:81/: .* after 9 of 100 body bytes"):
        web.exchange(b, "GET", f"http://{A4}:81/")
    t.join(5)
    lst.close()
