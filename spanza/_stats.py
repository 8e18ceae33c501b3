"""Counters as people read them: nested by component, zeros left out.

`readable(raw)` turns the flat counter dicts the C side reports into a
`Stats`: keys that share a prefix (``udp_rx_bytes``, ``drops_no_peer``)
become a group (``udp: {rx_bytes}``, ``drops: {no_peer}``), zeros and
empty groups are left out unless ``all=True``, datetimes become ISO 8601
strings and dataclasses dicts, so ``json.dumps`` takes the result. A
`Stats` renders as a table in a notebook and converts with `to_pandas()`
(pandas is optional and imported only then).
"""

from __future__ import annotations

import errno as _errno
import sys
from collections.abc import Iterator, Mapping

from spanza._diagnose import STATE_NAMES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Stats", "html_table", "readable"]

# Prefixes that name a group of counters when a flat key starts with them.
GROUPS = (
    "udp_",
    "drops_",
    "drop_",
    "queue_",
    "derp_",
    "wg_",
    "rx_",
    "tx_",
    "close_",
    "uapi_",
)


class Stats(dict[str, "Any"]):  # quoted: typing is imported for type checks only
    """A dict of counters (nested by component) with notebook helpers."""

    def flat(self, sep: str = ".") -> dict[str, Any]:
        """One level: ``{"device.udp.rx_bytes": 548, ...}``."""
        return dict(_flatten(self, "", sep))

    def to_pandas(self) -> Any:
        """A pandas Series indexed by the dotted counter names (needs pandas)."""
        try:
            import pandas as pd  # type: ignore[import-untyped]
        except ImportError:
            raise ImportError("to_pandas() needs pandas: pip install pandas") from None
        return pd.Series(self.flat(), name="value", dtype=object)

    def _repr_html_(self) -> str:
        return html_table(self.flat())


def _flatten(d: Mapping[str, Any], prefix: str, sep: str) -> Iterator[tuple[str, Any]]:
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            yield from _flatten(v, name + sep, sep)
        else:
            yield name, v


def html_table(rows: Mapping[str, Any], title: str | None = None) -> str:
    """A small two-column HTML table (for ``_repr_html_``)."""
    import html

    head = f"<caption style='text-align:left'><b>{html.escape(title)}</b></caption>" if title else ""
    body = "".join(
        f"<tr><td style='text-align:left'>{html.escape(str(k))}</td>"
        f"<td style='text-align:right'>{html.escape(str(v))}</td></tr>"
        for k, v in rows.items()
    )
    return f"<table>{head}{body}</table>"


def _plain(v: Any) -> Any:
    """A JSON-friendly value."""
    # A datetime or a dataclass instance exists only once its module was
    # imported: looked up, not imported here (cold start).
    dt = sys.modules.get("datetime")
    if dt is not None and isinstance(v, dt.datetime):
        return v.isoformat()
    dc = sys.modules.get("dataclasses")
    if dc is not None and dc.is_dataclass(v) and not isinstance(v, type):
        return {f.name: getattr(v, f.name) for f in dc.fields(v)}
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    if hasattr(v, "base64") and hasattr(v, "raw"):  # a key object
        return str(v.base64)
    return v


def _empty(v: Any) -> bool:
    return v is None or v == 0 or v == "" or v == [] or v == {} or v is False


def readable(raw: Mapping[str, Any], all: bool = False) -> Stats:
    """`raw` grouped by prefix, zeros left out unless `all` (see the module)."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        value = _plain(value)
        if isinstance(value, Mapping):
            value = readable(value, all)
        elif isinstance(value, list):
            value = [readable(_plain(x), all) if isinstance(_plain(x), Mapping) else _plain(x) for x in value]
        elif key == "state" and isinstance(value, int):
            value = STATE_NAMES.get(value, value)
        elif key == "last_errno" and isinstance(value, int) and value:
            value = _errno.errorcode.get(value, value)
        if not all and _empty(value):
            continue
        group = next((g for g in GROUPS if key.startswith(g) and len(key) > len(g)), None)
        if group is None:
            if isinstance(out.get(key), dict) and isinstance(value, Mapping):
                out[key].update(value)
            else:
                out[key] = value
            continue
        name = group.rstrip("_")
        name = "drops" if name == "drop" else name
        sub = out.setdefault(name, {})
        if not isinstance(sub, dict):  # a plain counter of that name came first: keep both
            sub = out.setdefault(name + "_", {})
        sub[key[len(group) :]] = value
    return Stats(out)
