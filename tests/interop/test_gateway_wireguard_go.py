"""The original Spanza scenario without containers: Debian's wireguard-go
(configured with Debian's wg) in a network namespace this test creates,
its peer's endpoint a Spanza gateway's UDP socket on the host end of a veth
link (test-owned link-local addresses), relayed through a DERP server to a
Spanza device; ICMP both ways (the namespace's kernel answers on
wireguard-go's TUN, an EchoResponder on the Spanza side).

Everything runs in this process except wireguard-go and ping; the
namespace, the veth link and their addresses are removed in teardown."""

from __future__ import annotations

import time
from contextlib import ExitStack

import pytest

from spanza import DerpServer, Device, Gateway, packets
from spanza.derp_bind import derp_endpoint
from spanza.keys import PrivateKey, PublicKey
from tests.interop.netns import NetNS, Veth, WgPeer, WireGuardGo, genkey, require_root

pytestmark = pytest.mark.interop

GO4, SPZ4 = "10.98.0.1", "10.98.0.2"
GO6, SPZ6 = "fd98::1", "fd98::2"


def ping_from_spanza(dev: Device, src: str, dst: str, seq: int, timeout: float = 10.0) -> None:
    req = packets.icmp_echo(src, dst, 0x6A, seq, b"spanza-gw-%d" % seq)
    dev.write_packet(req)
    deadline = time.monotonic() + timeout
    while True:
        pkt = packets.parse(dev.read_packet(timeout=max(0.01, deadline - time.monotonic())))
        if pkt.is_echo_reply and pkt.seq == seq:
            assert pkt.checksum_ok and str(pkt.src) == dst and pkt.data == b"spanza-gw-%d" % seq
            return


@pytest.mark.parametrize("spanza_side", ["derp", "gateway"], ids=["device-on-derp", "device-behind-gateway"])
@pytest.mark.parametrize("learn", [False, True], ids=["wg-endpoint", "learned"])
def test_wireguard_go_in_netns_through_gateway_and_derp(spanza_side, learn):
    require_root("wireguard-go", "wg", "ping")
    go_priv, go_pub = genkey()
    with ExitStack() as stack:
        ns = stack.enter_context(NetNS())
        link = stack.enter_context(Veth(ns))
        go = stack.enter_context(WireGuardGo(ns))
        relay = stack.enter_context(DerpServer())
        # wireguard-go's sidecar: a gateway on the veth's host address.
        gw_key = PrivateKey.generate()
        gw = stack.enter_context(Gateway(relay.url, gw_key, listen=(link.host_v4, 0)))

        spz_key = PrivateKey.generate()
        if spanza_side == "derp":
            dev = stack.enter_context(Device(private_key=spz_key, listen_port=None, derp_url=relay.url))
            spz_derp = dev.derp_public_key
            dev_endpoint = derp_endpoint(gw_key.public_key)
            dev.wait_derp_connected(10)
        else:
            dev = stack.enter_context(Device(private_key=spz_key))
            own_gw_key = PrivateKey.generate()
            own_gw = stack.enter_context(
                Gateway(
                    relay.url, own_gw_key, wg_endpoint=("127.0.0.1", dev.listen_port), remote_peers=[gw_key.public_key]
                )
            )
            spz_derp = own_gw_key.public_key
            dev_endpoint = own_gw.address
            own_gw.wait_connected(10)

        gw_addr = gw.add_remote_peer(spz_derp)
        assert gw_addr[0] == link.host_v4
        go.configure(
            go_priv,
            0,
            addresses=[f"{GO4}/24", f"{GO6}/64"],
            peers=[WgPeer(str(spz_key.public_key), [f"{SPZ4}/32", f"{SPZ6}/128"], f"{gw_addr[0]}:{gw_addr[1]}")],
        )
        if not learn:
            gw.wg_endpoint = (link.ns_v4, go.listen_port)
        gw.wait_connected(10)
        dev.add_peer(PublicKey(go_pub), endpoint=dev_endpoint, allowed_ips=[f"{GO4}/32", f"{GO6}/128"])

        with packets.EchoResponder(dev, (SPZ4, SPZ6)) as responder:
            # wireguard-go initiates: ping from inside the namespace.
            r4 = ns.run("ping", "-c", "3", "-i", "0.2", "-W", "5", SPZ4, check=False, timeout=30)
            assert r4.returncode == 0, r4.stdout + r4.stderr
            r6 = ns.run("ping", "-6", "-c", "2", "-i", "0.2", "-W", "5", SPZ6, check=False, timeout=30)
            assert r6.returncode == 0, r6.stdout + r6.stderr
            assert responder.answered >= 5
        # And the Spanza side pings the namespace's kernel (on the session
        # wireguard-go made).
        ping_from_spanza(dev, SPZ4, GO4, 100)

        row = go.dump()[1]
        assert row[0] == str(spz_key.public_key)
        assert int(row[4]) > 0  # wireguard-go completed a handshake
        assert row[2] == f"{gw_addr[0]}:{gw_addr[1]}"  # and still talks to the gateway's socket
        st = gw.stats()
        peer = st["peers"][spz_derp.tailscale]
        assert peer["dst_kind"] == ("learned" if learn else "configured")
        assert peer["dst"] == f"{link.ns_v4}:{go.listen_port}"
        assert st["wg_rx_datagrams"] >= 6 and st["wg_tx_datagrams"] >= 6
        assert st["drops_unknown_key"] == st["drops_send_error"] == st["drops_no_destination"] == 0
