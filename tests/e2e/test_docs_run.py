"""The README's Python blocks (the quick start, the packet-flow capture,
the scenario, the pytest example) and every script under examples/ run as
a new user would run them (a fresh process); every notebook under
examples/ has a test that executes it."""

from __future__ import annotations

import re

import pytest

from tests.support import ROOT, run_python

EXAMPLES = sorted((ROOT / "examples").glob("*.py")) if (ROOT / "examples").is_dir() else []
NOTEBOOKS = sorted((ROOT / "examples").glob("*.ipynb")) if (ROOT / "examples").is_dir() else []
# What the README's "Packet flow" block continues from (the quick start's
# relay and peers, with a server to GET).
PACKET_FLOW_SETUP = """\
import spanza
from spanza.scenario import Peer, connect
relay = spanza.DerpServer()
a = Peer(relay.url, "192.168.4.1/24", mode="gateway")
b = Peer(relay.url, "192.168.4.2/24", mode="gateway")
a.serve_http(80, body=b"hello\\n")
"""


def _blocks(lang: str, section: str | None = None) -> list[str]:
    """The README's `lang` code blocks (of the `## section` only, if given)."""
    readme = ROOT / "README.md"
    if not readme.is_file():
        pytest.skip("README.md is not part of this tree (the `make asan` copy)")
    text = readme.read_text()
    if section is not None:
        parts = re.split(r"^## ", text, flags=re.MULTILINE)
        text = "".join(p for p in parts if p.split("\n", 1)[0].strip() == section)
        assert text, f"README.md has no ## {section} section"
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.DOTALL)


def test_readme_quick_start_runs_and_prints_what_it_says(tmp_path):
    (quick,) = [b for b in _blocks("python", "Python") if "def test_" not in b]
    script = tmp_path / "quick_start.py"
    script.write_text(quick)
    p = run_python(str(script), cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    # each "# comment" after a print is the output the README promises
    promised = [m.strip() for m in re.findall(r"print\(.*\)\s+#\s*(.*)", quick)]
    assert promised and p.stdout.splitlines() == promised


def test_readme_packet_flow_block_captures_and_writes_a_pcapng(tmp_path):
    for mod in ("matplotlib", "pandas"):
        pytest.importorskip(mod, reason="the notebook extras (requirements-dev.txt) are not installed")
    (block,) = _blocks("python", "Packet flow")
    script = tmp_path / "packet_flow.py"
    script.write_text(PACKET_FLOW_SETUP + block)
    p = run_python(str(script), cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    # the journeys it prints: the GET crossed the relay, hop by hop
    assert "relay-in" in p.stdout and "wg-encrypt" in p.stdout, p.stdout
    pcap = (tmp_path / "flow.pcapng").read_bytes()
    assert pcap[:4] == b"\x0a\x0d\x0d\x0a" and len(pcap) > 1000  # a pcapng section header, and records


def test_readme_scenario_block_runs(tmp_path):
    (block,) = _blocks("python", 'Scenarios: "what happens if…"')
    script = tmp_path / "scenario.py"
    script.write_text(block)
    p = run_python(str(script), cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    first, dropped, after_kill = p.stdout.splitlines()
    # both transfers complete and check out; the impairment dropped packets
    assert re.fullmatch(r"1048576 of 1048576 bytes in .* sha256 ok", first), first
    assert re.fullmatch(r"1048576 of 1048576 bytes in .* sha256 ok", after_kill), after_kill
    assert int(dropped) > 0


def test_every_notebook_is_run_by_a_test():
    tests = "".join(f.read_text() for f in (ROOT / "tests" / "e2e").glob("test_*.py"))
    missing = [nb.name for nb in NOTEBOOKS if f'"{nb.name}"' not in tests]
    assert NOTEBOOKS and not missing, f"notebooks no test executes: {missing}"


def test_readme_pytest_example_passes(tmp_path):
    (tests,) = [b for b in _blocks("python", "pytest") if "def test_" in b]
    (tmp_path / "test_readme.py").write_text(tests.replace("    ...\n", "    assert a.mode == 'gateway'\n"))
    p = run_python("-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path), cwd=tmp_path, timeout=300)
    assert p.returncode == 0 and "3 passed" in p.stdout, p.stdout + p.stderr


@pytest.mark.parametrize("script", EXAMPLES, ids=[s.name for s in EXAMPLES])
def test_example_runs(script):
    p = run_python(str(script))
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip(), "an example says what it did"
