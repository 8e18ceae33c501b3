"""`spanza demo --pcapng`: the main scenario, traced, into a file tshark reads."""

import subprocess

from tests.support import run_python


def test_demo_writes_a_decryptable_pcapng(tmp_path):
    out = tmp_path / "demo.pcapng"
    r = run_python("-m", "spanza", "demo", "--pcapng", str(out), cwd=tmp_path)
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
