"""The gateway relays UDP datagrams through our DERP server.

Plain UDP sockets stand in for the local WireGuards here: the gateway never
looks inside a datagram, so any bytes do. WireGuard itself (spanza Devices,
wireguard-go) is in test_gateway_devices.py and the interop tests.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

import spanza
from spanza import ConfigError, DerpClient, DerpServer, Gateway
from spanza.errors import RelayError
from spanza.keys import PrivateKey, PublicKey
from spanza.runtime import default_runtime
from spanza.scenario import Peer
from tests.support import wait_for

# Short reconnect backoff so restarts are noticed quickly.
FAST = {"backoff_max_ms": 300}


def public_key_of(priv: bytes) -> bytes:
    return PrivateKey(priv).public_key.raw


def nodekey(pub: bytes) -> str:
    return PublicKey(pub).tailscale


def key() -> tuple[bytes, bytes]:
    priv = os.urandom(32)
    return priv, public_key_of(priv)


def udp(host: str = "127.0.0.1") -> socket.socket:
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)  # bursts must not overflow it
    s.bind((host, 0))
    s.settimeout(5)
    return s


@pytest.fixture
def relay():
    with DerpServer() as srv:
        yield srv


@contextlib.contextmanager
def gateways(url: str, *, b_learns: bool = False, **opts: Any) -> Iterator[tuple[Gateway, Gateway, Any, Any, bytes]]:
    """Two connected gateways A and B on the relay at `url`, each the other's
    remote peer, and their WireGuard sockets wa, wb: A's endpoint configured,
    B's too unless `b_learns` (B learns it from the first datagram). Yields
    ga, gb, wa, wb and B's public key."""
    (ka, pa), (kb, pb) = key(), key()
    wa, wb = udp(), udp()
    with (
        wa,
        wb,
        Gateway(url, ka, wg_endpoint=wa.getsockname(), remote_peers=[pb], **opts) as ga,
        Gateway(url, kb, wg_endpoint=None if b_learns else wb.getsockname(), remote_peers=[pa], **opts) as gb,
    ):
        ga.wait_connected(10)
        gb.wait_connected(10)
        yield ga, gb, wa, wb, pb


@pytest.fixture
def pair(relay):
    """Two gateways A and B, each the other's remote peer; A's WireGuard
    endpoint configured, B's learned."""
    with gateways(relay.url, b_learns=True, derp_options=FAST) as (ga, gb, wa, wb, _):
        yield ga, gb, wa, wb


def test_relays_both_ways_and_counts(pair):
    ga, gb, wa, wb = pair
    # B learns its WireGuard's address from the first datagram it sends.
    wb.sendto(b"from b", gb.address)
    data, src = wa.recvfrom(70000)
    assert data == b"from b"
    assert src == ga.address  # packets of peer B come from B's socket at A
    wa.sendto(b"x" * 1400, ga.address)
    data, src = wb.recvfrom(70000)
    assert data == b"x" * 1400
    assert src == gb.address
    sa, sb = ga.stats(), gb.stats()
    assert (sa["wg_rx_datagrams"], sa["wg_rx_bytes"], sa["derp_tx_packets"]) == (1, 1400, 1)
    assert (sa["derp_rx_packets"], sa["wg_tx_datagrams"], sa["wg_tx_bytes"]) == (1, 1, 6)
    assert sb["derp_rx_packets"] == 1 and sb["wg_tx_bytes"] == 1400
    peer_b = sa["peers"][nodekey(public_key_of_gateway(gb))]
    assert peer_b["dst_kind"] == "configured" and peer_b["dst"] == "{}:{}".format(*wa.getsockname())
    peer_a = sb["peers"][nodekey(public_key_of_gateway(ga))]
    assert peer_a["dst_kind"] == "learned" and peer_a["dst"] == "{}:{}".format(*wb.getsockname())
    for s in (sa, sb):
        assert s["connected"] == 1 and s["peers"] != {}
        assert s["drops_unknown_key"] == s["drops_oversize"] == s["drops_send_error"] == 0


def public_key_of_gateway(g: Gateway) -> bytes:
    return g.public_key.raw


