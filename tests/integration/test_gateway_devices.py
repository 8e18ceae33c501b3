"""Spanza WireGuard devices over DERP: through gateways (the sidecar), on
the DERP transport (no UDP hop), and one of each; the relay restarting.

Every test exchanges real WireGuard traffic (handshake, then data) through
our DerpServer and checks the IP packets arrive intact both ways.
"""

from __future__ import annotations

import time
from contextlib import ExitStack

import pytest

from spanza import DerpServer, Device, Gateway, packets
from spanza.derp_bind import derp_endpoint
from spanza.errors import ConfigError
from spanza.keys import PrivateKey
from spanza.packets import read_until
from tests.support import echo_through

A4, B4 = "10.78.0.1", "10.78.0.2"
FAST = {"backoff_max_ms": 300}


def ping(a: Side, b: Side, s: str, d: str, seq: int, timeout: float = 10.0) -> None:
    echo_through(a.dev, b.dev, s, d, seq, timeout)


class Side:
    """One WireGuard peer: a Device, reached either through a gateway
    (its UDP to a local sidecar) or directly on the DERP transport."""

    def __init__(self, stack: ExitStack, url: str, mode: str, addr: str) -> None:
        self.mode = mode
        self.addr = addr
        self.key = PrivateKey.generate()
        if mode == "gateway":
            self.dev = stack.enter_context(Device(private_key=self.key, listen_port=0))
            self.gw_key = PrivateKey.generate()
            self.gw = stack.enter_context(
                Gateway(url, self.gw_key, wg_endpoint=("127.0.0.1", self.dev.listen_port), derp_options=FAST)
            )
            self.derp_pub = self.gw_key.public_key  # what the other side sends to
        else:
            self.dev = stack.enter_context(
                Device(private_key=self.key, listen_port=None, derp_url=url, derp_options=FAST)
            )
            self.gw = None
            self.derp_pub = self.dev.derp_public_key
            assert self.derp_pub == self.key.public_key  # the DERP key is the WireGuard key

    def connect_to(self, other: Side) -> None:
        if self.gw is not None:
            endpoint = self.gw.add_remote_peer(other.derp_pub)
        else:
            endpoint = derp_endpoint(other.derp_pub)
        self.dev.add_peer(other.key.public_key, endpoint=endpoint, allowed_ips=[f"{other.addr}/32"])

    def wait_connected(self) -> None:
        if self.gw is not None:
            self.gw.wait_connected(10)
        else:
            self.dev.wait_derp_connected(10)

    def derp_counters(self) -> dict:
        return self.gw.stats()["derp"] if self.gw is not None else self.dev.derp_stats()["client"]


def world(stack: ExitStack, url: str, mode_a: str, mode_b: str) -> tuple[Side, Side]:
    a = Side(stack, url, mode_a, A4)
    b = Side(stack, url, mode_b, B4)
    a.connect_to(b)
    b.connect_to(a)
    a.wait_connected()
    b.wait_connected()
    return a, b


MODES = [("gateway", "gateway"), ("derp", "derp"), ("gateway", "derp"), ("derp", "gateway")]


@pytest.mark.parametrize("mode_a,mode_b", MODES, ids=["-".join(m) for m in MODES])
def test_devices_exchange_packets_over_derp(mode_a, mode_b):
    with ExitStack() as stack:
        relay = stack.enter_context(DerpServer())
        a, b = world(stack, relay.url, mode_a, mode_b)
        ping(a, b, A4, B4, 1)
        ping(b, a, B4, A4, 2)
        big = packets.udp(A4, B4, 4000, 5000, bytes(range(256)) * 5)
        a.dev.write_packet(big)
        assert read_until(b.dev, lambda p: p == big, 10.0) == big
        (peer_b,) = a.dev.peers
        assert peer_b.last_handshake is not None
        # The endpoint each device ended up with is the one configured:
        # the gateway's socket for that peer, or the peer's DERP key.
        if a.gw is not None:
            assert peer_b.endpoint == "{}:{}".format(*a.gw.address_for(b.derp_pub))
            st = a.gw.stats()
            assert st["derp_tx_packets"] >= 3 and st["wg_tx_datagrams"] >= 2
            assert st["drops_unknown_key"] == st["drops_send_error"] == 0
        else:
            assert peer_b.endpoint == derp_endpoint(b.derp_pub)
            st = a.dev.derp_stats()
            assert st["tx_packets"] >= 3 and st["rx_packets"] >= 2 and st["tx_errors"] == 0
        assert relay.stats()["packets_sent"] >= 6


def test_relay_restart_traffic_fails_then_flows_again():
    with ExitStack() as stack:
        relay = DerpServer()
        port = relay.port
        try:
            a, b = world(stack, relay.url, "gateway", "derp")
            ping(a, b, A4, B4, 1)
        finally:
            relay.close()
        # Relay down: nothing gets through.
        req = packets.icmp_echo(A4, B4, 0x5A, 2, b"while the relay is down")
        a.dev.write_packet(req)
        with pytest.raises(TimeoutError):
            b.dev.read_packet(timeout=1.0)
        # Same port again: both clients reconnect by themselves.
        relay = stack.enter_context(DerpServer(port=port))
        a.wait_connected()
        b.wait_connected()
        deadline = time.monotonic() + 20
        for seq in range(3, 1000):  # WireGuard retries; the first may be lost
            try:
                ping(a, b, A4, B4, seq, timeout=1.0)
                break
            except TimeoutError:
                assert time.monotonic() < deadline, "traffic did not resume after the relay restarted"
        ping(b, a, B4, A4, 1000)
        assert a.derp_counters()["reconnects"] >= 1 and b.derp_counters()["reconnects"] >= 1


def test_roaming_follows_the_derp_key():
    """The peer moves to another DERP key (its bind is replaced): the other
    side learns the new key from authenticated packets, as with UDP."""
    with ExitStack() as stack:
        relay = stack.enter_context(DerpServer())
        a, b = world(stack, relay.url, "derp", "derp")
        ping(a, b, A4, B4, 1)
        new_key = PrivateKey.generate()
        b.dev.attach_derp(relay.url, new_key, options=FAST)
        b.dev.wait_derp_connected(10)
        assert b.dev.derp_public_key == new_key.public_key
        # B speaks first from its new key; A roams its endpoint to it.
        ping(b, a, B4, A4, 2)
        (peer_b,) = a.dev.peers
        assert peer_b.endpoint == derp_endpoint(new_key.public_key)
        ping(a, b, A4, B4, 3)


def test_derp_bind_config_errors():
    with DerpServer() as relay, Device(private_key=PrivateKey.generate(), listen_port=None) as d:
        with pytest.raises(ConfigError, match="no DERP bind"):
            d.derp_stats()
        with pytest.raises(ConfigError, match="derp_url"):
            d.attach_derp("derp.example.com")
        with pytest.raises(ConfigError, match="private key"):
            d.attach_derp(relay.url, PrivateKey.generate().public_key)
        with pytest.raises(ConfigError, match="derp"):
            d.add_peer(PrivateKey.generate().public_key, endpoint="derp:1234")
        pub = PrivateKey.generate().public_key
        d.add_peer(pub, endpoint="derp:" + pub.tailscale)  # derp:nodekey:<hex> is accepted too
        assert d.peers[0].endpoint == derp_endpoint(pub)
        d.attach_derp(relay.url)
        d.detach_derp()
        with pytest.raises(ConfigError, match="no DERP bind"):
            d.detach_derp()
    with pytest.raises(ConfigError, match="no private key"):
        with Device(listen_port=None, derp_url="http://127.0.0.1:1/derp"):
            pass
