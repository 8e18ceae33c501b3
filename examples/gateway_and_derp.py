"""The Spanza scenario in one process: a DERP relay, device A behind a
gateway (the sidecar any WireGuard can use), device B on the DERP
transport; a ping each way.

    python examples/gateway_and_derp.py

A's WireGuard only knows UDP: its peer B's endpoint is the gateway's
socket for B, and the gateway relays to B's DERP key. B sends its
datagrams straight into a DERP client; its peer A's endpoint is the
gateway's DERP key ("derp:<hex>").
"""

from __future__ import annotations

import sys

import spanza
from spanza import packets
from spanza.derp_bind import derp_endpoint


def main() -> int:
    key_a, key_b, key_gw = (spanza.PrivateKey.generate() for _ in range(3))
    with (
        spanza.DerpServer() as relay,
        spanza.Device(private_key=key_a) as a,
        spanza.Gateway(relay.url, key_gw, wg_endpoint=("127.0.0.1", a.listen_port)) as gw,
        spanza.Device(private_key=key_b, listen_port=None, derp_url=relay.url) as b,
    ):
        print(f"relay: {relay.url}")
        # B's DERP key is its WireGuard key (b.derp_public_key == key_b.public_key).
        host, port = gw.add_remote_peer(b.derp_public_key)
        print(f"gateway {gw.public_key.tailscale}: B's endpoint for A is {host}:{port}")
        a.add_peer(key_b.public_key, endpoint=(host, port), allowed_ips=["10.0.0.2/32"])
        b.add_peer(key_a.public_key, endpoint=derp_endpoint(gw.public_key), allowed_ips=["10.0.0.1/32"])
        gw.wait_connected(10)
        b.wait_derp_connected(10)

        for src, dst, s, d in ((a, b, "10.0.0.1", "10.0.0.2"), (b, a, "10.0.0.2", "10.0.0.1")):
            req = packets.icmp_echo(s, d, ident=7, seq=1, data=b"over DERP")
            src.write_packet(req)
            assert dst.read_packet(timeout=10) == req
            dst.write_packet(packets.echo_reply_for(req))
            reply = packets.parse(src.read_packet(timeout=10))
            assert reply.is_echo_reply
            print(f"{s} -> {d}: echo reply")
        st = gw.stats()
        print(f"gateway relayed {st['derp_tx_packets']} datagrams to DERP and {st['wg_tx_datagrams']} back")
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
