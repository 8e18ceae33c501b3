#!/usr/bin/env python3
"""Cold start: from process spawn to the first response of `spanza demo`.

Spawns `spanza demo` N times (the `spanza` command of this interpreter's
environment: bin/spanza as pip installs it, whose editable install imports
the tree; `python -m spanza demo` with --module), times each from just before the spawn to the
moment its `response:` line arrives on the pipe, and prints the median, the
spread and where a run spends its time (interpreter start, `import spanza`,
the imports the demo needs, the scenario itself).

.venv/bin/python bench/cold_start.py [-n N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# An installed package has its bytecode compiled; so does the tree after the
# warm-up spawn, unless the caller's environment forbids writing it.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def spawn_once(cmd: list[str]) -> tuple[float, float, float]:
    """Seconds to the `response:` line and to the process's exit, and the
    process's CPU seconds (user + system: steadier than the wall clock on
    a shared machine)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert p.stdout is not None
    first = float("nan")
    for line in p.stdout:
        if line.startswith("response:"):
            first = time.perf_counter() - t0
            break
    p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode})")
    return first, time.perf_counter() - t0, ru.ru_utime + ru.ru_stime


# The same run, with marks: the child writes CLOCK_MONOTONIC (shared with
# this process) once the interpreter is up and once the demo's imports are
# done, so one spawn splits into phases without a second, noisier run.
MARKED = (
    "import sys, time; t1 = time.monotonic(); import spanza.cli, spanza.demo; t2 = time.monotonic(); "
    "print(f'marks {t1!r} {t2!r}', file=sys.stderr, flush=True); "
    "sys.exit(spanza.cli.main(['demo']))"
)


def phases_once() -> tuple[float, float, float]:
    """Milliseconds from spawn to: interpreter up, imports done, response."""
    t0 = time.monotonic()
    p = subprocess.Popen(
        [sys.executable, "-c", MARKED], cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert p.stdout is not None and p.stderr is not None
    t3 = float("nan")
    for line in p.stdout:
        if line.startswith("response:"):
            t3 = time.monotonic()
            break
    p.stdout.read()
    err = p.stderr.read()
    p.wait()
    marks = [x for x in err.splitlines() if x.startswith("marks ")]
    if p.returncode or not marks:
        raise SystemExit(f"marked run failed ({p.returncode}): {err[-500:]}")
    t1, t2 = (float(x) for x in marks[0].split()[1:])
    return (t1 - t0) * 1000, (t2 - t0) * 1000, (t3 - t0) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=21, help="spawns (default 21)")
    ap.add_argument(
        "--module", action="store_true", help="spawn `python -m spanza demo` instead of the `spanza` command"
    )
    args = ap.parse_args()
    # `spanza demo` as users type it: the `spanza` command next to this
    # interpreter (the project's editable install imports the tree).
    script = os.path.join(os.path.dirname(sys.executable), "spanza")
    if args.module or not os.path.exists(script):
        cmd = [sys.executable, "-m", "spanza", "demo"]
    else:
        cmd = [script, "demo"]
    print(f"# load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    spawn_once(cmd)  # warm the page cache and __pycache__
    runs = [spawn_once(cmd) for _ in range(args.n)]
    first = sorted(r[0] * 1000 for r in runs)
    total = sorted(r[1] * 1000 for r in runs)
    q = max(1, args.n // 4)
    print(
        f"cold start, spawn to first response ({' '.join(os.path.basename(c) for c in cmd)}): "
        f"median {statistics.median(first):.1f} ms "
        f"(min {first[0]:.1f}, quartiles {first[q - 1]:.1f}..{first[-q]:.1f}) over {args.n} spawns"
    )
    cpu = statistics.median(r[2] * 1000 for r in runs)
    print(f"spawn to exit: median {statistics.median(total):.1f} ms; CPU (user + system) median {cpu:.1f} ms")
    ph = [phases_once() for _ in range(args.n)]
    up, imp, resp = (statistics.median(x) for x in zip(*ph, strict=False))
    print(
        f"where it goes (medians of {args.n} marked spawns, {resp:.1f} ms to the response): interpreter up "
        f"{up:.1f} ms, the demo's imports +{imp - up:.1f} ms, relay + peers + GET +{resp - imp:.1f} ms"
    )
    print(f"# load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
