"""What `spanza demo` imports before its response (cold start, see
bench/cold_start.py): the standard library's HTTP and email packages,
ssl, logging, typing, dataclasses, argparse, socket and ipaddress are left
for the uses that need them.
A subprocess each, so that what this test process imported does not count."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Each costs milliseconds of a cold start that does not use it.
HEAVY = (
    "argparse",
    "shutil",
    "locale",
    "http.client",
    "http.server",
    "email",
    "ssl",
    "socketserver",
    "logging",
    "typing",
    "dataclasses",
    "inspect",
    "json",
    "datetime",
    "html",
    "re",
    "urllib",
    "socket",
    "ipaddress",
    "enum",
    "selectors",
)

_IMPORTS = "import spanza.cli, spanza.demo"

# Runs `spanza demo` in-process and notes the modules loaded when its GET returned.
_DEMO = """
import sys
from spanza import cli, scenario
seen = {}
get = scenario.Peer.http_get
def http_get(self, *args, **kwargs):
    r = get(self, *args, **kwargs)
    seen.update(sys.modules)
    return r
scenario.Peer.http_get = http_get
assert cli.main(["demo"]) == 0
"""


def _loaded(code: str) -> set[str]:
    # The list is taken before the probe's own import of json.
    probe = (
        code
        + "\nimport sys as _s\n_m = sorted(globals().get('seen') or _s.modules)\nimport json as _j\nprint(_j.dumps(_m))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True).stdout
    return set(json.loads(out.splitlines()[-1]))


def _heavy(mods: set[str]) -> list[str]:
    return sorted(m for m in mods if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_the_demo_imports_nothing_heavy():
    assert _heavy(_loaded(_IMPORTS)) == []


def test_the_demo_up_to_its_response_imports_nothing_heavy():
    assert _heavy(_loaded(_DEMO)) == []


def test_the_whole_demo_imports_nothing_heavy_but_datetime():
    # Its counters too (Peer.stats without PeerInfo's dataclass); datetime
    # for the handshake times.
    assert _heavy(_loaded("from spanza import cli\nassert cli.main(['demo']) == 0")) == ["datetime"]


def test_the_spanza_command_imports_nothing_heavy_but_datetime():
    # bin/spanza as pip installs it, run whole: a console_scripts launcher
    # would import re (and enum) before the demo even starts.
    script = Path(__file__).resolve().parents[2] / "bin" / "spanza"
    r = subprocess.run(
        [sys.executable, "-X", "importtime", str(script), "demo"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok: response" in r.stdout
    mods = {line.rsplit("|", 1)[1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert "spanza.demo" in mods
    assert _heavy(mods) == ["datetime"]


@pytest.mark.parametrize(
    "code, needs",
    [
        ("from spanza.device import PeerInfo", "dataclasses"),
        ("from spanza.web import Response", "dataclasses"),
        ("from spanza.netstack import HTTPConnection", "http.client"),
        ("from spanza.netstack import Link", "typing"),
        ("import spanza.impair", "dataclasses"),
    ],
)
def test_names_moved_out_still_import(code, needs):
    assert needs in _loaded(code)


def test_bare_demo_skips_the_parser_with_its_defaults(monkeypatch):
    # `spanza demo` alone runs without argparse (main_bare); it must get
    # exactly the namespace the parser gives.
    from spanza import cli, demo

    parsed = vars(cli.build_parser("demo").parse_args(["demo"]))
    got: list[dict[str, object]] = []
    monkeypatch.setattr(demo, "_demo_main", lambda args: got.append(vars(args)) or 0)
    assert cli.main(["demo"]) == 0
    parsed["func"] = demo._demo_main  # the patched one, as main_bare looks it up now
    assert got == [parsed]


@pytest.mark.parametrize(
    "module, names",
    [
        ("spanza.web", ["Response", "Headers"]),
        ("spanza.device", ["PeerInfo"]),
        ("spanza.netstack", ["Link", "HTTPConnection"]),
    ],
)
def test_names_moved_out_are_listed(module, names):
    # dir() drives tab completion in a notebook and help(): loaded on first
    # use, the names are still there.
    import importlib

    assert set(names) <= set(dir(importlib.import_module(module)))
