"""Port forwards: OS programs (curl, an OS http.server, UDP echo) reach the
tunnel and back through forward() and expose()."""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

import spanza
from tests.integration.netstack_helpers import A4, A6
from tests.support import assert_closed_by_peer, has_ipv6_loopback

CURL = shutil.which("curl")


class _Page(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


def page(body: bytes) -> type[_Page]:
    return type("Page", (_Page,), {"body": body})


def curl(url: str) -> bytes:
    assert CURL, "curl is installed by scripts/install-deps.sh"
    # Not with the sanitizer runtime `make asan` preloads: curl hangs under it.
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    r = subprocess.run([CURL, "-sS", "--max-time", "10", url], capture_output=True, timeout=20, env=env)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout


@pytest.mark.parametrize("tunnel_ip", [A4, A6])
def test_curl_through_forward_reaches_http_server_in_tunnel(link_pair, tunnel_ip):
    a, b, wire = link_pair
    body = os.urandom(300_000)
    with a.serve_http(80, page(body)), b.forward(("127.0.0.1", 0), to=(tunnel_ip, 80)) as fwd:
        host, port = fwd
        assert host == "127.0.0.1" and port > 0
        assert curl(f"http://127.0.0.1:{port}/") == body
        assert curl(f"http://127.0.0.1:{port}/again") == body


def test_curl_through_forward_and_expose_reaches_os_server(link_pair):
    """curl -> forward on B -> tunnel -> expose on A -> an OS http.server."""
    a, b, wire = link_pair
    body = b"from the OS side " * 1000
    os_srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), page(body))
    t = threading.Thread(target=os_srv.serve_forever, kwargs={"poll_interval": 0.05})
    t.start()
    try:
        with a.expose(8080, to=os_srv.server_address) as exp:
            assert exp == (A4, 8080)
            with b.forward(("127.0.0.1", 0), to=(A4, 8080)) as fwd:
                assert curl(f"http://127.0.0.1:{fwd[1]}/") == body
            # and from Python inside the tunnel
            conn = spanza.netstack.HTTPConnection(b, A6, 8080, timeout=5)
            conn.request("GET", "/")
            assert conn.getresponse().read() == body
            conn.close()
    finally:
        os_srv.shutdown()
        t.join(5)
        os_srv.server_close()


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback here")
def test_forward_listens_on_ipv6_loopback(pair):
    a, b, wire = pair
    with a.serve_http(80, page(b"six")), b.forward(("::1", 0), to=(A6, 80)) as fwd:
        assert curl(f"http://[::1]:{fwd[1]}/") == b"six"


def test_forward_to_closed_tunnel_port_resets_the_os_client(link_pair):
    a, b, wire = link_pair
    with b.forward(("127.0.0.1", 0), to=(A4, 9)) as fwd:
        with pytest.raises(ConnectionResetError):
            # The OS accepts at once; the reset follows when the tunnel
            # refuses (sometimes before connect() even returns).
            with socket.create_connection(fwd, timeout=5) as s:
                s.sendall(b"x")
                assert s.recv(1) != b"", "expected a reset, not a clean close"


def test_expose_to_closed_os_port_resets_the_tunnel_client(link_pair):
    a, b, wire = link_pair
    with socket.socket() as tmp:  # a port nobody listens on
        tmp.bind(("127.0.0.1", 0))
        closed_port = tmp.getsockname()[1]
    with a.expose(8081, to=("127.0.0.1", closed_port)):
        c = b.connect((A4, 8081), timeout=5)  # lwIP accepts, then the OS side fails
        assert_closed_by_peer(c)
        c.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and a.stats()["tcp_open"]:
        time.sleep(0.02)
    assert a.stats()["tcp_open"] == 0


def test_udp_through_forward_and_expose(link_pair):
    """An OS UDP client -> forward on B -> tunnel -> expose on A -> OS echo."""
    a, b, wire = link_pair
    echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    echo.bind(("127.0.0.1", 0))
    echo.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = echo.recvfrom(65535)
            except TimeoutError:
                continue
            echo.sendto(data.upper(), peer)

    t = threading.Thread(target=serve)
    t.start()
    try:
        with (
            a.expose(5353, to=echo.getsockname(), proto="udp"),
            b.forward(("127.0.0.1", 0), to=(A4, 5353), proto="udp") as fwd,
        ):
            clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
            for i, cl in enumerate(clients):  # one session per OS client
                cl.settimeout(5)
                for n in (1, 1000, 5000):
                    msg = bytes([97 + i]) * n
                    cl.sendto(msg, fwd)
                    data, peer = cl.recvfrom(65535)
                    assert data == msg.upper()
                    assert peer == tuple(fwd)
            # a tunnel UDP socket reaches the exposed port as well
            with b.udp_socket() as u:
                u.settimeout(5)
                u.sendto(b"tunnel", (A6, 5353))
                assert u.recvfrom(100) == (b"TUNNEL", (A6, 5353))
            for cl in clients:
                cl.close()
    finally:
        stop.set()
        t.join(10)
        echo.close()


def test_forward_argument_errors(pair):
    a, b, wire = pair
    with pytest.raises(spanza.ConfigError, match="to="):
        b.forward(("127.0.0.1", 0))
    with pytest.raises(spanza.ConfigError, match="proto"):
        b.forward(("127.0.0.1", 0), to=(A4, 80), proto="sctp")
    with pytest.raises(spanza.ConfigError):
        b.forward(("127.0.0.1", 0), to=("not-an-ip", 80))
    with a.expose(8082, to=("127.0.0.1", 1)):
        with pytest.raises(OSError, match="in use"):
            a.expose(8082, to=("127.0.0.1", 1))
