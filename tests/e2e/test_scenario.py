"""The Spanza scenario end to end, as users write it with the plugin's
fixtures: DERP relay, gateways or the DERP transport, two userspace peers,
HTTP through WireGuard over DERP."""

from __future__ import annotations

import hashlib
import socket

import pytest

from spanza import PrivateKey
from spanza.scenario import connect

BODY = b"peer one says hello\n"


def test_get_through_the_relay(peer_pair):
    """The original scenario: a GET from peer 2 returns peer 1's body, and
    the relay's counters show the packets crossed it."""
    relay_before = peer_pair.relay.stats()
    peer_pair.a.serve_http(80, body=BODY)
    status, body = peer_pair.b.http_get("http://192.168.4.1/")
    assert (status, body) == (200, BODY)
    relay = peer_pair.relay.stats()
    # the WireGuard handshake (2) and at least SYN, SYN-ACK, request, response
    assert relay["packets_recv"] - relay_before["packets_recv"] >= 6
    assert relay["packets_sent"] - relay_before["packets_sent"] >= 6
    for p in (peer_pair.a, peer_pair.b):
        (info,) = p.device.peers
        assert info.last_handshake is not None and info.rx_bytes > 0 and info.tx_bytes > 0
        st = p.stats()
        relayed = st["gateway"]["derp"]["tx_packets"] if "gateway" in st else st["derp"]["tx"]["packets"]
        assert relayed >= 4


def test_get_both_ways_and_many_requests(peer_pair):
    peer_pair.a.serve_http(80, body=b"from a\n")
    peer_pair.b.serve_http(8080, body=b"from b\n")
    for _ in range(20):
        assert peer_pair.b.http_get("http://192.168.4.1/") == (200, b"from a\n")
        assert peer_pair.a.http_get("http://192.168.4.2:8080/") == (200, b"from b\n")


@pytest.mark.parametrize(
    "modes",
    [("gateway", "gateway"), ("transport", "transport"), ("gateway", "transport"), ("transport", "gateway")],
    ids=["gw-gw", "derp-derp", "gw-derp", "derp-gw"],
)
def test_relay_stopped_then_restarted(make_derp_server, make_peer, modes):
    """With the relay stopped, new requests fail; after it restarts on the
    same port (same key), the peers reconnect by themselves and succeed."""
    key = PrivateKey.generate()
    relay = make_derp_server(private_key=key.raw)
    fast = {"derp_options": {"backoff_max_ms": 200}}
    a = make_peer("192.168.4.1/24", mode=modes[0], relay=relay, **fast)
    b = make_peer("192.168.4.2/24", mode=modes[1], relay=relay, **fast)
    connect(a, b)
    a.serve_http(80, body=BODY)
    assert b.http_get("http://192.168.4.1/") == (200, BODY)

    port = relay.port
    relay.close()
    with pytest.raises((OSError, TimeoutError)):
        b.http_get("http://192.168.4.1/", timeout=1.5)

    relay2 = make_derp_server(port=port, private_key=key.raw)
    a.wait_relay(10)
    b.wait_relay(10)
    assert b.http_get("http://192.168.4.1/", timeout=10) == (200, BODY)
    assert relay2.stats()["packets_recv"] > 0


def test_tls_relay_bulk_intact(make_peer, derp_server_tls):
    """A few MiB through gateway mode over a TLS relay arrive intact (the
    50 MiB figure is bench/e2e's)."""
    a = make_peer("192.168.4.1/24", mode="gateway", relay=derp_server_tls)
    b = make_peer("192.168.4.2/24", mode="gateway", relay=derp_server_tls)
    connect(a, b)
    data = bytes(range(256)) * (4 * 4096)  # 4 MiB
    a.serve_http(80, body=data)
    status, body = b.http_get("http://192.168.4.1/", timeout=30)
    assert status == 200 and hashlib.sha256(body).digest() == hashlib.sha256(data).digest()


def test_cut_tunnel_refuses_traffic_not_relayed_elsewhere(make_peer):
    """A peer that is not configured on the other side gets nothing back:
    its packets are dropped by WireGuard, never answered outside it."""
    a = make_peer("192.168.4.1/24")
    b = make_peer("192.168.4.2/24")
    b.add_peer(a)  # a does not know b
    b.wait_relay()
    a.serve_http(80, body=BODY)
    with pytest.raises((OSError, TimeoutError, socket.timeout)):
        b.http_get("http://192.168.4.1/", timeout=1.5)
    assert sum(a.device.stats()["drops"].values()) >= 1
