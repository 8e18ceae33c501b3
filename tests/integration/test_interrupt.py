"""Ctrl-C (SIGINT) gets through every call that waits in C, and the object
still works afterwards.

Each case runs in a child process that blocks in the call; the test sends
it SIGINT and expects KeyboardInterrupt from the call (the child prints
when), then the child uses the object again. Without waiting in slices a
call ignores SIGINT until its timeout (30 s here, or for ever). The latency
is printed (run with -s); the goal is under 100 ms, asserted loosely here
because the machine is shared (timing goals belong in benchmarks).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# A relay that accepts TCP and never answers: a wait for it blocks (a refused
# port would not: the wait fails at once, saying why). SILENT_RELAY is the
# child's variable for it.
DEAD_RELAY = "SILENT_RELAY"

TEMPLATE = """
import socket, sys, threading, time
import spanza
from spanza.scenario import Peer
from tests.support import wait_for
_silent = socket.socket()
_silent.bind(("127.0.0.1", 0))
_silent.listen(16)
SILENT_RELAY = "http://127.0.0.1:%d/derp" % _silent.getsockname()[1]

def _ready_once_inside(line, main=threading.get_ident()):
    # "ready" once the main thread is inside the call on `line` (the
    # script's frame is on that line, with a frame of the call above it)
    def inside():
        f = sys._current_frames().get(main)
        if f is None or f.f_back is None:
            return False
        while f.f_back is not None:
            f = f.f_back
        return f.f_lineno == line
    wait_for(inside, timeout=60, what="the call", interval=0.005)
    print("ready", flush=True)

{setup}
threading.Thread(target=_ready_once_inside, args=(sys._getframe().f_lineno + 2,), daemon=True).start()
try:
    {call}
except KeyboardInterrupt:
    print("interrupted", time.monotonic(), flush=True)
else:
    print("returned", flush=True)
    sys.exit(1)
{after}
print("ok", flush=True)
"""

CASES = {
    "Device.read_packet(None)": (
        "d = spanza.Device(listen_port=0)",
        "d.read_packet(timeout=None)",
        "try:\n    d.read_packet(timeout=0)\nexcept TimeoutError:\n    pass\nd.stats()\nd.close()",
    ),
    "Device.read_packet(30)": (
        "d = spanza.Device(listen_port=0)",
        "d.read_packet(timeout=30)",
        "d.add_peer(spanza.PrivateKey.generate().public_key, allowed_ips=['10.0.0.2/32'])\n"
        "assert len(d.peers) == 1\nd.close()",
    ),
    "Gateway.wait_connected": (
        f"g = spanza.Gateway({DEAD_RELAY}, spanza.PrivateKey.generate())",
        "g.wait_connected(timeout=30)",
        "g.stats()\ng.close()",
    ),
    "Peer.wait_relay(gateway)": (
        f"p = Peer({DEAD_RELAY}, '10.91.0.1/24', mode='gateway')",
        "p.wait_relay(timeout=30)",
        "p.stats()\np.close()",
    ),
    "Peer.wait_relay(transport)": (
        f"p = Peer({DEAD_RELAY}, '10.91.1.1/24', mode='transport')",
        "p.wait_relay(timeout=30)",
        "p.stats()\np.close()",
    ),
    "DerpClient.wait_connected": (
        f"c = spanza.DerpClient({DEAD_RELAY}, spanza.PrivateKey.generate())",
        "c.wait_connected(timeout=None)",
        "c.stats()\nc.close()",
    ),
    "DerpClient.recv": (
        "r = spanza.DerpServer()\nc = spanza.DerpClient(r.url, spanza.PrivateKey.generate())\nc.wait_connected(10)",
        "c.recv(timeout=None)",
        "c.send(c.public_key, b'x')\nassert c.recv(5)[1] == b'x'\nc.close()\nr.close()",
    ),
    "DerpClient.next_event": (
        "r = spanza.DerpServer()\nc = spanza.DerpClient(r.url, spanza.PrivateKey.generate())\n"
        "c.wait_connected(10)\nc.events()",
        "c.next_event(timeout=None)",
        "c.ping(5)\nc.close()\nr.close()",
    ),
    "DerpClient.ping": (
        "import threading\nsys.path.insert(0, 'tests/integration')\nfrom derp_fake_server import FakeServer\n"
        "def deaf(conn):\n    conn.handshake()\n    threading.Event().wait(60)\n"
        "srv = FakeServer([deaf]).__enter__()\n"
        "c = spanza.DerpClient(srv.url, spanza.PrivateKey.generate(), ping_timeout_ms=60000)\n"
        "c.wait_connected(10)",
        "c.ping(timeout=30)",
        "assert c.stats()['pings_sent'] == 1\nc.close()",
    ),
    "Host.connect": (
        "d = spanza.Device(listen_port=0, address='10.91.2.1/24')\n"
        "d.add_peer(spanza.PrivateKey.generate().public_key, endpoint='127.0.0.1:9',"
        " allowed_ips=['10.91.2.2/32'])",
        "d.connect(('10.91.2.2', 80), timeout=None)",
        "d.stats()\nd.close()",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_sigint_interrupts_a_blocking_call(case: str) -> None:
    setup, call, after = CASES[case]
    script = TEMPLATE.format(setup=setup, call=call, after=after)
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.strip() == "ready", child.communicate(timeout=10)[1]
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=10)
    finally:
        child.kill()
    lines = out.split("\n")
    assert lines[0].startswith("interrupted"), (out, err)
    latency = float(lines[0].split()[1]) - sent
    print(f"{case}: KeyboardInterrupt {latency * 1000:.0f} ms after SIGINT")
    assert latency < 1.0, f"{case}: KeyboardInterrupt took {latency:.3f} s"
    assert lines[1] == "ok" and child.returncode == 0, (out, err)
