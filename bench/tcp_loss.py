"""TCP loss recovery on the memory wire: prints figures, asserts nothing.

A bulk transfer B -> A through the socket bridges while the wire plays
derper's per-client queue on B's direction (at most DEPTH packets wait,
drained at RATE packets per ms, the oldest dropped on overflow), or loses
packets at random. Prints goodput, the longest gap between two reads of the
receiver (a stall), the wire's losses and lwIP's recovery counters
(scripts/lwip-patches).

    .venv/bin/python bench/tcp_loss.py [--mib 16] [--depth 32] [--rate 20] [--runs 3]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this tree's spanza

from spanza._ffi import ffi, lib
from spanza.netstack import wired_pair

MiB = 1 << 20
A4, B4 = "192.168.4.1", "192.168.4.2"


def recovery() -> dict[str, int]:
    st = ffi.new("struct ns_tcp_recovery *")
    assert lib.ns_tcp_recovery_stats(st) == 0
    return {k: int(getattr(st, k)) for k, _ in ffi.typeof("struct ns_tcp_recovery").fields}


def transfer(nbytes: int, depth: int, rate: int, delay_ms: float, port: int, pacing: bool = True) -> dict[str, float]:
    """One run: B sends nbytes to A; figures of the receiver's side."""
    a, b, wire = wired_pair(f"{A4}/24", f"{B4}/24", delay_ms=delay_ms)
    try:
        assert lib.ns_wire_set_bottleneck(wire.ptr, 1, depth, rate) == 0
        assert lib.ns_tcp_set_pacing(int(pacing)) == 0
        lst = a.listen(port)
        c = b.connect((A4, port), timeout=10)
        s, _ = lst.accept()
        before = recovery()
        payload = bytes(range(256)) * (MiB // 256)

        def send() -> None:
            for _ in range(nbytes // MiB):
                c.sendall(payload)
            c.shutdown(socket.SHUT_WR)

        t = threading.Thread(target=send)
        buf = bytearray(MiB)
        got, stall = 0, 0.0
        t0 = last = time.monotonic()
        t.start()
        while k := s.recv_into(buf):
            now = time.monotonic()
            stall = max(stall, now - last)
            last = now
            got += k
        secs = time.monotonic() - t0
        t.join(10)
        after = recovery()
        st = ffi.new("struct ns_wire_stats *")
        assert lib.ns_wire_get_stats(wire.ptr, st) == 0
        lost = int(st.lost[1])
        for x in (c, s, lst):
            x.close()
    finally:
        a.close()
        b.close()
        wire.close()
    out = {
        "MB/s": got / secs / 1e6,
        "stall_ms": stall * 1e3,
        "lost": lost,
        "ok": got == nbytes,
    }
    out.update({k: after[k] - before[k] for k in after})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=16)
    ap.add_argument("--depth", type=int, default=32, help="bottleneck queue depth (packets)")
    ap.add_argument("--rate", type=int, default=20, help="bottleneck drain rate (packets per ms)")
    ap.add_argument("--delay", type=float, default=0.0, help="one-way delay (ms)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-pacing", action="store_true", help="lwIP's pacing off (patch 0004)")
    args = ap.parse_args()
    print(f"{args.mib} MiB B->A, bottleneck depth {args.depth} at {args.rate} packets/ms, delay {args.delay} ms")
    runs = []
    for i in range(args.runs):
        r = transfer(
            args.mib * MiB,
            args.depth,
            args.rate,
            args.delay,
            7000 + i,
            not args.no_pacing,
        )
        runs.append(r)
        print("  " + "  ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()))
    print(
        f"median: {statistics.median(r['MB/s'] for r in runs):.1f} MB/s, "
        f"longest stall {statistics.median(r['stall_ms'] for r in runs):.0f} ms"
    )


if __name__ == "__main__":
    main()
