"""Packet-flow tracing: what it costs and that it stays bounded. Prints
figures; asserts nothing.

0. The C cost: bench/trace_tap_bench.c (the WireGuard core, off / headers /
   whole packets, a C thread draining).
1. Throughput of the full path (lwIP host -> WireGuard -> UDP -> gateway ->
   DERP client -> relay -> ... -> host), one TCP bulk transfer per round,
   with tracing off, on with headers only (snaplen 128) and on with whole
   packets, interleaved in the same run (median of the rounds).
2. A trace of a million packets (two devices on loopback UDP, 6 hops per
   packet): the rings stay at their size, the records kept are bounded and
   what could not be kept is counted.

    .venv/bin/python bench/trace_bench.py [--mib 16] [--rounds 3] [--packets 1000000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import threading
import time
from pathlib import Path

import spanza
from spanza import packets, trace
from spanza.scenario import Peer, connect

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 64 * 1024
PORT = 5001
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def bulk(a: Peer, b: Peer, nbytes: int) -> float:
    """Seconds for b to receive nbytes that a's host sends over TCP."""
    listener = a.device.listen(PORT)
    block = b"z" * CHUNK

    def serve() -> None:
        s, _ = listener.accept()
        with s:
            left = nbytes
            while left > 0:
                s.sendall(block[: min(CHUNK, left)])
                left -= CHUNK

    th = threading.Thread(target=serve)
    th.start()
    c = b.device.connect((a.address, PORT), timeout=10)
    got = 0
    t0 = time.perf_counter()
    with c:
        while got < nbytes:
            d = c.recv(1 << 20)
            if not d:
                break
            got += len(d)
    dt = time.perf_counter() - t0
    th.join()
    listener.close()
    assert got == nbytes, f"received {got} of {nbytes}"
    return dt


def throughput(mib: int, rounds: int) -> None:
    nbytes = mib << 20
    modes: dict[str, dict[str, object] | None] = {
        "off": None,
        "headers, rings only": {"snaplen": 128, "live": False},
        "headers, drained live": {"snaplen": 128},
        "whole packets, live": {"snaplen": 0},
    }
    results: dict[str, list[float]] = {m: [] for m in modes}
    kept: dict[str, list[str]] = {m: [] for m in modes}
    with (
        spanza.DerpServer() as relay,
        Peer(relay.url, "192.168.4.1/24", mode="gateway") as a,
        Peer(relay.url, "192.168.4.2/24", mode="gateway") as b,
    ):
        connect(a, b)
        bulk(a, b, 1 << 20)  # warm up: handshake, windows
        for _ in range(rounds):
            for mode, opts in modes.items():
                if opts is None:
                    results[mode].append(nbytes / bulk(a, b, nbytes) / 1e6)
                    continue
                with trace.capture(relay, a, b, max_records=2_000_000, **opts) as cap:  # type: ignore[arg-type]
                    results[mode].append(nbytes / bulk(a, b, nbytes) / 1e6)
                kept[mode].append(f"{len(cap.records())} records, overflow {cap.overflow}")
    print(f"full path, TCP bulk {mib} MiB b<-a, {rounds} rounds interleaved (MB/s, median [min..max]):")
    base = statistics.median(results["off"])
    for mode, v in results.items():
        med = statistics.median(v)
        extra = f"; {kept[mode][-1]}" if kept[mode] else ""
        print(f"  tracing {mode:<22} {med:8.1f} [{min(v):.1f}..{max(v):.1f}]  {med / base * 100:5.1f}% of off{extra}")


def million(n: int) -> None:
    with (
        spanza.Runtime("tb-a") as ra,
        spanza.Runtime("tb-b") as rb,
        spanza.Device(private_key=spanza.PrivateKey.generate(), runtime=ra) as da,
        spanza.Device(private_key=spanza.PrivateKey.generate(), runtime=rb) as db,
    ):
        da.add_peer(
            db.public_key,
            endpoint=("127.0.0.1", db.listen_port),
            allowed_ips=["10.0.0.2/32"],
        )
        db.add_peer(
            da.public_key,
            endpoint=("127.0.0.1", da.listen_port),
            allowed_ips=["10.0.0.1/32"],
        )
        pkt = packets.udp("10.0.0.1", "10.0.0.2", 1000, 2000, b"x" * 100)
        da.write_packet(pkt)
        db.read_packet(timeout=5)
        batch = [pkt] * 64
        runs = (
            ("off", None),
            ("rings only (nobody drains)", False),
            ("drained live, max_records 200000", True),
        )
        for label, live in runs:
            rss0 = rss_mib()
            rx0 = db.stats()["udp_rx_datagrams"]
            cap = None
            if live is not None:
                cap = trace.capture(
                    da,
                    db,
                    snaplen=64,
                    live=live,
                    ring_bytes=4 << 20,
                    max_records=200_000,
                )
            t0 = time.perf_counter()
            for _ in range(n // len(batch)):
                da.write_packets(batch)
            dt = time.perf_counter() - t0
            rx = settle(db) - rx0
            line = f"{n} packets, trace {label}: {n / dt:,.0f} pkt/s sent, {rx} received"
            if cap is not None:
                cap.stop()
                st = trace.stats()
                kept = len(cap.records())
                line += (
                    f"; kept {kept} records, overflow {cap.overflow} ({(kept + cap.overflow) / n:.1f} "
                    f"records/packet); rings {st['rings']} x {st['ring_bytes'] // max(1, st['rings']) >> 20} MiB; "
                    f"RSS {rss0:.0f} -> {rss_mib():.0f} MiB"
                )
                del cap
            print(line, flush=True)


def settle(d: spanza.Device) -> int:
    """The device's received datagram count once it stops growing."""
    last, stable = -1, 0
    deadline = time.monotonic() + 30
    while stable < 3 and time.monotonic() < deadline:
        now = d.stats()["udp_rx_datagrams"]
        stable = stable + 1 if now == last else 0
        last = now
        time.sleep(0.05)
    return last


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--packets", type=int, default=1_000_000)
    args = ap.parse_args()
    # The C cost first: the WireGuard core with its 4 taps, no Python involved.
    subprocess.run(["make", "-s", "build/release/trace_tap_bench"], cwd=ROOT, check=True)
    subprocess.run([str(ROOT / "build/release/trace_tap_bench")], check=True)
    throughput(args.mib, args.rounds)
    million(args.packets)


if __name__ == "__main__":
    main()