def test_a_burst_arrives_whole_and_in_order():
    # The relay's per-client queue is 32 packets deep by default (as in Go's
    # derper: a burst beyond it loses its oldest packets there); a deep one
    # here, so what is tested is the gateways' path alone.
    with DerpServer(queue_depth=4096) as relay, gateways(relay.url) as (ga, gb, wa, wb, _):
        n = 2000
        for i in range(n):
            wa.sendto(i.to_bytes(4, "big") + b"p" * 1000, ga.address)
        got = [int.from_bytes(wb.recv(2000)[:4], "big") for _ in range(n)]
        assert got == list(range(n))
        assert gb.stats()["wg_tx_bytes"] == n * 1004


def test_learned_destination_follows_the_last_sender(pair):
    ga, gb, wa, wb = pair
    wb.sendto(b"1", gb.address)
    wa.recvfrom(100)
    other = udp()
    other.sendto(b"2", gb.address)  # the local WireGuard moved (new port)
    assert wa.recvfrom(100)[0] == b"2"
    wa.sendto(b"back", ga.address)
    assert other.recvfrom(100)[0] == b"back"
    other.close()


def test_no_destination_before_the_local_wireguard_speaks(pair):
    ga, gb, wa, wb = pair
    wa.sendto(b"early", ga.address)  # B's gateway has learned nothing yet
    pa = nodekey(public_key_of_gateway(ga))
    wait_for(lambda: gb.stats()["peers"][pa]["drops_no_destination"] == 1, what="no-destination drop")
    assert gb.stats()["wg_tx_datagrams"] == 0


def test_several_remote_peers_each_on_its_own_socket(relay):
    (ka, pa), (kb, pb), (kc, pc) = key(), key(), key()
    wa, wb, wc = udp(), udp(), udp()
    with (
        Gateway(relay.url, ka, wg_endpoint=wa.getsockname(), remote_peers=[pb, pc]) as ga,
        Gateway(relay.url, kb, wg_endpoint=wb.getsockname(), remote_peers=[pa]) as gb,
        Gateway(relay.url, kc, wg_endpoint=wc.getsockname()) as gc,
    ):
        addr_c = gc.add_remote_peer(nodekey(pa))
        for g in (ga, gb, gc):
            g.wait_connected(10)
        assert ga.address == ga.address_for(pb) != ga.address_for(pc)
        wa.sendto(b"to b", ga.address_for(pb))
        wa.sendto(b"to c", ga.address_for(pc))
        assert wb.recvfrom(100)[0] == b"to b"
        assert wc.recvfrom(100)[0] == b"to c"
        wc.sendto(b"c answers", addr_c)
        wb.sendto(b"b answers", gb.address)
        got = dict(wa.recvfrom(100) for _ in range(2))
        assert got == {b"c answers": ga.address_for(pc), b"b answers": ga.address_for(pb)}
        st = ga.stats()["peers"]
        assert st[nodekey(pb)]["derp_tx_packets"] == 1 and st[nodekey(pc)]["derp_tx_packets"] == 1
        ga.remove_remote_peer(pc)
        with pytest.raises(ConfigError, match="not a remote peer"):
            ga.address_for(pc)
        wc.sendto(b"after removal", addr_c)
        wait_for(lambda: ga.stats()["drops_unknown_key"] == 1, what="unknown-key drop")
        # totals keep what the removed peer relayed
        assert ga.stats()["derp_tx_packets"] == 2
    for s in (wa, wb, wc):
        s.close()


def test_fixed_listen_port_gives_consecutive_ports(relay):
    probe = udp()
    base = probe.getsockname()[1]
    probe.close()
    (k, _), (_, p1), (_, p2) = key(), key(), key()
    try:
        g = Gateway(relay.url, k, listen=("127.0.0.1", base), remote_peers=[p1, p2])
    except ConfigError as e:  # someone took the port meanwhile
        pytest.skip(f"port race: {e}")
    with g:
        assert g.address_for(p1) == ("127.0.0.1", base)
        assert g.address_for(p2) == ("127.0.0.1", base + 1)


