"""examples/two_devices.py runs and shows both directions working."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_two_devices_example_runs():
    script = os.path.join(ROOT, "examples", "two_devices.py")
    if not os.path.exists(script):
        pytest.skip("examples/ is not part of this tree (the `make asan` copy)")
    p = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "A -> B: " in p.stdout and "B -> A: echo reply" in p.stdout and "IPv6 UDP" in p.stdout
    assert p.stdout.rstrip().endswith("ok")
