#!/usr/bin/env python3
"""DERP relay benchmark: our server (spanza derper) and Tailscale's derper,
side by side, driven by the same load generator (Tailscale's Go derphttp
client, `derpclient loadgen`, built by `make go-helpers`).

Prints, for each server: relay throughput (packets/s and MB/s delivered,
1400-byte packets, several sender->receiver pairs at once) and resident
memory per idle connection (RSS growth of the server process with N idle
Go clients connected, divided by N).

    .venv/bin/python bench/derp/run.py [--seconds 5] [--pairs 1,4,16] [--idle 1000] [--tls]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.interop.gohelpers import DERPCLIENT, DERPER, free_port, run_loadgen, wait_port


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Server:
    def __init__(self, kind: str, tls: bool, tmp: Path) -> None:
        self.kind, self.tls = kind, tls
        self.port = free_port()
        d = tmp / kind
        d.mkdir()
        if kind == "spanza":
            args = [
                sys.executable,
                "-m",
                "spanza",
                "derper",
                "-a",
                f"127.0.0.1:{self.port}",
                "-c",
                str(d / "k.json"),
                "--stun=false",
            ]
        else:
            args = [str(DERPER), "-a", f"127.0.0.1:{self.port}", "-c", str(d / "k.json"), "--stun=false"]
        if tls:
            args += ["--certmode", "manual", "--hostname", "127.0.0.1", "--certdir", str(d / "certs")]
            if kind == "derper":
                args += ["--http-port", "-1"]
        self.log = open(d / "log", "w+b")
        self.proc = subprocess.Popen(
            args, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT
        )
        wait_port(self.port)
        time.sleep(0.3)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/derp"

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_rss(server: Server, n: int, tls: bool) -> tuple[int, int, float]:
    before = rss_kib(server.proc.pid)
    args = [str(DERPCLIENT), "idle", "--url", server.url, "--n", str(n)] + (["--insecure"] if tls else [])
    p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = p.stdout.readline()
    if b'"ready"' not in line:
        p.kill()
        raise RuntimeError(f"idle clients failed: {line!r} {p.stderr.read()[-2000:]!r}")
    time.sleep(1.0)
    after = rss_kib(server.proc.pid)
    p.stdin.write(b"close\n")
    p.stdin.close()
    p.wait(60)
    return before, after, (after - before) * 1024 / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--pairs", default="1,4,16")
    ap.add_argument("--size", type=int, default=1400)
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--tls", action="store_true", help="serve TLS (self-signed) instead of plain HTTP")
    ap.add_argument("--only", choices=["spanza", "derper"], default=None)
    args = ap.parse_args()
    if not (DERPER.exists() and DERPCLIENT.exists()):
        print("Go helpers missing: run `make go-helpers`", file=sys.stderr)
        return 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it
    pairs = [int(p) for p in args.pairs.split(",")]
    kinds = [args.only] if args.only else ["spanza", "derper"]
    results: dict = {}
    print(
        f"DERP relay benchmark: {args.size}-byte packets, {args.seconds:g} s per run, "
        f"{'TLS' if args.tls else 'plain HTTP'}, {os.cpu_count()} CPUs; load: Tailscale's derphttp client"
    )
    with tempfile.TemporaryDirectory(prefix="spz-bench-derp-") as tmp:
        for kind in kinds:
            srv = Server(kind, args.tls, Path(tmp))
            try:
                r = results[kind] = {"throughput": {}}
                for p in pairs:
                    # The relay's own CPU per packet: on a shared machine
                    # steadier than the throughput, which the load sets.
                    cpu0 = cpu_seconds(srv.proc.pid)
                    res = run_loadgen(srv.url, pairs=p, size=args.size, seconds=args.seconds, insecure=args.tls)
                    res["relay_cpu_us_per_packet"] = (cpu_seconds(srv.proc.pid) - cpu0) / max(res["received"], 1) * 1e6
                    r["throughput"][p] = res
                    loss = 1 - res["received"] / res["sent"] if res["sent"] else 0.0
                    print(
                        f"  {kind:7s} pairs={p:3d}: {res['pps']:10.0f} pkt/s  {res['mbps']:8.1f} MB/s  "
                        f"(sent {res['sent']}, received {res['received']}, {loss:.1%} dropped), "
                        f"relay CPU {res['relay_cpu_us_per_packet']:.2f} us/packet",
                        flush=True,
                    )
                if args.idle:
                    before, after, per = idle_rss(srv, args.idle, args.tls)
                    r["idle"] = {
                        "n": args.idle,
                        "rss_before_kib": before,
                        "rss_after_kib": after,
                        "bytes_per_conn": per,
                    }
                    print(
                        f"  {kind:7s} idle: RSS {before} KiB -> {after} KiB with {args.idle} connections: "
                        f"{per / 1024:.1f} KiB per connection",
                        flush=True,
                    )
            finally:
                srv.close()
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
