"""Goodput and read stalls of a big HTTP GET through the full Spanza path,
over Spanza's relay and Tailscale's derper (TLS and plain HTTP).

    .venv/bin/python bench/e2e/stalls.py [--mib 64] [--runs 3] [--relay spanza,derper]
        [--transport tls,plain] [--mode gateway,transport] [--trees DIR,DIR]

Same path as bench/e2e/run.py (python socket -> lwIP -> WireGuard -> gateway
or DERP transport -> relay -> ... -> http.server), but the response is read
in chunks and each read timestamped: prints MB/s, the longest gap between two
reads after the first byte (a stall), and for derper the packets its queues
dropped (`derp_packets_dropped` in /debug/varz). Runs are interleaved over
the cases; medians at the end, with the load average. --trees runs each
case once per given source tree (built; e.g. an export of main, for
before/after figures), each run in a child process importing that tree.
SPANZA_BENCH_PACING=0 turns lwIP's pacing off (scripts/lwip-patches/0004);
SPANZA_BENCH_ACK_BATCH=N acknowledges at most N segments at once (0: lwIP's
own ACK every second segment; scripts/lwip-patches/0006).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import ssl
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "interop"))
sys.path.insert(0, os.environ.get("SPANZA_TREE", str(ROOT)))  # --trees: another build first

import spanza
from spanza.netstack import HTTPConnection
from spanza.scenario import Peer, connect

MiB = 1 << 20
CHUNK = 256 * 1024


def derper_drops(url: str) -> int:
    """Packets derper dropped so far, all reasons (its /debug/varz, loopback)."""
    base = url.rsplit("/derp", 1)[0]
    ctx = ssl._create_unverified_context()  # derper's self-signed test certificate
    try:
        text = urllib.request.urlopen(f"{base}/debug/varz", context=ctx, timeout=5).read().decode()
    except OSError:
        return -1
    return sum(int(float(m)) for m in re.findall(r"^derp_packets_dropped\{[^}]*\} (\S+)$", text, re.MULTILINE))


def recovery() -> dict[str, int]:
    """lwIP's loss-recovery counters of this process (a tree without them: {})."""
    from spanza._ffi import ffi, lib

    if not hasattr(lib, "ns_tcp_recovery_stats"):
        return {}
    st = ffi.new("struct ns_tcp_recovery *")
    lib.ns_tcp_recovery_stats(st)
    return {k: int(getattr(st, k)) for k, _ in ffi.typeof("struct ns_tcp_recovery").fields}


def get_timed(peer: Peer, host: str, port: int, nbytes: int, want: str) -> tuple[float, float]:
    """GET, reading what has arrived each time (up to CHUNK): (MB/s, longest
    stall in s after the first byte). read1, not readinto: readinto waits
    until the whole chunk is in, so at 0.3 MB/s a "stall" would be the
    ~0.9 s a 256 KiB chunk takes to fill (the Go reference's Read returns
    what there is, as this does)."""
    conn = HTTPConnection(peer.device, host, port, timeout=120)
    try:
        t0 = time.perf_counter()
        conn.request("GET", "/")
        resp = conn.getresponse()
        assert resp.status == 200, resp.status
        h, got, stall, last = hashlib.sha256(), 0, 0.0, None
        while chunk := resp.read1(CHUNK):
            now = time.perf_counter()
            if last is not None:
                stall = max(stall, now - last)
            last = now
            h.update(chunk)
            got += len(chunk)
        secs = time.perf_counter() - t0
    finally:
        conn.close()
    assert got == nbytes and h.hexdigest() == want, "body short or corrupted"
    return nbytes / secs / 1e6, stall


last_recovery: dict[str, int] = {}  # lwIP's recovery events of the last run_peers


