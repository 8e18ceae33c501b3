"""Spanza devices through gateways and the DERP transport, with Tailscale's
derper (built from the pinned tailscale.com module) as the relay: plain
HTTP and TLS with derper's own self-signed certificate; and derper
restarting on the same port."""

from __future__ import annotations

import time
from contextlib import ExitStack

import pytest

from spanza import Device, Gateway, packets
from spanza.derp_bind import derp_endpoint
from spanza.keys import PrivateKey
from tests.interop.gohelpers import Derper, GoDerpClient
from tests.support import echo_through

pytestmark = pytest.mark.interop

A4, B4 = "10.79.0.1", "10.79.0.2"
FAST = {"backoff_max_ms": 300}


def tls_args(derper: Derper) -> dict:
    return {"ca_file": str(derper.cert_file)} if derper.tls else {}


def gateway_and_derp_devices(stack: ExitStack, derper: Derper) -> tuple[Device, Device, Gateway]:
    """A: a Device behind a gateway; B: a Device on the DERP transport."""
    ka, kb, kg = PrivateKey.generate(), PrivateKey.generate(), PrivateKey.generate()
    a = stack.enter_context(Device(private_key=ka))
    gw = stack.enter_context(
        Gateway(derper.url, kg, wg_endpoint=("127.0.0.1", a.listen_port), derp_options=FAST, **tls_args(derper))
    )
    b_opts = {"derp_ca_file": str(derper.cert_file)} if derper.tls else {}
    b = stack.enter_context(Device(private_key=kb, listen_port=None, derp_url=derper.url, derp_options=FAST, **b_opts))
    a.add_peer(kb.public_key, endpoint=gw.add_remote_peer(kb.public_key), allowed_ips=[f"{B4}/32"])
    b.add_peer(ka.public_key, endpoint=derp_endpoint(kg.public_key), allowed_ips=[f"{A4}/32"])
    gw.wait_connected(15)
    b.wait_derp_connected(15)
    return a, b, gw


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_devices_through_derper(tls):
    with ExitStack() as stack:
        derper = stack.enter_context(Derper(tls=tls))
        a, b, gw = gateway_and_derp_devices(stack, derper)
        echo_through(a, b, A4, B4, 1)
        echo_through(b, a, B4, A4, 2)
        st = gw.stats()
        assert st["derp_tx_packets"] >= 3 and st["wg_tx_datagrams"] >= 2 and st["drops_unknown_key"] == 0


def test_gateways_through_derper_and_go_client_sees_gateway_traffic():
    """Tailscale's own client sends to a gateway, which hands the bytes to
    its local WireGuard's address unchanged, and the reverse."""
    import socket

    with Derper() as derper, GoDerpClient(derper.url) as go:
        w = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        w.bind(("127.0.0.1", 0))
        w.settimeout(10)
        kg = PrivateKey.generate()
        with Gateway(derper.url, kg, wg_endpoint=w.getsockname(), remote_peers=[go.public_key]) as gw:
            gw.wait_connected(15)
            go.send(kg.public_key.tailscale, b"from tailscale's client")
            assert w.recvfrom(100) == (b"from tailscale's client", gw.address)
            w.sendto(b"to tailscale's client", gw.address)
            src, data = go.recv(10)
            assert (src, data) == (kg.public_key.tailscale, b"to tailscale's client")
        w.close()


def test_derper_restart_on_the_same_port():
    with ExitStack() as stack:
        derper = stack.enter_context(Derper())
        a, b, gw = gateway_and_derp_devices(stack, derper)
        echo_through(a, b, A4, B4, 1)
        derper.stop()
        req = packets.icmp_echo(A4, B4, 0x77, 2, b"while derper is down")
        a.write_packet(req)
        with pytest.raises(TimeoutError):
            b.read_packet(timeout=1.0)
        derper.start()
        gw.wait_connected(15)
        b.wait_derp_connected(15)
        deadline = time.monotonic() + 20
        for seq in range(3, 1000):
            try:
                echo_through(a, b, A4, B4, seq, timeout=1.0)
                break
            except TimeoutError:
                assert time.monotonic() < deadline, "traffic did not resume after derper restarted"
        assert gw.stats()["derp"]["reconnects"] >= 1
        assert b.derp_stats()["client"]["reconnects"] >= 1
