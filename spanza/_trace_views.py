"""Views of a capture for people and notebooks: the summary table and the
sequence diagram (matplotlib, optional). See spanza.trace."""

from __future__ import annotations

import base64
import io
import itertools
import os
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any

from spanza._trace_record import KEYS, _order

if TYPE_CHECKING:
    from spanza.trace import Capture

LONG_WAIT_NS = 10_000_000  # diagrams label a hop that took longer


def _percentile(sorted_vals: list[float], q: float) -> float:
    if not sorted_vals:
        return 0.0
    i = min(len(sorted_vals) - 1, max(0, round(q * (len(sorted_vals) - 1))))
    return sorted_vals[i]


class Summary:
    """Per hop counts, bytes and drops; journey outcomes and latency
    percentiles (``str()`` for a table, ``.data`` for numbers)."""

    def __init__(self, cap: Capture) -> None:
        recs = cap.records()
        per: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        drops: Counter[tuple[str, str, str]] = Counter()
        for r in recs:
            if r.hop == KEYS:
                continue
            if r.dropped:
                drops[(r.label, r.hop_name, r.reason_name)] += r.counter if (not r.data and r.counter) else 1
                continue
            e = per[(r.label, r.hop_name)]
            e[0] += 1
            e[1] += r.length
        js = cap.journeys()
        delivered = sorted(j.duration_ms for j in js if j.status == "delivered")
        transit: dict[tuple[str, str], list[float]] = defaultdict(list)
        for j in js:
            for a, b in itertools.pairwise(j.records):
                transit[(a.hop_name, b.hop_name)].append((b.t_ns - a.t_ns) / 1e6)
        self.data: dict[str, Any] = {
            "hops": {f"{k[0]} {k[1]}": {"packets": v[0], "bytes": v[1]} for k, v in per.items()},
            "drops": {f"{k[0]} {k[1]} {k[2]}": n for k, n in drops.items()},
            "journeys": dict(Counter(j.status for j in js)),
            "latency_ms": {
                q: _percentile(delivered, p) for q, p in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))
            },
            "transit_ms": {
                f"{a} -> {b}": {
                    "n": len(v),
                    "p50": _percentile(sorted(v), 0.5),
                    "p99": _percentile(sorted(v), 0.99),
                }
                for (a, b), v in transit.items()
            },
            "overflow": cap.overflow,
            "records": len(recs),
        }

    def __getitem__(self, k: str) -> Any:
        return self.data[k]

    def __str__(self) -> str:
        d = self.data
        out = io.StringIO()
        out.write(
            f"{d['records']} records, overflow {d['overflow']}; journeys: "
            + ", ".join(f"{n} {s}" for s, n in sorted(d["journeys"].items()))
            + "\n"
        )
        lat = d["latency_ms"]
        out.write("delivery latency ms: " + " ".join(f"{k}={v:.3f}" for k, v in lat.items()) + "\n")
        out.write(f"{'object hop':<44}{'packets':>9}{'bytes':>12}\n")
        for k, v in d["hops"].items():
            out.write(f"{k:<44}{v['packets']:>9}{v['bytes']:>12}\n")
        if d["drops"]:
            out.write("drops:\n")
            for k, n in d["drops"].items():
                out.write(f"  {k}: {n}\n")
        return out.getvalue()

    def _repr_html_(self) -> str:
        import html

        return f"<pre>{html.escape(str(self))}</pre>"

    __repr__ = __str__


# ---- sequence diagram ----


