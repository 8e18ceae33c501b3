"""DerpClient's TLS against a fake server: SNI, no ALPN (never h2),
verification by CA file, pin, or not at all; IPv6 literals."""

from __future__ import annotations

import hashlib
import os
import ssl

import pytest

import spanza
from spanza.derp import write_self_signed_cert
from tests.integration.derp_fake_server import SEND_PACKET, FakeServer, serve
from tests.support import has_ipv6_loopback, wait_for

PEER = bytes(range(32))


def make_ctx(tmp_path, name: str) -> tuple[ssl.SSLContext, str, list]:
    cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    write_self_signed_cert(name, cert, key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2", "http/1.1"])  # like autocert: h2 is on offer
    snis: list = []
    ctx.sni_callback = lambda sock, server_name, c: snis.append(server_name)
    return ctx, str(cert), snis


def first(srv: FakeServer, kind) -> tuple:
    while True:
        item = srv.results.get(timeout=5)
        if item[0] == kind:
            return item


def test_sni_no_alpn_and_ca_file(tmp_path):
    ctx, cert, snis = make_ctx(tmp_path, "derp.test")
    with FakeServer([serve], tls=ctx) as srv:
        with spanza.DerpClient(srv.url, os.urandom(32), ca_file=cert, server_name="derp.test") as c:
            c.wait_connected(5)
            _, alpn, version = first(srv, "tls")
            assert alpn is None  # nothing offered, so the server could not pick h2
            assert version in ("TLSv1.2", "TLSv1.3")
            assert snis == ["derp.test"]
            c.send(PEER, b"tls")
            while first(srv, SEND_PACKET)[1] != PEER + b"tls":
                pass


def test_sni_is_the_url_host_name(tmp_path):
    ctx, cert, snis = make_ctx(tmp_path, "localhost")
    with FakeServer([serve], tls=ctx) as srv:
        url = f"https://localhost:{srv.port}/derp"
        with spanza.DerpClient(url, os.urandom(32), ca_file=cert) as c:
            c.wait_connected(5)
            assert snis == ["localhost"]


def test_no_sni_for_ip_literals(tmp_path):
    ctx, cert, snis = make_ctx(tmp_path, "127.0.0.1")
    with FakeServer([serve], tls=ctx) as srv:
        with spanza.DerpClient(srv.url, os.urandom(32), ca_file=cert) as c:
            c.wait_connected(5)
            assert snis == [None]


def test_name_mismatch_fails_verification(tmp_path):
    ctx, cert, _ = make_ctx(tmp_path, "derp.test")
    with FakeServer([serve], tls=ctx) as srv:
        with spanza.DerpClient(
            srv.url, os.urandom(32), ca_file=cert, server_name="other.test", backoff_max_ms=100
        ) as c:
            wait_for(lambda: c.stats()["tls_errors"] >= 1)
            assert "certificate verification failed" in c.last_error
            assert not c.connected


def test_pin_and_insecure(tmp_path):
    ctx, cert, _ = make_ctx(tmp_path, "derp.test")
    pin = hashlib.sha256(ssl.PEM_cert_to_DER_cert(open(cert).read())).digest()
    with FakeServer([serve], tls=ctx) as srv:
        for kw in ({"pin_sha256": pin}, {"pin_sha256": "sha256-raw:" + pin.hex().upper()}, {"insecure": True}):
            with spanza.DerpClient(srv.url, os.urandom(32), **kw) as c:
                c.wait_connected(5)


def test_plain_http_client_against_tls_server_fails_cleanly(tmp_path):
    ctx, _, _ = make_ctx(tmp_path, "derp.test")
    with FakeServer([serve], tls=ctx) as srv:
        url = srv.url.replace("https://", "http://")
        with spanza.DerpClient(url, os.urandom(32), backoff_max_ms=100, connect_timeout_ms=500) as c:
            wait_for(lambda: c.stats()["connect_failures"] >= 1)
            assert not c.connected


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback here")
def test_ipv6_literal():
    with FakeServer([serve], host="::1") as srv:
        assert srv.url.startswith("http://[::1]:")
        with spanza.DerpClient(srv.url, os.urandom(32)) as c:
            c.wait_connected(5)
            _, conn = first(srv, "connected")
            assert conn.request.split(b"\r\n")[1] == f"Host: [::1]:{srv.port}".encode()
