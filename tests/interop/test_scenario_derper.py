"""The Spanza scenario with Tailscale's derper as the relay (built from the
pinned tailscale.com module by `make go-helpers`)."""

from __future__ import annotations

import pytest
from gohelpers import Derper

from spanza.scenario import connect

pytestmark = pytest.mark.interop

BODY = b"served by 192.168.4.1 through Tailscale's derper\n"


@pytest.fixture(params=[False, True], ids=["http", "tls"])
def derper(request):
    with Derper(tls=request.param) as d:
        yield d


@pytest.mark.parametrize(
    "modes",
    [("gateway", "gateway"), ("transport", "transport"), ("gateway", "transport")],
    ids=["gw-gw", "derp-derp", "gw-derp"],
)
def test_get_through_derper(derper, make_peer, modes):
    a = make_peer("192.168.4.1/24", mode=modes[0], relay=derper.url)
    b = make_peer("192.168.4.2/24", mode=modes[1], relay=derper.url)
    connect(a, b)
    a.serve_http(80, body=BODY)
    assert b.http_get("http://192.168.4.1/") == (200, BODY)
    b.serve_http(80, body=b"and back\n")
    assert a.http_get("http://192.168.4.2/") == (200, b"and back\n")


def test_derper_restart(make_peer):
    """derper stopped: requests fail; restarted on the same port: they work
    again without touching the peers."""
    with Derper() as d:
        fast = {"derp_options": {"backoff_max_ms": 200}}
        a = make_peer("192.168.4.1/24", mode="gateway", relay=d.url, **fast)
        b = make_peer("192.168.4.2/24", mode="transport", relay=d.url, **fast)
        connect(a, b)
        a.serve_http(80, body=BODY)
        assert b.http_get("http://192.168.4.1/") == (200, BODY)
        d.stop()
        with pytest.raises((OSError, TimeoutError)):
            b.http_get("http://192.168.4.1/", timeout=1.5)
        d.start()
        a.wait_relay(10)
        b.wait_relay(10)
        assert b.http_get("http://192.168.4.1/", timeout=10) == (200, BODY)
