"""Failures that say their cause and fix, at once (issue 12): no route, a
relay that is not running, TLS against a plain relay and plain against a
TLS one, a server that never answers, a refusal by the allowlist."""

from __future__ import annotations

import errno
import socket
import time

import pytest

from spanza import DerpClient, PrivateKey
from spanza.derp import Refused
from spanza.errors import NoRouteError, RelayError, RelayRefusedError
from spanza.scenario import Peer
from tests.support import free_port

# "At once": well under the timeouts the tests give (10 s).
FAST_S = 2.0


def _raises_fast(exc: type[BaseException], fn, *, within: float = FAST_S) -> BaseException:
    t0 = time.monotonic()
    with pytest.raises(exc) as info:
        fn()
    assert time.monotonic() - t0 < within, f"took {time.monotonic() - t0:.1f} s: {info.value}"
    return info.value


@pytest.mark.parametrize("mode", ["gateway", "transport"])
def test_request_before_connect_names_the_missing_route(make_peer, mode):
    b = make_peer("10.91.0.2/24", mode=mode)
    err = _raises_fast(NoRouteError, lambda: b.http_get("http://10.91.0.1/", timeout=10))
    assert str(err).startswith("no peer's allowed IPs contain 10.91.0.1: did you call connect()?")
    err = _raises_fast(NoRouteError, lambda: b.ping("10.91.0.2"))
    assert "this peer's own address" in str(err)


@pytest.mark.parametrize("mode", ["gateway", "transport"])
def test_relay_not_running_is_said_fast(make_derp_server, mode):
    url = f"http://127.0.0.1:{free_port()}/derp"
    with (
        Peer(url, "10.92.0.1/24", mode=mode) as a,
        Peer(url, "10.92.0.2/24", mode=mode) as b,
    ):
        a.add_peer(b)
        err = _raises_fast(RelayError, lambda: a.http_get("http://10.92.0.2/", timeout=10))
        assert "unreachable" in str(err) and "Connection refused" in str(err)
        assert "is the relay running" in str(err)


def test_tls_to_a_plain_relay(derp_server):
    c = DerpClient(
        derp_server.url.replace("http://", "https://"),
        PrivateKey.generate(),
        insecure=True,
    )
    with c:
        err = _raises_fast(RelayError, lambda: c.wait_connected(10))
    assert "wrong version number" in str(err) and "use http://" in str(err)
    assert "none" not in str(err)


def test_plain_to_a_tls_relay(derp_server_tls):
    with DerpClient(derp_server_tls.url.replace("https://", "http://"), PrivateKey.generate()) as c:
        err = _raises_fast(RelayError, lambda: c.wait_connected(10))
    assert "use https://" in str(err)


def test_a_server_that_never_answers_says_what_it_waits_for():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/derp"
        with (
            DerpClient(url, PrivateKey.generate()) as c,
            pytest.raises(TimeoutError) as info,
        ):
            c.wait_connected(0.5)
    msg = str(info.value)
    assert "no answer yet to the DERP handshake (is the URL a DERP server?)" in msg
    assert "none" not in msg


def test_silent_server_connect_timeout_names_the_stage():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/derp"
        with DerpClient(url, PrivateKey.generate(), connect_timeout_ms=200, backoff_max_ms=50) as c:
            with pytest.raises(TimeoutError):
                c.wait_connected(0.6)
            assert c.last_error.startswith("connect timed out after 200 ms (DERP handshake)")
            assert c.stats()["last_errno"] == 110  # ETIMEDOUT


def test_allowlist_refusal_stops_retrying_and_says_so(make_derp_server, tmp_path):
    allowed = PrivateKey.generate().public_key
    (tmp_path / "allow").write_text(allowed.tailscale + "\n")
    relay = make_derp_server(allowlist_file=str(tmp_path / "allow"))
    key = PrivateKey.generate()
    with DerpClient(relay.url, key) as c:
        err = _raises_fast(RelayRefusedError, lambda: c.wait_connected(10))
        assert "refused by the server" in str(err)
        assert key.public_key.tailscale in str(err) and "allowlist" in str(err)
        st = c.stats()
        assert st["state"] == "refused" and st["refusals"] == 2
        attempts = st["connect_attempts"]
        time.sleep(0.3)  # would be several retries at the default backoff
        assert c.stats()["connect_attempts"] == attempts
        assert any(isinstance(e, Refused) for e in c.events(0.1))


def test_refused_peer_request_says_refused(make_derp_server, tmp_path):
    (tmp_path / "allow").write_text(PrivateKey.generate().public_key.tailscale + "\n")
    relay = make_derp_server(allowlist_file=str(tmp_path / "allow"))
    other = make_derp_server()
    with (
        Peer(relay.url, "10.93.0.1/24", mode="gateway") as a,
        Peer(other.url, "10.93.0.2/24") as b,
    ):
        a.add_peer(b)
        err = _raises_fast(RelayRefusedError, lambda: a.http_get("http://10.93.0.2/", timeout=10))
        assert "allowlist" in str(err)


def test_peer_request_through_the_tunnel(peer_pair):
    peer_pair.a.serve_http(80, body=b"ok")
    r = peer_pair.b.request("GET", "http://192.168.4.1/", headers={"X-Test": "1"})
    assert (r.status, r.body, r.ok) == (200, b"ok", True)
    assert r.headers["Content-Type"] == "text/plain" and "content-length" in r.headers


def test_the_cause_is_kept_as_an_errno():
    url = f"http://127.0.0.1:{free_port()}/derp"
    with DerpClient(url, PrivateKey.generate()) as c:
        with pytest.raises(RelayError) as info:
            c.wait_connected(10)
        assert info.value.errno == errno.ECONNREFUSED
        assert c.stats()["last_errno"] == errno.ECONNREFUSED
        assert c.last_error.startswith(f"connect to 127.0.0.1:{url.split(':')[2].split('/')[0]}: Connection refused")


@pytest.mark.parametrize("mode", ["gateway", "transport"])
def test_a_peer_that_is_gone_is_named_in_the_timeout(make_peer, mode):
    a = make_peer("10.94.0.1/24", mode=mode)
    b = make_peer("10.94.0.2/24", mode=mode)
    a.add_peer(b)  # b never learns of a, then leaves: no handshake can complete
    b.close()
    with pytest.raises(TimeoutError) as info:
        a.http_get("http://10.94.0.2/", timeout=1)
    msg = str(info.value)
    assert f"no WireGuard handshake with {b.public_key} yet" in msg
    assert f"with this peer's public key {a.public_key}, on the same relay?" in msg


def test_a_handshake_but_no_server_says_so(peer_pair):
    peer_pair.a.serve_http(80, body=b"x")
    assert peer_pair.b.http_get("http://192.168.4.1/")[0] == 200  # handshake done
    with pytest.raises(OSError) as info:  # refused (RST) or timed out
        peer_pair.b.http_get("http://192.168.4.1:81/", timeout=2)
    assert isinstance(info.value, ConnectionRefusedError) or "is a server listening" in str(info.value)
