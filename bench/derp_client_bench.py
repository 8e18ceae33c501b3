"""DERP client throughput through Tailscale's derper (loopback, plain HTTP),
ours (Python API: DerpClient.send/recv) beside Tailscale's Go client
(derpclient loadgen, 1 pair). Prints figures; asserts nothing.

    .venv/bin/python bench/derp_client_bench.py [seconds]
"""

from __future__ import annotations

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import spanza
from tests.interop.gohelpers import Derper, run_loadgen


def ours(url: str, size: int, seconds: float) -> dict:
    with spanza.DerpClient(url, os.urandom(32)) as a, spanza.DerpClient(url, os.urandom(32), recv_queue=65536) as b:
        a.wait_connected(10)
        b.wait_connected(10)
        got = [0]
        stop = threading.Event()

        def receiver() -> None:
            while not stop.is_set():
                try:
                    b.recv(0.2)
                    got[0] += 1
                except TimeoutError:
                    pass

        t = threading.Thread(target=receiver)
        t.start()
        payload = bytes(size)
        sent = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            for _ in range(64):
                a.send(b.public_key, payload)
            sent += 64
        time.sleep(0.5)
        stop.set()
        t.join()
        return {
            "sent": sent,
            "received": got[0],
            "pps": got[0] / seconds,
            "mbps": got[0] * size / seconds / 1e6,
            "drops": a.stats()["drops_queue_full"] + b.stats()["drops_recv_queue"],
        }


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    with Derper() as d:
        for size in (1400, 65536):
            o = ours(d.url, size, seconds)
            g = run_loadgen(d.url, pairs=1, size=size, seconds=seconds)
            print(
                f"size {size:6d}: ours (Python API) {o['pps']:9.0f} pkt/s {o['mbps']:8.1f} MB/s "
                f"(sent {o['sent']}, received {o['received']}, client drops {o['drops']})  |  "
                f"Go derphttp {g['pps']:9.0f} pkt/s {g['mbps']:8.1f} MB/s (sent {g['sent']}, received {g['received']})"
            )


if __name__ == "__main__":
    main()
