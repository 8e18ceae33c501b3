"""The pytest plugin as another project uses it: registered by the pytest11
entry point (no conftest), fixtures isolated and closed, C-thread errors
failing the test they happen in."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

USER_TESTS = """
import pytest
from spanza.runtime import default_runtime
from spanza._ffi import lib

def test_pair(peer_pair):
    peer_pair.a.serve_http(80, body=b"hi")
    assert peer_pair.b.http_get("http://192.168.4.1/") == (200, b"hi")

@pytest.mark.parametrize("peer_pair", ["gateway"], indirect=True)
def test_only_gateway(peer_pair):
    assert peer_pair.mode == "gateway" and peer_pair.a.gateway is not None

def test_make_peer_on_tls(make_peer, derp_server_tls):
    from spanza.scenario import connect
    a = make_peer("10.44.0.1/24", relay=derp_server_tls)
    b = make_peer("10.44.0.2/24", mode="gateway", relay=derp_server_tls)
    connect(a, b)
    assert b.device.ping("10.44.0.1", count=1, timeout=5)

def test_c_thread_error_fails_this_test():
    lib.rt_py_log_error(default_runtime().ptr, b"simulated fault")

@pytest.mark.spanza_allow_errors
def test_allowed_error():
    lib.rt_py_log_error(default_runtime().ptr, b"expected fault")

def test_after_the_error_still_passes():
    assert True
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one process", "xdist"])
def test_plugin_from_another_project(tmp_path, workers):
    if workers:
        pytest.importorskip("xdist")
    (tmp_path / "test_user.py").write_text(textwrap.dedent(USER_TESTS))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", *workers, str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    out = r.stdout + r.stderr
    assert "PASSED test_user.py::test_pair[gateway]" in out, out
    assert "PASSED test_user.py::test_pair[transport]" in out, out
    assert "PASSED test_user.py::test_only_gateway[gateway]" in out, out
    assert "PASSED test_user.py::test_make_peer_on_tls" in out, out
    assert "FAILED test_user.py::test_c_thread_error_fails_this_test" in out, out
    assert "simulated fault" in out, out
    assert "PASSED test_user.py::test_allowed_error" in out, out
    assert "PASSED test_user.py::test_after_the_error_still_passes" in out, out
    assert "1 failed, 6 passed" in out, out
