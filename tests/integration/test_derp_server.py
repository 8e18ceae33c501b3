"""The DERP server against a raw-socket client written from the spec:
relaying, the handshake variants, HTTP endpoints, the Python API."""

from __future__ import annotations

import json
import os
import socket
import ssl
import struct
import urllib.error
import urllib.request

import pytest

import spanza
from spanza.derp import DerpServer, load_derper_key, node_public_key
from tests.integration._derp_raw import (
    KEEP_ALIVE,
    PONG,
    SEND_PACKET,
    SERVER_INFO,
    SERVER_KEY,
    RawDerp,
    assert_relays,
    box_open,
    connect,
    frame,
)


@pytest.fixture(scope="module")
def server():
    with DerpServer() as s:
        yield s


@pytest.fixture(scope="module")
def tls_server():
    with DerpServer(tls=True) as s:
        yield s


def test_url_key_and_repr(server):
    assert server.url == f"http://127.0.0.1:{server.port}/derp"
    assert len(server.public_key) == 32 and server.node_key == "nodekey:" + server.public_key.hex()
    assert server.ca_cert_pem is None and server.cert_sha256 is None
    assert "DerpServer" in repr(server)


@pytest.mark.parametrize("size", [1, 1400, 65536])
def test_relays_both_ways(server, size):
    a, b = connect(server.port), connect(server.port)
    assert a.server_pub == server.public_key
    assert a.server_info == {"version": 2}
    assert_relays(a, b, size)
    a.close()
    b.close()


def test_empty_packet_is_relayed(server):
    a, b = connect(server.port), connect(server.port)
    a.send_packet(b.pub, b"")
    assert b.recv_packet() == (a.pub, b"")


def test_101_response_is_exact(server):
    c = RawDerp(server.port)
    c.send(b"GET /derp HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: DERP\r\n\r\n")
    _, _, head = c.read_http_head()
    assert head == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n"
        b"Derp-Version: 2\r\nDerp-Public-Key: " + server.public_key.hex().encode()
    )
    f = c.recv_frame()
    assert f.type == SERVER_KEY and len(f.payload) == 40 and f.payload[8:] == server.public_key


@pytest.mark.parametrize("upgrade", ["derp", "DeRp", "websocket"])
def test_upgrade_header_is_case_insensitive_and_legacy_websocket_falls_through(server, upgrade):
    c = RawDerp(server.port)
    c.send(f"GET /derp?x=1 HTTP/1.1\r\nHost: x\r\nUpgrade: {upgrade}\r\n\r\n".encode())
    status, headers, _ = c.read_http_head()
    assert status == 101 and headers["upgrade"] == "DERP"


def test_fast_start_pipelined_client_info_and_packet(server):
    """Derp-Fast-Start: no 101, ServerKey still sent; ClientInfo and an early
    SendPacket in the same segment as the GET are not lost."""
    b = connect(server.port)
    c = RawDerp(server.port)
    c.server_pub = server.public_key.raw  # as a fast-start client knows it from the meta-cert
    req = b"GET /derp HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nDerp-Fast-Start: 1\r\nUpgrade: DERP\r\n\r\n"
    c.send(req + c.client_info_frame() + frame(SEND_PACKET, b.pub + b"early"))
    first = c.recv_frame()
    assert first.type == SERVER_KEY  # no HTTP response at all
    info = c.recv_frame()
    assert info.type == SERVER_INFO
    assert json.loads(box_open(info.payload, server.public_key.raw, c.priv)) == {"version": 2}
    assert b.recv_packet() == (c.pub, b"early")


def test_frames_split_into_single_bytes(server):
    a, b = connect(server.port), connect(server.port)
    data = frame(SEND_PACKET, b.pub + b"dribble") * 3
    for i in range(len(data)):
        a.send(data[i : i + 1])
    for _ in range(3):
        assert b.recv_packet() == (a.pub, b"dribble")


def test_many_frames_in_one_write(server):
    a, b = connect(server.port), connect(server.port)
    a.send(b"".join(frame(SEND_PACKET, b.pub + struct.pack(">I", i)) for i in range(30)))
    got = [b.recv_packet()[1] for _ in range(30)]
    assert got == [struct.pack(">I", i) for i in range(30)]