def run_peers(
    url: str, tls: bool, mode: str, body: bytes, want: str, impair: dict | None = None
) -> tuple[float, float]:
    """Two Spanza peers on the relay at url; .2 GETs body from .1. impair:
    Peer.impair() settings for what .1 sends to the relay (loss, delay,
    seed), for the transfer."""
    with (
        Peer(url, "192.168.4.1/24", mode=mode, insecure=tls) as a,
        Peer(url, "192.168.4.2/24", mode=mode, insecure=tls) as b,
    ):
        connect(a, b)
        from spanza._ffi import lib

        if os.environ.get("SPANZA_BENCH_PACING") == "0":  # compare: lwIP's pacing off
            lib.ns_tcp_set_pacing(0)
        if "SPANZA_BENCH_ACK_BATCH" in os.environ:  # compare: segments per ACK (0: lwIP's own)
            assert lib.ns_tcp_set_ack_batch(int(os.environ["SPANZA_BENCH_ACK_BATCH"])) == 0
        a.serve_http(8080, body=body)
        before = recovery()
        if impair:
            with a.impair(direction="out", **impair):
                out = get_timed(b, "192.168.4.1", 8080, len(body), want)
        else:
            out = get_timed(b, "192.168.4.1", 8080, len(body), want)
        after = recovery()  # while the stack runs
    last_recovery.clear()
    last_recovery.update({k: after[k] - before[k] for k in ("fast_rexmit", "tlp", "rto") if k in after})
    return out


def one_run(relay: str, tls: bool, mode: str, body: bytes, want: str) -> dict[str, float]:
    def run(url: str) -> tuple[float, float]:
        return run_peers(url, tls, mode, body, want)

    if relay == "spanza":
        with spanza.DerpServer(tls=tls, hostname="127.0.0.1") as server:
            mbs, stall = run(server.url)
        drops = 0
    else:
        from gohelpers import Derper

        with Derper(tls=tls) as d:
            mbs, stall = run(d.url)
            drops = derper_drops(d.url)
    return {"MB/s": mbs, "stall_ms": stall * 1e3, "drops": drops, **last_recovery}


def child(case: str, mib: int) -> int:
    """--one: a single run in this process; prints its figures as JSON."""
    relay, transport, mode = case.split(":")
    body = os.urandom(MiB) * mib
    r = one_run(relay, transport == "tls", mode, body, hashlib.sha256(body).hexdigest())
    print(json.dumps(r))
    return 0


def in_tree(tree: str, relay: str, tls: bool, mode: str, mib: int) -> dict[str, float]:
    """One run with the spanza package of another source tree, in a child."""
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--one",
            f"{relay}:{'tls' if tls else 'plain'}:{mode}",
            "--mib",
            str(mib),
        ],
        env={**os.environ, "SPANZA_TREE": tree},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if out.returncode:
        raise RuntimeError(f"{tree} {relay}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def case_args(doc: str) -> argparse.ArgumentParser:
    """The options this benchmark and race.py share."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--relay", default="spanza,derper")
    ap.add_argument("--transport", default="tls,plain")
    return ap


def main() -> int:
    ap = case_args(__doc__)
    ap.add_argument("--mode", default="gateway")
    ap.add_argument("--trees", default="", help="comma-separated source trees to compare")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        return child(args.one, args.mib)
    body = os.urandom(MiB) * args.mib
    want = hashlib.sha256(body).hexdigest()
    trees = args.trees.split(",") if args.trees else [""]
    cases = [
        (r, t == "tls", m, tree)
        for r in args.relay.split(",")
        for t in args.transport.split(",")
        for m in args.mode.split(",")
        for tree in trees
    ]
    la = os.getloadavg()
    print(
        f"GET of {args.mib} MiB, {args.runs} interleaved runs, {os.cpu_count()} cores; "
        f"load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}"
    )
    results: dict[tuple, list[dict[str, float]]] = {c: [] for c in cases}
    for i in range(args.runs):
        for c in cases:
            relay, tls, mode, tree = c
            r = in_tree(tree, relay, tls, mode, args.mib) if tree else one_run(relay, tls, mode, body, want)
            results[c].append(r)
            print(
                f"  run {i + 1} {relay:6s} {'tls' if tls else 'plain':5s} {mode:9s} {tree}: "
                f"{r['MB/s']:7.1f} MB/s, longest stall {r['stall_ms']:7.1f} ms, relay drops {r['drops']}"
                + "".join(f", {k} {r[k]}" for k in ("fast_rexmit", "tlp", "rto") if k in r),
                flush=True,
            )
    print("medians:")
    for c, rs in results.items():
        relay, tls, mode, tree = c
        print(
            f"  {relay:6s} {'tls' if tls else 'plain':5s} {mode:9s} {tree}: "
            f"{statistics.median(r['MB/s'] for r in rs):7.1f} MB/s, "
            f"longest stall {statistics.median(r['stall_ms'] for r in rs):7.1f} ms, "
            f"relay drops {statistics.median(r['drops'] for r in rs):.0f}"
        )
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
