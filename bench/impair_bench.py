"""Goodput under loss: a 64 MiB HTTP transfer through Spanza (two peers over
our relay, the data sender's relay link impaired with spanza.impair) next to
Linux kernel TCP through the same impairment: two network namespaces this
script creates and removes, each with Debian's wireguard-go behind a Spanza
gateway, over our relay, the data sender's gateway's relay link impaired
alike (so only the TCP stack differs). Needs root and wireguard-go, else
that column is skipped. (netem would be the other reference, but this
kernel has no sch_netem.)

Impairment of the data direction: 0 / 1 / 5 / 10 % random loss and 20 ms
one-way delay. Each case gets a time budget (--budget seconds): a transfer
that has not finished by then is cut, and its goodput is what arrived in
time (marked "partial": under 1-10 % loss lwIP's goodput is bound by its
congestion window, about 1.3 / 0.5 / 0.3 MB/s at 20 ms). Spanza's
complete transfers are sha256-checked. Prints figures; asserts nothing.

    .venv/bin/python bench/impair_bench.py [--mib 64] [--budget 20] [--mode gateway|transport]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from contextlib import ExitStack

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from spanza import network as nw

LOSSES = (0.0, 0.01, 0.05, 0.10)
DELAY = 0.020
MiB = 1 << 20
Row = tuple[float, int, str]  # goodput B/s, bytes, how it ended


class Budget(Exception):
    pass


def spanza_case(net: nw.Network, loss: float, nbytes: int, budget: float) -> Row:
    a, b = net.peers
    t0 = time.monotonic()
    got = [0]

    def progress(done: int, _total: int) -> None:
        got[0] = done
        if time.monotonic() - t0 > budget:
            raise Budget()

    with a.impair(loss=loss, delay=DELAY, seed=1, direction="out"):
        try:
            r = nw.transfer(b, a, nbytes, timeout=budget + 10, progress=progress)
        except Budget:
            return got[0] / (time.monotonic() - t0), got[0], "partial"
    return r.goodput, r.received, "sha256 ok" if r.ok else "SHA256 MISMATCH"


SERVER = r"""
import socket, sys
n = int(sys.argv[1]); block = bytes(1 << 20)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[2], 5201)); s.listen(1); print("ready", flush=True)
c, _ = s.accept()
try:
    while n > 0:
        k = min(n, len(block)); c.sendall(block[:k]); n -= k
except OSError:
    pass
c.close()
"""

CLIENT = r"""
import socket, sys, time
n, budget = int(sys.argv[2]), float(sys.argv[3])
t0 = time.monotonic(); got = 0
c = socket.create_connection((sys.argv[1], 5201), timeout=budget + 5); c.settimeout(1.0)
while got < n and time.monotonic() - t0 < budget:
    try:
        k = len(c.recv(1 << 20))
    except TimeoutError:
        continue
    if not k:
        break
    got += k
print(got, time.monotonic() - t0)
"""


def kernel_cases(nbytes: int, budget: float) -> list[Row]:
    """Linux TCP between two namespaces (wireguard-go + Spanza gateway each,
    our relay between), the data sender's gateway's relay link impaired."""
    from gateway_iperf import B4, pair  # type: ignore[import-not-found]

    from spanza import DerpServer
    from tests.interop.netns import kill_tree

    rows = []
    with ExitStack() as stack:
        relay = stack.enter_context(DerpServer())
        a, b = pair(stack, relay.url, None)
        a["ns"].run("ping", "-c", "3", "-W", "5", B4, timeout=30)
        for loss in LOSSES:
            with b["gw"].impair(loss=loss, delay=DELAY, seed=1, direction="out") as imp:
                srv = b["ns"].popen(
                    sys.executable,
                    "-c",
                    SERVER,
                    str(nbytes),
                    B4,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                try:
                    assert srv.stdout is not None and srv.stdout.readline().strip() == "ready"
                    out = (
                        a["ns"]
                        .run(
                            sys.executable,
                            "-c",
                            CLIENT,
                            B4,
                            str(nbytes),
                            str(budget),
                            timeout=budget + 30,
                        )
                        .stdout.split()
                    )
                finally:
                    kill_tree(srv)
            got, dt = int(out[0]), float(out[1])
            print(
                f"  kernel {loss:.0%}: impairment saw {imp.stats.packets} packets, dropped {imp.stats.dropped}",
                flush=True,
            )
            rows.append((got / dt, got, "complete" if got == nbytes else "partial"))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument(
        "--budget",
        type=float,
        default=20.0,
        help="seconds per case before the transfer is cut",
    )
    ap.add_argument("--mode", choices=nw.MODES, default="gateway")
    args = ap.parse_args()
    nbytes = args.mib * MiB
    print(
        f"{args.mib} MiB, {DELAY * 1000:.0f} ms one-way delay on the data direction, budget {args.budget:.0f} s "
        f"per case; Spanza {args.mode} mode over our relay",
        flush=True,
    )
    with nw.Network(peers=2, mode=args.mode) as net:
        net.mesh()
        spanza_rows = [spanza_case(net, loss, nbytes, args.budget) for loss in LOSSES]
    kernel_rows: list[Row | None] = [None] * len(LOSSES)
    if os.geteuid() == 0 and shutil.which("wireguard-go"):
        kernel_rows = list(kernel_cases(nbytes, args.budget))
    print(f"{'loss':>5} | {'Spanza (lwIP) MB/s':>18} {'':12} | Linux TCP via wireguard-go MB/s")
    for loss, s, k in zip(LOSSES, spanza_rows, kernel_rows, strict=True):
        ks = f"{k[0] / 1e6:8.2f} ({k[2]})" if k else "skipped (needs root and wireguard-go)"
        print(f"{loss * 100:4.0f}% | {s[0] / 1e6:18.2f} {'(' + s[2] + ')':12} | {ks}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