def test_unknown_sender_is_dropped_and_counted(pair, relay):
    ga, gb, wa, wb = pair
    stranger_priv, _ = key()
    with DerpClient(relay.url, stranger_priv) as c:
        c.wait_connected(10)
        for _ in range(3):
            c.send(public_key_of_gateway(ga), b"who am I")
        wait_for(lambda: ga.stats()["drops_unknown_key"] == 3, what="unknown-key drops")
    wa.settimeout(0.2)
    with pytest.raises(socket.timeout):
        wa.recvfrom(100)


def test_oversize_packet_from_derp_is_dropped(relay):
    wa = udp()
    with DerpClient(relay.url, key()[0]) as sender:
        sender.wait_connected(10)
        priv, pub = key()
        with Gateway(relay.url, priv, wg_endpoint=wa.getsockname(), remote_peers=[sender.public_key]) as g:
            g.wait_connected(10)
            sender.send(pub, b"z" * 65536)  # DERP carries it; IPv4 UDP carries at most 65507
            sender.send(pub, b"ok")
            assert wa.recvfrom(100)[0] == b"ok"
            st = g.stats()
            assert st["drops_oversize"] == 1 and st["wg_tx_datagrams"] == 1
    wa.close()


def test_relay_restart_traffic_fails_then_flows_again(relay):
    (ka, pa), (kb, pb) = key(), key()
    wa, wb = udp(), udp()
    port = relay.port
    with (
        Gateway(relay.url, ka, wg_endpoint=wa.getsockname(), remote_peers=[pb], derp_options=FAST) as ga,
        Gateway(relay.url, kb, wg_endpoint=wb.getsockname(), remote_peers=[pa], derp_options=FAST) as gb,
    ):
        ga.wait_connected(10)
        gb.wait_connected(10)
        wa.sendto(b"before", ga.address)
        assert wb.recvfrom(100)[0] == b"before"
        url = relay.url
        relay.close()
        wait_for(lambda: not ga.connected and not gb.connected, what="both gateways to notice")
        wa.sendto(b"while down", ga.address)  # queued by A's client (bounded), or lost
        wb.settimeout(0.5)
        with pytest.raises(socket.timeout):
            wb.recvfrom(100)
        with DerpServer(port=port) as again:
            assert again.url == url
            ga.wait_connected(10)
            gb.wait_connected(10)
            wb.settimeout(5)
            # A's client kept "while down" and delivers it once B is back
            # (if B registered after A sent it, the relay dropped it).
            wa.sendto(b"after", ga.address)
            got = []
            while b"after" not in got:
                got.append(wb.recvfrom(100)[0])
            assert set(got) <= {b"while down", b"after"}
            wb.sendto(b"reply", gb.address)
            assert wa.recvfrom(100)[0] == b"reply"
            for g in (ga, gb):
                d = g.stats()["derp"]
                assert d["reconnects"] >= 1 and d["disconnects"] >= 1
    wa.close()
    wb.close()


def test_backpressure_pauses_reading_instead_of_dropping(relay):
    """A relay that reads slowly: the gateway stops reading UDP while its
    DERP connection is congested and resumes when it drains."""
    with DerpServer(rate_limit=8_000_000) as slow, gateways(slow.url) as (ga, gb, wa, wb, pb):
        payload = b"b" * 1400
        sent = 0
        deadline = time.monotonic() + 10
        while ga.stats()["pauses"] == 0 and time.monotonic() < deadline:
            for _ in range(500):
                try:
                    wa.sendto(payload, ga.address)
                    sent += 1
                except BlockingIOError:
                    pass
        st = ga.stats()
        assert st["pauses"] >= 1, st
        # Held back, the datagrams wait in the socket buffer; when it
        # overflows, the kernel's drop count shows up in the counters.
        deadline = time.monotonic() + 10
        while ga.stats()["drops_udp_overflow"] == 0 and time.monotonic() < deadline:
            for _ in range(500):
                try:
                    wa.sendto(payload, ga.address)
                except BlockingIOError:
                    pass
        assert ga.stats()["peers"][nodekey(pb)]["drops_udp_overflow"] > 0
        # Reading resumes once the relay drains the connection.
        wait_for(lambda: not ga.stats()["peers"][nodekey(pb)]["paused"], 30, "reading to resume")
        assert ga.stats()["derp"]["drops_queue_full"] == 0


