"""Spanza against the Go stack, side by side, through the same relays.

    .venv/bin/python bench/e2e/race.py [--mib 64] [--runs 3] [--relay spanza,derper]
        [--transport tls,plain] [--mode gateway] [--loss 0.01,0.05,0.10] [--delay-ms 20]
        [--loss-mib 8] [--png race.png]

The Go reference (bench/goref, built by `make goref` into .cache/go/bin:
wireguard-go + its gVisor netstack + Tailscale's derphttp) and Spanza (the
mode given: gateway or transport) each GET --mib MiB over HTTP between two
peers through a fresh relay of each kind: Spanza's own and Tailscale's
derper, over TLS and plain HTTP; then, through Spanza's relay over TLS, with
each --loss (random loss, seed 1) and --delay-ms on what the serving peer
sends to the relay: Spanza's `Peer.impair(direction="out")`, goref's
-loss/-delay (a wrapping conn.Bind with a seeded PRNG and a delay line);
these move --loss-mib MiB (both stacks manage well under 1 MB/s at 5 %).
Runs are interleaved; prints each run,
then medians, Spanza / Go ratios and the longest read stall of each, and
writes a PNG chart of goodput per case when matplotlib is importable.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import stalls

GOREF = Path(os.environ.get("SPANZA_GOREF", HERE.parents[1] / ".cache" / "go" / "bin" / "goref"))
SEED = 1


def go_run(url: str, tls: bool, mib: int, loss: float | None = None, delay_ms: float = 0) -> dict[str, float]:
    args = [str(GOREF), "-url", url, "-mib", str(mib)] + (["-insecure"] if tls else [])
    if loss is not None:
        args += ["-loss", str(loss), "-delay", f"{delay_ms}ms", "-seed", str(SEED)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=600, check=False)
    if out.returncode:
        raise RuntimeError(f"goref failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def relay_run(relay: str, tls: bool, fn) -> dict[str, float]:
    """fn(url) with a fresh relay of that kind; adds derper's drops."""
    if relay == "spanza":
        with stalls.spanza.DerpServer(tls=tls, hostname="127.0.0.1") as server:
            r = fn(server.url)
        r["drops"] = 0
        return r
    from gohelpers import Derper

    with Derper(tls=tls) as d:
        r = fn(d.url)
        r["drops"] = stalls.derper_drops(d.url)
    return r


def case_name(relay: str, tls: bool, loss: float | None, delay_ms: float) -> str:
    name = f"{relay}/{'tls' if tls else 'plain'}"
    return name if loss is None else f"{name} {loss:.0%}+{delay_ms:.0f}ms"


def chart(path: str, rows: list[tuple[str, float, float]]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not importable: no chart)")
        return
    labels = [r[0] for r in rows]
    x = range(len(rows))
    fig, ax = plt.subplots(figsize=(1.8 * len(rows) + 2, 4))
    ax.bar([i - 0.2 for i in x], [r[1] for r in rows], 0.4, label="Spanza")
    ax.bar(
        [i + 0.2 for i in x],
        [r[2] for r in rows],
        0.4,
        label="Go (wireguard-go + gVisor + derphttp)",
    )
    ax.set_xticks(list(x), labels)
    ax.set_ylabel("goodput, MB/s (median)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    print(f"chart: {path}")


def main() -> int:
    ap = stalls.case_args(__doc__)
    ap.add_argument("--mode", default="gateway", choices=["gateway", "transport"])
    ap.add_argument("--png", default="build/race.png")
    ap.add_argument(
        "--loss",
        default="0.01,0.05,0.10",
        help="impaired cases (Spanza's relay, TLS): random loss of each, '' for none",
    )
    ap.add_argument("--delay-ms", type=float, default=20.0, help="delay of the impaired cases")
    ap.add_argument("--loss-mib", type=int, default=8, help="MiB moved in the impaired cases")
    args = ap.parse_args()
    if not GOREF.exists():
        print(f"{GOREF} is missing: run `make goref`", file=sys.stderr)
        return 2
    body = os.urandom(stalls.MiB) * args.mib
    want = stalls.hashlib.sha256(body).hexdigest()
    small = body[: args.loss_mib * stalls.MiB]
    want_small = stalls.hashlib.sha256(small).hexdigest()
    cases: list[tuple[str, bool, float | None]] = [
        (r, t == "tls", None) for r in args.relay.split(",") for t in args.transport.split(",")
    ]
    cases += [("spanza", True, float(x)) for x in args.loss.split(",") if x]
    la = os.getloadavg()
    print(
        f"GET of {args.mib} MiB ({args.loss_mib} MiB impaired), Spanza ({args.mode}) vs Go, "
        f"{args.runs} interleaved runs, {os.cpu_count()} cores; load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}"
    )
    res: dict[tuple, dict[str, list]] = {c: {"spanza": [], "go": []} for c in cases}
    for i in range(args.runs):
        for relay, tls, loss in cases:
            name = case_name(relay, tls, loss, args.delay_ms)
            imp = None if loss is None else {"loss": loss, "delay": args.delay_ms / 1e3, "seed": SEED}
            for who in ("spanza", "go"):
                if who == "spanza":

                    def fn(url, tls=tls, imp=imp):
                        b, w = (body, want) if imp is None else (small, want_small)
                        mbs, stall = stalls.run_peers(url, tls, args.mode, b, w, impair=imp)
                        return {"MB/s": mbs, "stall_ms": stall * 1e3}
                else:

                    def fn(url, tls=tls, loss=loss):
                        return go_run(url, tls, args.mib if loss is None else args.loss_mib, loss, args.delay_ms)

                r = relay_run(relay, tls, fn)
                res[(relay, tls, loss)][who].append(r)
                print(
                    f"  run {i + 1} {name:22s} {who:6s}: {r['MB/s']:7.2f} MB/s, longest stall "
                    f"{r['stall_ms']:7.1f} ms, relay drops {r['drops']}",
                    flush=True,
                )
    print("medians (Spanza / Go):")
    rows = []
    for (relay, tls, loss), rr in res.items():
        name = case_name(relay, tls, loss, args.delay_ms)
        s = statistics.median(r["MB/s"] for r in rr["spanza"])
        g = statistics.median(r["MB/s"] for r in rr["go"])
        ss = statistics.median(r["stall_ms"] for r in rr["spanza"])
        gs = statistics.median(r["stall_ms"] for r in rr["go"])
        rows.append((name, s, g))
        print(
            f"  {name:22s}: Spanza {s:7.2f} MB/s (stall {ss:6.1f} ms), Go {g:7.2f} MB/s "
            f"(stall {gs:6.1f} ms), ratio {s / g:5.2f}"
        )
    la = os.getloadavg()
    print(f"load average at the end {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}")
    if args.png:
        Path(args.png).parent.mkdir(parents=True, exist_ok=True)
        chart(args.png, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
