"""The Python side's own costs: read_packet per packet (packets already
queued, so only the call is timed) and how soon Ctrl-C (SIGINT) reaches a
call blocked in C (goal: under 100 ms; calls wait in 50 ms slices).

    .venv/bin/python bench/py_calls.py [TRIALS]
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time

import spanza
from spanza.packets import udp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCKED = """
import sys, time, spanza
d = spanza.Device(listen_port=None)
print("ready", flush=True)
for _ in range(int(sys.argv[1])):
    try:
        d.read_packet(timeout=None)
    except KeyboardInterrupt:
        print(time.monotonic(), flush=True)
"""


def read_packet_rate(rounds: int = 5, n: int = 200) -> float:
    ka, kb = spanza.PrivateKey.generate(), spanza.PrivateKey.generate()
    with spanza.Device(ka, listen_port=0) as a, spanza.Device(kb, listen_port=0) as b:
        a.add_peer(kb.public_key, endpoint=f"127.0.0.1:{b.listen_port}", allowed_ips=["10.0.0.2/32"])
        b.add_peer(ka.public_key, endpoint=f"127.0.0.1:{a.listen_port}", allowed_ips=["10.0.0.1/32"])
        pkt = udp("10.0.0.1", "10.0.0.2", 1000, 2000, b"x" * 64)
        a.write_packet(pkt)
        b.read_packet(timeout=10)
        best = 0.0
        for _ in range(rounds):
            a.write_packets([pkt] * n)
            deadline = time.monotonic() + 10
            while b.stats()["queue_length"] < n and time.monotonic() < deadline:
                time.sleep(0.001)
            t0 = time.perf_counter()
            for _ in range(n):
                b.read_packet(timeout=5)
            best = max(best, n / (time.perf_counter() - t0))
        return best


def sigint_latencies(trials: int) -> list[float]:
    child = subprocess.Popen([sys.executable, "-c", BLOCKED, str(trials)], cwd=ROOT, text=True, stdout=subprocess.PIPE)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    out = []
    try:
        for i in range(trials):
            time.sleep(0.05 + 0.013 * (i % 7))  # land anywhere in a slice
            sent = time.monotonic()
            child.send_signal(signal.SIGINT)
            out.append(float(child.stdout.readline()) - sent)
    finally:
        child.kill()
        child.wait()
    return out


def main() -> None:
    trials = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    print(f"read_packet, packets queued: {read_packet_rate():,.0f} calls/s (best of 5 x 200)")
    lat = sorted(x * 1000 for x in sigint_latencies(trials))
    p99 = lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))]
    print(
        f"SIGINT to KeyboardInterrupt in read_packet(None): median {statistics.median(lat):.1f} ms, "
        f"p99 {p99:.1f} ms, max {lat[-1]:.1f} ms ({trials} trials; goal < 100 ms)"
    )


if __name__ == "__main__":
    main()
