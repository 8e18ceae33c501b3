"""`spanza scenario FILE.py` runs examples/relay_failover.py and prints its
report: both transfers intact, the peers moved to the surviving node."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.support import ROOT, run_python


def run_scenario(*args: str) -> subprocess.CompletedProcess[str]:
    return run_python("-m", "spanza", "scenario", *args, cwd=ROOT)


@pytest.mark.parametrize("mode", ["gateway", "transport"])
def test_relay_failover_example_report(mode):
    script = os.path.join(ROOT, "examples", "relay_failover.py")
    if not os.path.exists(script):
        pytest.skip("examples/ is not part of this tree (the `make asan` copy)")
    p = run_scenario(script, mode)
    out = p.stdout
    assert p.returncode == 0, out + p.stderr
    assert "homes before: [1, 1]" in out and "homes after: [0, 2]" in out
    assert (
        len(
            re.findall(
                r"transfer (before|after) failover: 524288 of 524288 bytes .* sha256 ok",
                out,
            )
        )
        == 2
    )
    lost = re.search(r"impairment on A's relay link: (\d+) packets, (\d+) lost", out)
    assert lost and int(lost.group(2)) > 0
    assert "result: PASS" in out
    # the CLI's own report of the network the script built
    assert re.search(r"== scenario .*relay_failover.py: ok", out)
    assert f"network: 2 peers ({mode}), 2 relays (spanza)" in out
    assert re.search(r"relay 900a .* down", out) and re.search(r"relay 900b .* up, home of 2 peers", out)


def test_failing_scenario_exits_1_with_the_traceback(tmp_path):
    f = tmp_path / "bad.py"
    f.write_text(
        "from spanza.network import Network\n"
        "with Network(peers=1) as net:\n"
        "    raise ValueError('the question was wrong')\n"
    )
    p = run_scenario(str(f))
    assert p.returncode == 1
    assert "failed:" in p.stdout and "the question was wrong" in p.stdout
    assert "network: 1 peers (gateway), 1 relays (spanza)" in p.stdout
