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
    subprocess.run([os.path.join(ROOT, "build/release/wg_bench")], check=True)
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
    print(f"# load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