def test_ping_pong(server):
    c = connect(server.port)
    for i in range(3):
        c.ping(b"pingpon" + bytes([i]))
        assert c.recv_type(PONG).payload == b"pingpon" + bytes([i])


def test_tls_relays_and_pins(tls_server):
    ctx = ssl.create_default_context(cadata=tls_server.ca_cert_pem)
    a, b = connect(tls_server.port, tls_ctx=ctx), connect(tls_server.port, tls_ctx=ctx)
    assert_relays(a, b, 1)
    assert_relays(a, b, 65536)
    # The pinned hash is the served leaf's.
    import hashlib

    der = a.sock.getpeercert(binary_form=True)
    assert hashlib.sha256(der).hexdigest() == tls_server.cert_sha256
    assert tls_server.cert_name == "sha256-raw:" + tls_server.cert_sha256
    assert a.sock.selected_alpn_protocol() is None
    assert a.sock.version() in ("TLSv1.2", "TLSv1.3")


def test_tls_with_certificate_files(tmp_path):
    spanza.derp.write_self_signed_cert("derp.test", tmp_path / "c.crt", tmp_path / "c.key")
    with DerpServer(
        tls=True, hostname="derp.test", cert_file=tmp_path / "c.crt", key_file=tmp_path / "c.key", require_sni=True
    ) as s:
        assert s.url == f"https://derp.test:{s.port}/derp"
        ctx = ssl.create_default_context(cafile=str(tmp_path / "c.crt"))
        a = connect(s.port, tls_ctx=ctx, server_hostname="derp.test")
        b = connect(s.port, tls_ctx=ctx, server_hostname="derp.test")
        assert_relays(a, b)
        # derper's manual mode refuses a mismatched SNI.
        with pytest.raises(ssl.SSLError):
            RawDerp(s.port, tls_ctx=ssl._create_unverified_context(), server_hostname="other.test")


def test_tls13_prefers_aes_128_gcm(tls_server):
    """As Go's crypto/tls (derper's) on AES-NI machines: the server picks
    TLS_AES_128_GCM_SHA256 even from a client that lists AES-256 first."""
    ctx = ssl._create_unverified_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.version() == "TLSv1.3"
            assert tls.cipher()[0] == "TLS_AES_128_GCM_SHA256"


# ---- HTTP endpoints ----


