"""Our DERP server against Tailscale's own code: the Go derphttp client
(derpclient) on plain HTTP and TLS, and a mixed mesh with Tailscale's derper."""

from __future__ import annotations

import base64
import os
import time

import pytest

from spanza.derp import DerpServer, write_self_signed_cert
from tests.interop.gohelpers import Derper, GoDerpClient, free_port

pytestmark = pytest.mark.interop


@pytest.fixture(params=[False, True], ids=["http", "tls"])
def server_and_opts(request, tmp_path):
    tls = request.param
    with DerpServer(tls=tls) as s:
        opts = {}
        if tls:
            ca = tmp_path / "ca.pem"
            ca.write_text(s.ca_cert_pem)
            opts["ca_file"] = str(ca)
        yield s, opts


def registered(*clients: GoDerpClient) -> None:
    """Go's Connect returns before the server has registered the client (it
    does not wait for ServerInfo); our server sends ServerInfo right after
    registering, so seeing it means packets to this client are routable."""
    for c in clients:
        c.wait_event("server_info", 10)


def _exchange(a: GoDerpClient, b: GoDerpClient, data: bytes) -> None:
    a.send(b.public_key, data)
    assert b.recv() == (a.public_key, data)
    b.send(a.public_key, data[::-1])
    assert a.recv() == (b.public_key, data[::-1])


def test_go_clients_relay_through_our_server(server_and_opts):
    s, opts = server_and_opts
    with GoDerpClient(s.url, **opts) as a, GoDerpClient(s.url, **opts) as b:
        assert a.server_key == s.node_key
        registered(a, b)
        _exchange(a, b, b"\x01")
        _exchange(a, b, os.urandom(64 * 1024))
        assert a.ping()["ok"] and b.ping()["ok"]
        st = s.stats()
        assert st["packets_sent"] == 4 and st["bytes_sent"] == 2 * (1 + 64 * 1024)
        assert st["pings"] >= 2
        # b leaves: a, which received from b, is told (reason 0: Disconnected).
        b_key = b.public_key
        b.close()
        gone = a.wait_event("peer_gone")
        assert gone["peer"] == b_key and gone["reason"] == 0


def test_go_client_gets_not_here_for_disco_to_an_unknown_key():
    with DerpServer() as s, GoDerpClient(s.url) as a:
        registered(a)
        unknown = "nodekey:" + os.urandom(32).hex()
        disco = b"TS\xf0\x9f\x92\xac" + os.urandom(56)
        # (not a.send(): waiting for its "sent" event could swallow the reply)
        a._cmd(op="send", to=unknown, data=base64.b64encode(disco).decode())
        gone = a.wait_event("peer_gone")
        assert gone["peer"] == unknown and gone["reason"] == 1


def test_go_client_burst(server_and_opts):
    """A burst of 1400-byte packets through Go's client (its own framing and buffering)."""
    s, opts = server_and_opts
    with GoDerpClient(s.url, **opts) as a, GoDerpClient(s.url, **opts) as b:
        registered(a, b)
        a._cmd(op="send_n", to=b.public_key, size=1400, count=30)
        got = [b.recv() for _ in range(30)]
        assert [d[0] for _, d in got] == list(range(30))
        assert all(src == a.public_key and len(d) == 1400 for src, d in got)
        assert a.wait_event("sent")["ok"]


def test_mixed_mesh_with_tailscales_derper(tmp_path, monkeypatch):
    """Our server and derper share a mesh key, each --mesh-with the other
    (TLS, certificates each side trusts); a client on each exchanges packets."""
    mesh_key = os.urandom(32).hex()
    ours_port, derper_port = free_port(), free_port()
    # Certificates made up front so each side can trust the other's.
    write_self_signed_cert("127.0.0.1", tmp_path / "ours.crt", tmp_path / "ours.key")
    derper_certs = tmp_path / "derper-certs"
    derper_certs.mkdir()
    write_self_signed_cert("127.0.0.1", derper_certs / "127.0.0.1.crt", derper_certs / "127.0.0.1.key")
    with DerpServer(
        port=ours_port,
        tls=True,
        cert_file=tmp_path / "ours.crt",
        key_file=tmp_path / "ours.key",
        mesh_key=mesh_key,
        mesh_with=[f"https://127.0.0.1:{derper_port}/derp"],
        mesh_ca_file=derper_certs / "127.0.0.1.crt",
        mesh_retry_ms=500,
    ) as ours:
        # Go's x509 takes extra roots from SSL_CERT_FILE: derper's mesh client trusts ours.
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ours.crt"))
        with Derper(
            tls=True,
            port=derper_port,
            mesh_key=mesh_key,
            mesh_with=[f"127.0.0.1:{ours_port}"],
            extra=["--certdir", str(derper_certs)],
        ) as derper:
            monkeypatch.delenv("SSL_CERT_FILE")
            deadline = time.monotonic() + 30
            while ours.stats()["mesh_clients_up"] != 1 or ours.stats()["watchers"] != 1:
                assert time.monotonic() < deadline, (ours.stats(), derper.output()[-3000:])
                time.sleep(0.1)
            with (
                GoDerpClient(ours.url, ca_file=str(tmp_path / "ours.crt")) as a,
                GoDerpClient(derper.url, ca_file=str(derper_certs / "127.0.0.1.crt")) as b,
            ):
                # Routes propagate asynchronously: retry the first exchange.
                deadline = time.monotonic() + 20
                while True:
                    a.send(b.public_key, b"ours -> derper")
                    try:
                        assert b.recv(timeout=1) == (a.public_key, b"ours -> derper")
                        break
                    except TimeoutError:
                        assert time.monotonic() < deadline, (ours.stats(), derper.output()[-3000:])
                _exchange(b, a, os.urandom(64 * 1024))
                _exchange(a, b, b"\x01")
                st = ours.stats()
                assert st["packets_forwarded_out"] >= 2 and st["packets_forwarded_in"] >= 2
