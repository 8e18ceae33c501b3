"""Two Spanza devices on loopback UDP: packet rate and throughput through
the tunnel, driven from Python (write_packet / read_packet), plus the
handshake time. Prints figures; asserts nothing.

    .venv/bin/python bench/device_loopback.py [--packets N] [--size BYTES]
"""

from __future__ import annotations

import argparse
import threading
import time

import spanza
from spanza import packets


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packets", type=int, default=50000)
    ap.add_argument("--size", type=int, default=1420, help="IP packet size")
    args = ap.parse_args()
    with spanza.Runtime("bench-a") as ra, spanza.Runtime("bench-b") as rb:
        with (
            spanza.Device(private_key=spanza.PrivateKey.generate(), runtime=ra) as a,
            spanza.Device(private_key=spanza.PrivateKey.generate(), runtime=rb) as b,
        ):
            a.add_peer(b.public_key, endpoint=("127.0.0.1", b.listen_port), allowed_ips=["10.0.0.2/32"])
            b.add_peer(a.public_key, endpoint=("127.0.0.1", a.listen_port), allowed_ips=["10.0.0.1/32"])
            ping = packets.icmp_echo("10.0.0.1", "10.0.0.2", 1, 1)
            t0 = time.perf_counter()
            a.write_packet(ping)
            b.read_packet(timeout=5)
            print(f"handshake + first packet: {1000 * (time.perf_counter() - t0):.2f} ms")

            # Round trips: one packet each way, Python on both ends.
            n_rtt = 2000
            t0 = time.perf_counter()
            for _ in range(n_rtt):
                a.write_packet(ping)
                b.read_packet(timeout=5)
                b.write_packet(ping[:12] + ping[16:20] + ping[12:16] + ping[20:])  # swapped addresses
                a.read_packet(timeout=5)
            dt = time.perf_counter() - t0
            print(f"ping-pong through the tunnel: {1e6 * dt / n_rtt:.1f} us per round trip ({n_rtt} round trips)")

            pkt = packets.udp("10.0.0.1", "10.0.0.2", 1000, 2000, b"x" * (args.size - 28))
            got = 0

            def reader() -> None:
                nonlocal got
                try:
                    while True:
                        b.read_packet(timeout=1.0)
                        got += 1
                except TimeoutError:
                    pass

            for label, batch in (("write_packet", 1), ("write_packets(64)", 64)):
                got = 0
                before = b.stats()
                th = threading.Thread(target=reader)
                th.start()
                t0 = time.perf_counter()
                if batch == 1:
                    for _ in range(args.packets):
                        a.write_packet(pkt)
                else:
                    many = [pkt] * batch
                    for _ in range(args.packets // batch):
                        a.write_packets(many)
                t_send = time.perf_counter() - t0
                th.join()
                sent = args.packets // batch * batch
                s = b.stats()
                lost = sent - (s["udp_rx_datagrams"] - before["udp_rx_datagrams"])
                print(
                    f"one way, {label}, {sent} x {args.size} B: {sent / t_send:,.0f} pkt/s "
                    f"({sent * args.size / t_send / 1e6:.0f} MB/s) sent; {got} read by read_packet; "
                    f"lost: in the kernel {lost}, read queue full {s['queue_dropped'] - before['queue_dropped']}"
                )


if __name__ == "__main__":
    main()