def _http(port: int, path: str, method: str = "GET", headers: dict | None = None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


@pytest.mark.parametrize("path", ["/derp/probe", "/derp/latency-check"])
def test_probe_endpoints(server, path):
    for method in ("GET", "HEAD"):
        status, headers, body = _http(server.port, path, method)
        assert status == 200 and body == b"" and headers["Access-Control-Allow-Origin"] == "*"
    status, _, body = _http(server.port, path, "POST")
    assert status == 405 and body == b"bogus probe method\n"


def test_generate_204_echoes_a_valid_challenge(server):
    status, headers, body = _http(
        server.port, "/generate_204", headers={"X-Tailscale-Challenge": "ts_derp.example:1-2"}
    )
    assert status == 204 and body == b""
    assert headers["X-Tailscale-Response"] == "response ts_derp.example:1-2"
    assert headers["Cache-Control"] == "no-cache, no-store, must-revalidate, no-transform, max-age=0"


@pytest.mark.parametrize("challenge", ["a" * 65, "bad/char", "sp ace"])
def test_generate_204_ignores_an_invalid_challenge(server, challenge):
    status, headers, _ = _http(server.port, "/generate_204", headers={"X-Tailscale-Challenge": challenge})
    assert status == 204 and "X-Tailscale-Response" not in headers


def test_home_robots_and_404(server):
    status, headers, body = _http(server.port, "/")
    assert status == 200 and b"DERP" in body and headers["Content-Type"].startswith("text/html")
    assert _http(server.port, "/robots.txt")[2] == b"User-agent: *\nDisallow: /\n"
    assert _http(server.port, "/nope")[0] == 404


# ---- keys and lifecycle ----


def test_key_file_config_is_derper_format_and_reused(tmp_path):
    path = tmp_path / "derper.key"
    with DerpServer(key_file_config=path) as s:
        pub = s.public_key
    text = path.read_text()
    assert json.loads(text)["PrivateKey"].startswith("privkey:") and "\t" in text
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    priv = load_derper_key(path, create=False)
    assert node_public_key(priv) == pub
    with DerpServer(key_file_config=path) as s:
        assert s.public_key == pub


def test_rfc7748_key_derivation():
    priv = "privkey:77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
    assert node_public_key(priv).hex() == "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"


@pytest.mark.parametrize("content", ["{}", '{"PrivateKey": "nodekey:00"}', "not json"])
def test_bad_key_file_is_a_config_error(tmp_path, content):
    path = tmp_path / "k.json"
    path.write_text(content)
    with pytest.raises(spanza.ConfigError, match="k.json"):
        DerpServer(key_file_config=path)


def test_config_errors_say_what_to_fix(tmp_path):
    with pytest.raises(spanza.ConfigError, match="mesh_key"):
        DerpServer(mesh_with=["127.0.0.1:1"])
    with pytest.raises(spanza.ConfigError, match="mesh_key"):
        DerpServer(mesh_key="abc")
    with pytest.raises(spanza.ConfigError, match="tls=True"):
        DerpServer(cert_file="a", key_file="b")
    (tmp_path / "allow").write_text("nodekey:1234\n")
    with pytest.raises(spanza.ConfigError, match="line 1"):
        DerpServer(allowlist_file=tmp_path / "allow")
    with pytest.raises(spanza.ConfigError, match="mesh peer"):
        DerpServer(mesh_key=os.urandom(32), mesh_with=["a/b/c"])
    with pytest.raises(spanza.ConfigError, match="mesh peer"):
        DerpServer(mesh_key=os.urandom(32), mesh_with=["[::1:5"])
    with pytest.raises(spanza.ConfigError, match="missing.crt"):
        DerpServer(tls=True, cert_file=tmp_path / "missing.crt", key_file=tmp_path / "missing.key")


def test_port_in_use_raises(server):
    with pytest.raises(OSError, match="listen"):
        DerpServer(port=server.port)


def test_close_disconnects_clients_and_is_idempotent():
    s = DerpServer()
    a = connect(s.port)
    s.close()
    a.expect_closed()
    s.close()
    assert s.closed
    with pytest.raises(spanza.ClosedError):
        s.stats()


def test_own_runtime_by_default_and_shared_when_given():
    with DerpServer() as s:
        assert s.runtime.name == "derp-server"
    with spanza.Runtime("mine") as rt:
        with DerpServer(runtime=rt) as s:
            assert s.runtime is rt
            connect(s.port).close()
        assert not rt.closed


def test_stats_count_relayed_packets_and_bytes():
    with DerpServer() as s:
        a, b = connect(s.port), connect(s.port)
        for _ in range(5):
            a.send_packet(b.pub, b"x" * 100)
        for _ in range(5):
            b.recv_packet()
        st = s.stats()
        assert st["clients"] == 2 and st["unique_keys"] == 2 and st["connections"] == 2
        assert st["packets_recv"] == 5 and st["bytes_recv"] == 500
        assert st["packets_sent"] == 5 and st["bytes_sent"] == 500
        assert st["upgrades"] == 2


def test_keepalives_every_60s_plus_jitter_on_a_virtual_clock():
    with DerpServer() as s:
        c = connect(s.port)
        c.ping(b"barrier!")
        assert c.recv_frame().type == PONG  # nothing else came first
        s.advance_clock(59_999)
        c.ping(b"barrier2")
        assert c.recv_frame().type == PONG  # not yet
        s.advance_clock(5_001)  # 60 s + up to 5 s of jitter
        assert c.recv_frame().type == KEEP_ALIVE
        s.advance_clock(65_000)
        assert c.recv_frame().type == KEEP_ALIVE
        assert s.stats()["keepalives_sent"] == 2
