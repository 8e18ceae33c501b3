"""Relay failover under loss: what happens to a transfer when a peer's relay
dies while its link loses 3 % of packets?

Two relays meshed in one region, a peer homed on each. Peer A's relay link
loses 3 % each way (seeded, so the run repeats). A transfer runs; then A's relay is
killed (connections reset): A's DERP client fails over to the region's
other node by itself, and the next transfer works without user action.

Run:  spanza scenario examples/relay_failover.py   (or python examples/relay_failover.py)
"""

from __future__ import annotations

import sys
import time

from spanza.scenario import Network

MiB = 1 << 20
mode = sys.argv[1] if len(sys.argv) > 1 else "gateway"

with Network(peers=2, relays=2, mode=mode) as net:
    net.mesh()
    a, b = net.peers
    print(f"homes before: {net.homes()}")
    with a.impair(loss=0.03, seed=1) as imp:
        before = net.transfer(b, a, MiB // 2)
        print(f"transfer before failover: {before}")
        t0 = time.monotonic()
        net.relays[a.home].kill()
        after = net.transfer(b, a, MiB // 2, timeout=30)
        print(f"transfer after failover: {after} ({time.monotonic() - t0:.2f} s after the kill)")
    deadline = time.monotonic() + 10
    while net.homes() != [0, 2] and time.monotonic() < deadline:
        time.sleep(0.05)
    print(f"homes after: {net.homes()}")
    print(f"impairment on A's relay link: {imp.stats.packets} packets, {imp.stats.dropped_loss} lost")
    ok = before.ok and after.ok and net.homes() == [0, 2]
    print(f"result: {'PASS' if ok else 'FAIL'}")
    if not ok:
        sys.exit(1)