class Diagram:
    """A sequence diagram of the journeys (matplotlib): ``_repr_png_`` and
    ``_repr_html_`` show it in a notebook; `save` writes PNG or SVG."""

    def __init__(self, cap: Capture, max_journeys: int) -> None:
        try:
            import matplotlib

            matplotlib.use("Agg", force=False)
        except ImportError:
            raise ImportError("Capture.sequence_diagram needs matplotlib (pip install matplotlib)") from None
        self.journeys = cap.journeys()[:max_journeys]
        lanes: dict[str, tuple[int, int]] = {}
        order = cap.lane_order()
        for j in self.journeys:
            for r in j.records + ([j.drop] if j.drop else []):
                if r.label not in lanes:
                    lanes[r.label] = (order.get(r.obj, 9), len(lanes))

        # Lanes by the side they are on (the address in the label), then
        # by layer: host, wg, gateway, derp; the relay in the middle.
        def lane_key(label: str) -> tuple[int, int, str]:
            layer, first = lanes[label]
            side = label.split("/")[0]
            return (
                0 if layer < 4 else 1,
                first if layer >= 4 else 0,
                side + f"{layer}",
            )

        names = sorted(lanes, key=lane_key)
        relay = [n for n in names if lanes[n][0] >= 4]
        sides = [n for n in names if lanes[n][0] < 4]
        left = [n for n in sides if n.split("/")[0] == sides[0].split("/")[0]] if sides else []
        right = [n for n in sides if n not in left]
        right.sort(key=lambda n: -lanes[n][0])
        self.lanes = left + relay + right
        self._fig: Any = None

    def figure(self) -> Any:
        """The matplotlib figure. Time runs down in event order (one row
        per record, so fast hops stay readable); long waits are labelled."""
        if self._fig is not None:
            return self._fig
        import matplotlib.pyplot as plt

        x = {n: i for i, n in enumerate(self.lanes)}
        recs = sorted(
            (r for j in self.journeys for r in j.records + ([j.drop] if j.drop else []) if r.label in x),
            key=_order,
        )
        row = {r.seq: i for i, r in enumerate(recs)}
        t0 = recs[0].t_ns if recs else 0
        fig, ax = plt.subplots(figsize=(max(6.0, 1.5 * len(self.lanes)), max(4.0, 0.12 * len(recs) + 2)))
        for i in x.values():
            ax.axvline(i, color="#bbbbbb", lw=1)
        colors = plt.get_cmap("tab10")
        for j in self.journeys:
            c = colors(j.id % 10)
            pts = [(x[r.label], row[r.seq], r.t_ns) for r in j.records if r.label in x]
            for (x0, y0, t0_), (x1, y1, t1_) in itertools.pairwise(pts):
                if x0 == x1:
                    ax.plot([x0, x1], [y0, y1], color=c, lw=1)
                else:
                    ax.annotate(
                        "",
                        xy=(x1, y1),
                        xytext=(x0, y0),
                        arrowprops={"arrowstyle": "->", "color": c, "lw": 1},
                    )
                if t1_ - t0_ >= LONG_WAIT_NS:
                    ax.annotate(
                        f"waited {(t1_ - t0_) / 1e6:.0f} ms",
                        ((x0 + x1) / 2, (y0 + y1) / 2),
                        color=c,
                        fontsize=7,
                        xytext=(4, 0),
                        textcoords="offset points",
                    )
            if j.drop is not None and j.drop.label in x:
                ax.plot([x[j.drop.label]], [row[j.drop.seq]], "x", color="red", ms=10, mew=2)
                ax.annotate(
                    j.drop.reason_name,
                    (x[j.drop.label], row[j.drop.seq]),
                    color="red",
                    fontsize=7,
                    xytext=(4, 0),
                    textcoords="offset points",
                )
            elif j.status == "stopped" and pts:
                ax.plot([pts[-1][0]], [pts[-1][1]], "o", mfc="none", color="orange", ms=9)
        step = max(1, len(recs) // 12)
        ax.set_yticks(range(0, len(recs), step))
        ax.set_yticklabels(
            [f"{(recs[i].t_ns - t0) / 1e6:.3f}" for i in range(0, len(recs), step)],
            fontsize=7,
        )
        ax.set_xticks(range(len(self.lanes)))
        ax.set_xticklabels(self.lanes, rotation=30, ha="right", fontsize=8)
        ax.set_xlim(-0.5, len(self.lanes) - 0.5)
        ax.invert_yaxis()
        ax.set_ylabel("ms since the first record (rows in event order)")
        ax.set_title(f"{len(self.journeys)} packet journeys (x: dropped, o: stopped)")
        fig.tight_layout()
        self._fig = fig
        return fig

    def save(self, path: str | os.PathLike[str]) -> str:
        """PNG or SVG by the file name."""
        self.figure().savefig(os.fspath(path))
        return os.fspath(path)

    def _repr_png_(self) -> bytes:
        b = io.BytesIO()
        self.figure().savefig(b, format="png")
        return b.getvalue()

    def _repr_html_(self) -> str:
        return f'<img src="data:image/png;base64,{base64.b64encode(self._repr_png_()).decode()}"/>'
