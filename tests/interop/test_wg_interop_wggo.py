"""The core against Debian's wireguard-go (a real, independent peer) over
UDP on loopback inside a network namespace the test creates."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from spanza.keys import PrivateKey

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("wireguard-go") is None, reason="wireguard-go not installed"),
    pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/net/tun"), reason="needs root and TUN"),
]

HERE = os.path.dirname(os.path.abspath(__file__))


def sh(*cmd, ns=None, check=True, **kw):
    if ns:
        cmd = ("ip", "netns", "exec", ns, *cmd)
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=30, **kw)


@pytest.fixture
def netns():
    name = f"spz-{os.getpid()}-wgc"
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "link", "set", "lo", "up", ns=name)
        yield name
    finally:
        sh("ip", "netns", "del", name, check=False)


def test_handshake_and_ping_both_directions(netns, tmp_path):
    ifname = f"spzc{os.getpid() % 100000}"
    go_key, our_key = PrivateKey.generate(), PrivateKey.generate()
    (tmp_path / "go.key").write_text(str(go_key))
    env = dict(os.environ, WG_PROCESS_FOREGROUND="1", LOG_LEVEL="error")
    go = subprocess.Popen(
        ["ip", "netns", "exec", netns, "wireguard-go", "-f", ifname],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        sock = f"/var/run/wireguard/{ifname}.sock"
        for _ in range(100):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        sh(
            "wg",
            "set",
            ifname,
            "private-key",
            str(tmp_path / "go.key"),
            "listen-port",
            "51820",
            "peer",
            str(our_key.public_key),
            "allowed-ips",
            "10.9.0.2/32",
            "endpoint",
            "127.0.0.1:51821",
            ns=netns,
        )
        sh("ip", "addr", "add", "10.9.0.1/24", "dev", ifname, ns=netns)
        sh("ip", "link", "set", ifname, "up", ns=netns)
        r = sh(
            sys.executable,
            os.path.join(HERE, "wg_gopeer.py"),
            str(our_key),
            str(go_key.public_key),
            ifname,
            ns=netns,
            check=False,
            env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
        )
        assert r.returncode == 0, r.stderr
        res = json.loads(r.stdout.strip().splitlines()[-1])
        # wireguard-go initiated, we responded; its ping came through and our answer went back.
        assert res["handshakes_after_ping"] == 1 and res["answered_ping"] and res["ping_rc"] == 0, res
        # We initiated a second session; our ping got its kernel's echo reply.
        assert res["echo_reply"] and res["handshakes"] == 2, res
        assert not res["drops"], res
        assert res["go_rx_bytes"] > 0
    finally:
        go.terminate()
        go.wait(10)
