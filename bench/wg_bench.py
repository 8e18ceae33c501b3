#!/usr/bin/env python3
"""WireGuard core figures: handshakes/s and 1420-byte transport throughput
through the C core (bench/wg_bench.c), beside the raw AEAD on this machine
(a raw EVP loop in the same program, and `openssl speed`).

Run from the source tree: .venv/bin/python bench/wg_bench.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    subprocess.run(["make", "-s", "build/release/wg_bench"], cwd=ROOT, check=True)
    print(f"# load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    r = subprocess.run([os.path.join(ROOT, "build/release/wg_bench")], check=True, capture_output=True, text=True)
    print(r.stdout, end="")
    ours = {}
    for x in r.stdout.splitlines():
        if x.startswith("aead ") and "MB/s" in x:
            name, _, rest = x[5:].partition(":")
            ours[name.strip()] = float(rest.split()[0])
    if shutil.which("openssl"):
        r = subprocess.run(
            ["openssl", "speed", "-seconds", "2", "-bytes", "1420", "-aead", "-evp", "chacha20-poly1305"],
            capture_output=True,
            text=True,
        )
        line = [x for x in r.stdout.splitlines() if x.lower().startswith("chacha20-poly1305")]
        if line:
            kbs = float(line[-1].split()[-1].rstrip("k"))
            print(
                f"openssl speed -aead -evp chacha20-poly1305 -bytes 1420: {kbs * 1000 / 1e6:.0f} MB/s "
                f"({kbs * 1000 * 8 / 1e9:.2f} Gbit/s) encrypt only"
            )
            speed = kbs * 1000 / 1e6
            for name, mbs in ours.items():
                print(f"ratio {name}: {mbs / speed:.0%} of openssl speed")
            # openssl speed (3.0.x) re-sets the nonce but, as a breakpoint on
            # ChaCha20_ctr32 in its process shows, never generates the
            # per-message Poly1305 key block; a correct AEAD must (RFC 8439
            # 2.6), so "openssl speed's loop, in here" is the reachable bound.
    print(f"# load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
