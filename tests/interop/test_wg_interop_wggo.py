"""The core against Debian's wireguard-go (a real, independent peer) over
UDP on loopback inside a network namespace the test creates."""

import json
import os
import subprocess
import sys

import pytest

from spanza.keys import PrivateKey
from tests.interop.netns import NetNS, WgPeer, WireGuardGo, require_root

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not os.path.exists("/dev/net/tun"), reason="needs TUN (/dev/net/tun)"),
]

HERE = os.path.dirname(os.path.abspath(__file__))


def test_handshake_and_ping_both_directions():
    require_root("wireguard-go", "wg")
    go_key, our_key = PrivateKey.generate(), PrivateKey.generate()
    with NetNS() as ns, WireGuardGo(ns) as go:
        go.configure(
            str(go_key),
            51820,
            addresses=["10.9.0.1/24"],
            peers=[WgPeer(str(our_key.public_key), ["10.9.0.2/32"], "127.0.0.1:51821")],
        )
        r = subprocess.run(
            ns.cmd(sys.executable, os.path.join(HERE, "wg_gopeer.py"), str(our_key), str(go_key.public_key), go.ifname),
            capture_output=True,
            text=True,
            timeout=30,
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
