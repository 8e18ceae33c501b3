"""`spanza scenario FILE.py`: runs a scenario script, then prints a report
of every `spanza.network.Network` it built (relays, peers, impairments and
their counters, transfers with goodput and sha256 checks)."""

from __future__ import annotations

import argparse
import runpy
import sys
import time
import traceback


def add_scenario_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    s = sub.add_parser(
        "scenario",
        help="run a scenario script (Python) and print a report",
        description=(
            "Runs FILE (a Python script using spanza.scenario / spanza.network) as __main__, "
            "with ARGS as its sys.argv[1:], then prints a report of every Network it built. "
            "Exit status 0 if the script ran to its end, 1 if it raised."
        ),
    )
    s.add_argument("file", metavar="FILE.py")
    s.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS")
    s.set_defaults(func=cmd_scenario)


def cmd_scenario(args: argparse.Namespace) -> int:
    from spanza import network

    reports: list[str] = []
    network._reports = reports
    old_argv = sys.argv
    sys.argv = [args.file, *args.args]
    t0 = time.monotonic()
    status = "ok"
    try:
        runpy.run_path(args.file, run_name="__main__")
    except SystemExit as e:
        if e.code not in (None, 0):
            status = f"exited with {e.code}"
    except Exception:
        status = "failed:\n" + traceback.format_exc()
    finally:
        sys.argv = old_argv
        network._reports = None
    print(f"\n== scenario {args.file}: {status} ({time.monotonic() - t0:.1f} s)")
    for r in reports:
        print(r)
    return 0 if status == "ok" else 1
