"""`make bench`: every benchmark in turn, each printing its own figures.

.venv/bin/python bench/run.py [NAME ...]     (default: all)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES: dict[str, list[str]] = {
    "wg": ["wg_bench.py"],
    "device": ["device_loopback.py"],
    "netstack": ["netstack_bench.py"],
    "tcp-loss": ["tcp_loss.py"],
    "derp": ["derp/run.py"],
    "derp-client": ["derp_client_bench.py", "3"],
    "gateway": ["gateway_iperf.py", "--seconds", "5"],
    "e2e": ["e2e/run.py", "--mib", "50"],
    "up": ["up_socks.py", "64"],
    "impair": ["impair_bench.py", "--budget", "15"],
    "python": ["py_calls.py"],
    "race": ["e2e/race.py", "--mib", "64", "--runs", "3"],
    "trace": ["trace_bench.py"],
    "cold-start": ["cold_start.py"],
}


def main() -> int:
    names = sys.argv[1:] or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHES)}", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        script, *args = BENCHES[name]
        if name == "gateway" and os.geteuid() != 0:
            print(f"== {name}: skipped (needs root for network namespaces)")
            continue
        print(f"== {name}: {script} {' '.join(args)}", flush=True)
        t = time.monotonic()
        r = subprocess.run([sys.executable, str(HERE / script), *args], cwd=HERE.parent)
        print(
            f"== {name}: {'ok' if r.returncode == 0 else f'FAILED ({r.returncode})'} in {time.monotonic() - t:.0f} s\n",
            flush=True,
        )
        if r.returncode:
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
