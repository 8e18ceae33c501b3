"""The packet_trace fixture as another project uses it: a failing test's
report shows where its packets stopped and names a pcapng file that tshark
reads; --spanza-trace traces every test."""

from __future__ import annotations

import os
import re
import textwrap

from tests.support import run_python

USER_TESTS = """
import pytest

@pytest.mark.parametrize("peer_pair", ["gateway"], indirect=True)
def test_blocked(peer_pair, packet_trace):
    a, b = peer_pair.a, peer_pair.b
    a.device.add_peer(b.public_key, allowed_ips=["10.9.9.9/32"])  # a wrong allowed IP
    b.device.ping("192.168.4.1", timeout=0.5)

def test_passes_untraced(make_peer):
    assert True
"""


def run(tmp_path, *args):
    (tmp_path / "test_user.py").write_text(textwrap.dedent(USER_TESTS))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    r = run_python("-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", *args, str(tmp_path), cwd=tmp_path, env=env)
    return r.stdout + r.stderr


def test_a_failing_test_reports_where_its_packets_stopped(tmp_path):
    out = run(tmp_path)
    assert "1 failed, 1 passed" in out, out
    assert "spanza packet trace" in out, out
    assert "DROPPED at 192.168.4.1/wg wg: source_not_allowed" in out, out
    m = re.search(r"pcapng: (\S+\.pcapng)", out)
    assert m and os.path.getsize(m.group(1)) > 0, out


def test_the_option_traces_every_test(tmp_path):
    out = run(tmp_path, "--spanza-trace")
    assert "1 failed, 1 passed" in out, out
    assert out.count("spanza packet trace") == 1, out  # only the failing test's report
