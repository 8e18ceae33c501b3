"""`Peer` as a user finds it: the tunnel's sockets, forwards and HTTP on the
peer itself, readable JSON-ready counters, a table in a notebook."""

from __future__ import annotations

import http.server
import ipaddress
import json
import pydoc
import socket
import threading
from types import SimpleNamespace

import pytest

from spanza.scenario import Peer, _host_routes


class _Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        out = json.dumps({"got": json.loads(body), "ctype": self.headers["Content-Type"]}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: object) -> None:
        pass


def test_request_posts_json_and_reads_headers(peer_pair):
    peer_pair.a.serve_http(8080, _Echo)
    r = peer_pair.b.request("POST", "http://192.168.4.1:8080/items", json={"name": "x"})
    assert r.status == 201
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"got": {"name": "x"}, "ctype": "application/json"}


def test_sockets_forward_and_expose_on_the_peer(peer_pair):
    a, b = peer_pair.a, peer_pair.b
    assert b.ping("192.168.4.1", count=2, timeout=5)
    with a.listen(7000) as lst:
        c = b.connect(("192.168.4.1", 7000), timeout=10)
        s, _ = lst.accept()
        # the socket module's, not _socket's (which Spanza's own HTTP uses)
        assert type(c) is socket.socket and type(s) is socket.socket
        with c, s:
            c.sendall(b"ping")
            assert s.recv(4) == b"ping"
    with a.udp_socket(5353) as ua, b.udp_socket() as ub:
        ub.sendto(b"dgram", ("192.168.4.1", 5353))
        ua.settimeout(5)
        data, _ = ua.recvfrom(2048)
        assert data == b"dgram"
    # expose: a's tunnel port 9000 -> an OS echo server; forward: an OS port on b -> a:9000
    with socket.create_server(("127.0.0.1", 0)) as srv:

        def echo() -> None:
            conn, _ = srv.accept()
            with conn:
                conn.sendall(conn.recv(100).upper())

        threading.Thread(target=echo, daemon=True).start()
        with (
            a.expose(9000, srv.getsockname()),
            b.forward(to=("192.168.4.1", 9000)) as fw,
            socket.create_connection(fw, timeout=10) as c,
        ):
            c.sendall(b"through")
            assert c.recv(100) == b"THROUGH"


def test_addresses_and_interfaces(peer_pair):
    a = peer_pair.a
    assert a.address == "192.168.4.1" and a.device.addresses == ["192.168.4.1"]
    # made on first use (ipaddress is not imported for `spanza demo`)
    assert a.interfaces == [ipaddress.ip_interface("192.168.4.1/24")]
    assert a.device.host.interfaces == a.interfaces and a.interfaces is a.interfaces
    assert repr(a.device.host) == "<Host 192.168.4.1/24>"
    # add_peer's allowed IPs: of a Peer, or of anything with interfaces
    assert _host_routes(a) == ["192.168.4.1/32"]
    other = SimpleNamespace(interfaces=[ipaddress.ip_interface("10.0.0.1/24"), ipaddress.ip_interface("fd00::1/64")])
    assert _host_routes(other) == ["10.0.0.1/32", "fd00::1/128"]


def test_stats_nested_without_zeros_and_json_ready(peer_pair):
    peer_pair.a.serve_http(80, body=b"x")
    assert peer_pair.b.http_get("http://192.168.4.1/") == (200, b"x")
    st = peer_pair.b.stats()
    json.dumps(st)  # no datetimes, no key objects
    assert st["relay"]["state"] == "connected"
    (peer,) = st["peers"].values()
    assert isinstance(peer["last_handshake"], str) and peer["rx"]["bytes"] > 0
    assert "drops" not in st["device"]  # all zero: left out

    def leaves(d: dict) -> list:
        return [x for v in d.values() for x in (leaves(v) if isinstance(v, dict) else [v])]

    assert 0 not in leaves(st)
    full = peer_pair.b.stats(all=True)
    assert full["device"]["drops"]["no_peer"] == 0
    assert max(len(k) for k in full.flat()) < 48
    html = peer_pair.b._repr_html_()
    assert html.startswith("<table>") and "relay.state" in html
    assert peer_pair.b.device._repr_html_().startswith("<table>")
    assert peer_pair.relay._repr_html_().startswith("<table>")


def test_stats_to_pandas(peer_pair):
    pd = pytest.importorskip("pandas")
    s = peer_pair.a.stats().to_pandas()
    assert isinstance(s, pd.Series) and s["relay.state"] == "connected"


# What help(Peer) must show, each with a docstring.
PEER_METHODS = (
    "ping",
    "connect",
    "listen",
    "forward",
    "expose",
    "udp_socket",
    "request",
    "http_get",
    "serve_http",
    "stats",
    "wait_relay",
)


def test_help_shows_the_whole_peer():
    text = pydoc.render_doc(Peer, renderer=pydoc.plaintext)
    for name in PEER_METHODS:
        assert f" {name}(self" in text, name
        assert getattr(Peer, name).__doc__, name
