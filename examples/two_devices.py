"""Two Spanza WireGuard devices on loopback: handshake, packets both ways.

    python examples/two_devices.py

Each device has its own UDP port on 127.0.0.1 and acts as the other's
peer. Python plays the TUN: write_packet() sends an IP packet into the
tunnel, read_packet() returns what came out on the other side.
"""

from __future__ import annotations

import logging
import sys
import time

import spanza
from spanza import packets


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    key_a, key_b = spanza.PrivateKey.generate(), spanza.PrivateKey.generate()
    with spanza.Device(private_key=key_a) as a, spanza.Device(private_key=key_b) as b:
        print(f"device A: UDP 127.0.0.1:{a.listen_port}, tunnel 10.0.0.1, public key {a.public_key}")
        print(f"device B: UDP 127.0.0.1:{b.listen_port}, tunnel 10.0.0.2, public key {b.public_key}")
        a.add_peer(b.public_key, endpoint=("127.0.0.1", b.listen_port), allowed_ips=["10.0.0.2/32", "fd00::2/128"])
        b.add_peer(a.public_key, endpoint=("127.0.0.1", a.listen_port), allowed_ips=["10.0.0.1/32", "fd00::1/128"])

        t0 = time.monotonic()
        ping = packets.icmp_echo("10.0.0.1", "10.0.0.2", ident=1, seq=1, data=b"hello through WireGuard")
        a.write_packet(ping)  # no session yet: staged, A starts the handshake
        got = b.read_packet(timeout=5)
        print(
            f"A -> B: {len(got)}-byte ICMP echo request arrived after {1000 * (time.monotonic() - t0):.1f} ms "
            f"(handshake included): {packets.parse(got).data!r}"
        )
        assert got == ping

        pong = packets.echo_reply_for(got)
        b.write_packet(pong)
        got = a.read_packet(timeout=5)
        print(f"B -> A: echo reply {packets.parse(got).data!r}")
        assert got == pong

        msg = packets.udp("fd00::2", "fd00::1", 4000, 5000, b"IPv6 inside too")
        b.write_packet(msg)
        got = packets.parse(a.read_packet(timeout=5))
        print(f"B -> A: IPv6 UDP {got.src} -> {got.dst} port {got.dport}: {got.data!r}")

        for name, dev in (("A", a), ("B", b)):
            (peer,) = dev.peers
            s = dev.stats()
            print(
                f"{name}: peer {peer.public_key} at {peer.endpoint}, handshake {peer.last_handshake:%H:%M:%S}, "
                f"rx {peer.rx_bytes} B, tx {peer.tx_bytes} B; "
                f"initiations sent {s['initiations_sent']}, responses sent {s['responses_sent']}, "
                f"packets tx {s['tx_packets']} rx {s['rx_packets']}"
            )
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
