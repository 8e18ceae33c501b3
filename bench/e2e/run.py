"""End-to-end throughput: HTTP through the full Spanza path.

    .venv/bin/python bench/e2e/run.py [--mib 50] [--relay spanza|derper|both] [--plain]

python socket -> lwIP host .2 -> WireGuard -> UDP -> gateway -> DERP client
(TLS) -> relay -> DERP client (TLS) -> gateway -> UDP -> WireGuard -> lwIP
host .1 -> http.server, and the response back the same way. Prints the time
and throughput of a GET of --mib MiB, verified by sha256, and the time from
nothing to the first response (the demo's figure).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "interop"))

import spanza
from spanza.scenario import Peer, connect


def one_run(url: str, mib: int, mode: str, insecure: bool) -> dict[str, float]:
    data = os.urandom(1 << 20) * mib
    want = hashlib.sha256(data).hexdigest()
    t0 = time.perf_counter()
    with (
        Peer(url, "192.168.4.1/24", mode=mode, insecure=insecure) as a,
        Peer(url, "192.168.4.2/24", mode=mode, insecure=insecure) as b,
    ):
        connect(a, b)
        a.serve_http(80, body=b"ok")
        a.serve_http(8080, body=data)
        status, _ = b.http_get("http://192.168.4.1/")
        first = time.perf_counter() - t0
        assert status == 200
        t1 = time.perf_counter()
        status, body = b.http_get("http://192.168.4.1:8080/", timeout=120)
        secs = time.perf_counter() - t1
        assert status == 200 and len(body) == len(data), (status, len(body))
        assert hashlib.sha256(body).hexdigest() == want, "body corrupted"
        return {
            "first_response_ms": first * 1000,
            "seconds": secs,
            "MB/s": len(data) / secs / 1e6,
            "Mbit/s": len(data) * 8 / secs / 1e6,
        }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=50)
    ap.add_argument("--relay", choices=["spanza", "derper", "both"], default="both")
    ap.add_argument("--mode", choices=["gateway", "transport"], default="gateway")
    ap.add_argument("--plain", action="store_true", help="DERP over plain HTTP instead of TLS")
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    tls = not args.plain
    print(
        f"GET of {args.mib} MiB, {args.mode} mode, DERP over {'TLS' if tls else 'plain HTTP'}, {os.cpu_count()} cores"
    )
    relays = ["spanza", "derper"] if args.relay == "both" else [args.relay]
    for relay in relays:
        for _ in range(args.runs):
            if relay == "spanza":
                with spanza.DerpServer(tls=tls, hostname="127.0.0.1") as server:
                    r = one_run(server.url, args.mib, args.mode, tls)
            else:
                from gohelpers import Derper

                with Derper(tls=tls) as d:
                    r = one_run(d.url, args.mib, args.mode, tls)
            print(
                f"  relay {relay:7s}: {r['MB/s']:7.1f} MB/s ({r['Mbit/s']:6.0f} Mbit/s), "
                f"{r['seconds']:.2f} s, intact; first response {r['first_response_ms']:.1f} ms"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