def test_config_errors_say_what_to_fix(relay):
    priv, _ = key()
    with pytest.raises(ConfigError, match="url: 'derp.example.com' is not"):
        Gateway("derp.example.com", priv)
    with pytest.raises(ConfigError, match="private_key"):
        Gateway(relay.url, "privkey:1234")
    with pytest.raises(ConfigError, match="wg_endpoint"):
        Gateway(relay.url, priv, wg_endpoint="127.0.0.1")
    with pytest.raises(ConfigError, match="port 0"):
        Gateway(relay.url, priv, wg_endpoint="127.0.0.1:0")
    with pytest.raises(ConfigError, match="nodekey"):
        Gateway(relay.url, priv, remote_peers=["privkey:" + "00" * 32])
    with pytest.raises(ConfigError, match="derp_options"):
        Gateway(relay.url, priv, derp_options={"no_such": 1})
    _, pub = key()
    with Gateway(relay.url, priv, remote_peers=[pub]) as g:
        with pytest.raises(ConfigError, match="already"):
            g.add_remote_peer(nodekey(pub))
        with pytest.raises(OSError, match="cannot bind|in use"):
            g.add_remote_peer(key()[1], listen=g.address)
        with pytest.raises(ConfigError, match="IPv6"):
            g.wg_endpoint = "[::1]:51820"  # the peer socket is IPv4
        g.wg_endpoint = "127.0.0.1:51820"
        assert g.wg_endpoint == ("127.0.0.1", 51820)
        with pytest.raises(ConfigError, match="not a remote peer"):
            g.address_for(key()[1])
    with pytest.raises(spanza.ClosedError):
        g.stats()
    with Gateway(relay.url, priv) as g:
        with pytest.raises(ConfigError, match="no remote peer"):
            _ = g.address


def test_ipv6_listen_and_endpoint(relay):
    (ka, pa), (kb, pb) = key(), key()
    wa, wb = udp("::1"), udp("::1")
    with (
        Gateway(relay.url, ka, listen="[::1]:0", wg_endpoint=wa.getsockname()[:2], remote_peers=[pb]) as ga,
        Gateway(relay.url, kb, listen="[::1]:0", remote_peers=[pa]) as gb,
    ):
        ga.wait_connected(10)
        gb.wait_connected(10)
        assert ga.address[0] == "::1"
        wb.sendto(b"v6", gb.address)
        assert wa.recvfrom(100)[0] == b"v6"
        wa.sendto(b"v6 back", ga.address)
        assert wb.recvfrom(100)[0] == b"v6 back"
    wa.close()
    wb.close()


def test_wait_connected_times_out_with_the_reason():
    priv, _ = key()
    probe = udp()
    port = probe.getsockname()[1]  # nothing listens on TCP here
    probe.close()
    with Gateway(f"http://127.0.0.1:{port}/derp", priv) as g:
        # refused connections: said before the timeout, with the cause
        with pytest.raises(RelayError, match="unreachable: connect to .*Connection refused"):
            g.wait_connected(5)
        assert g.stats()["derp"]["connect_failures"] >= 1


def test_a_gateway_runs_on_a_thread_of_its_own_unless_given_one(relay):
    """A standalone gateway (a sidecar) gets its own loop thread, closed with
    it; a Peer's gateway shares its device's, so the hop between them needs
    no wake-up."""
    with Gateway(relay.url, key()[0]) as gw:
        own = gw.runtime
        assert own is not default_runtime() and not own.closed
    assert own.closed
    with Gateway(relay.url, key()[0], runtime=default_runtime()) as gw:
        assert gw.runtime is default_runtime()
    assert not default_runtime().closed
    with Peer(relay.url, "192.168.7.1/24", mode="gateway") as p:
        assert p.gateway is not None and p.gateway.runtime is p.device.runtime
