"""The table at the end of `make fuzz`: one row per target, from its log.

Usage: fuzz-summary.py DIR TARGET... -- reads DIR/<target>.log (libFuzzer's
output with -print_final_stats=1) and DIR/<target>.rc (its exit status),
prints the table and writes it to DIR/summary.txt. Exits 1 if a target
crashed (or left no final stats), so `make fuzz` fails after the table
rather than at the first crash, with every target's figures in hand.
"""

from __future__ import annotations

import pathlib
import re
import sys

# libFuzzer's status lines ("#123456\tpulse  cov: 711 ft: 3749 corp: ...")
# and its final stats ("stat::number_of_executed_units: 388633").
STATUS = re.compile(r"^#(\d+)\s.*?cov: (\d+) ft: (\d+)")
STAT = re.compile(r"^stat::(\w+):\s*(\d+)")
# What a finding looks like in the log: a sanitizer report (UBSan's
# "runtime error:" too, should a build let it recover), a deadly signal, a
# timeout or out-of-memory; and the artifact libFuzzer wrote for it.
FINDING = re.compile(
    r"^(==\d+==ERROR|SUMMARY: \w+Sanitizer)|deadly signal|runtime error:|ALARM: working on the last|out-of-memory"
)
ARTIFACT = re.compile(r"Test unit written to (\S+)")


def row(path: pathlib.Path, rc_path: pathlib.Path) -> dict[str, str]:
    text = path.read_text(errors="replace") if path.exists() else ""
    cov = ft = "?"
    stats: dict[str, int] = {}
    findings = 0
    artifacts: list[str] = []
    for line in text.splitlines():
        m = STATUS.match(line)
        if m:
            cov, ft = m.group(2), m.group(3)
        m = STAT.match(line)
        if m:
            stats[m.group(1)] = int(m.group(2))
        if FINDING.search(line):
            findings += 1
        a = ARTIFACT.search(line)
        if a:
            artifacts.append(a.group(1))
    rc = rc_path.read_text().strip() if rc_path.exists() else "?"
    crashed = rc != "0" or findings > 0 or "number_of_executed_units" not in stats
    return {
        "execs": str(stats.get("number_of_executed_units", "?")),
        "exec/s": str(stats.get("average_exec_per_sec", "?")),
        "cov": cov,
        "ft": ft,
        "rss MB": str(stats.get("peak_rss_mb", "?")),
        "crashes": (f"YES rc={rc} " + " ".join(artifacts)).strip() if crashed else "0",
    }


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    out_dir = pathlib.Path(argv[0])
    cols = ["target", "execs", "exec/s", "cov", "ft", "rss MB", "crashes"]
    rows = []
    for t in argv[1:]:
        r = row(out_dir / f"{t}.log", out_dir / f"{t}.rc")
        r["target"] = t
        rows.append(r)
    width = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(width[c]) for c in cols).rstrip()]
    lines.append("  ".join("-" * width[c] for c in cols))
    lines += ["  ".join(r[c].ljust(width[c]) for c in cols).rstrip() for r in rows]
    table = "\n".join(lines) + "\n"
    print(table, end="")
    (out_dir / "summary.txt").write_text(table)
    return 1 if any(r["crashes"] != "0" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
