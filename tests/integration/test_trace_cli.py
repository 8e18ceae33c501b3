"""`spanza demo --pcapng`: the main scenario, traced, into a file tshark reads."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_demo_writes_a_decryptable_pcapng(tmp_path):
    out = tmp_path / "demo.pcapng"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run(
        [sys.executable, "-m", "spanza", "demo", "--pcapng", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "(0 did not arrive)" in r.stdout and str(out) in r.stdout, r.stdout
    from spanza import trace

    p = subprocess.run(
        trace.tshark_command(out)
        + [
            "-Y",
            'wg.type == 4 && http.request.method == "GET"',
            "-T",
            "fields",
            "-e",
            "frame.interface_name",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "relay/relay-in" in p.stdout.split(), p.stdout + p.stderr
