"""C log records reach `logging` by themselves, in any program: a script
that only calls logging.basicConfig sees the relay's loss (WARNING) and
return (INFO) as they happen; one logger per component; set_log_level."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time

import pytest

import spanza
from spanza import _log

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = r"""
import logging, sys, time
import spanza
from spanza.scenario import Peer

logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(name)s %(message)s")
relay = spanza.DerpServer()
port = relay.port
peer = Peer(relay.url, "10.94.0.1/24", mode=sys.argv[1], derp_options={"backoff_max_ms": 200})
peer.wait_relay(10)
relay.close()  # the relay dies
time.sleep(1.0)  # nothing but time: the record must come by itself
print("MARK after the relay died", flush=True)
relay = spanza.DerpServer(port=port)
peer.wait_relay(10)
time.sleep(0.5)
print("MARK after the relay came back", flush=True)
peer.close()
relay.close()
"""


@pytest.mark.parametrize("mode", ["gateway", "transport"])
def test_script_sees_relay_lost_and_restored_through_basic_config(mode: str) -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    died = lines.index("MARK after the relay died")
    back = lines.index("MARK after the relay came back")
    lost = [
        i
        for i, ln in enumerate(lines)
        if re.match(
            r"WARNING spanza\.derp \[\S+\] connection to DERP server "
            r"127\.0\.0\.1:\d+ lost \(.+\); reconnecting$",
            ln,
        )
    ]
    restored = [
        i
        for i, ln in enumerate(lines)
        if re.match(r"INFO spanza\.derp \[\S+\] reconnected to DERP server 127\.0\.0\.1:\d+$", ln)
    ]
    assert lost and lost[0] < died, out.stdout
    assert restored and died < restored[0] < back, out.stdout


def test_records_flow_without_draining_and_use_one_logger_per_component(caplog: pytest.LogCaptureFixture) -> None:
    spanza.set_log_level("DEBUG")
    try:
        with caplog.at_level(logging.DEBUG, logger="spanza"), spanza.Device(listen_port=0) as d:
            with pytest.raises(OSError):
                d.ipc_set(f"listen_port={_busy_port()}")  # the device logs this at DEBUG, from C
            deadline = time.monotonic() + 5
            while not any(r.name == "spanza.device" and "listen_port" in r.getMessage() for r in caplog.records):
                assert time.monotonic() < deadline, [(r.name, r.getMessage()) for r in caplog.records]
                time.sleep(0.01)
        assert not [r for r in caplog.records if r.name == "spanza.dev"]  # C's short name is not a logger
    finally:
        spanza.set_log_level(logging.INFO)


def _busy_port() -> int:
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 0))
    _busy_port.keep = s  # type: ignore[attr-defined]
    return int(s.getsockname()[1])


def test_set_log_level_says_what_it_takes() -> None:
    with pytest.raises(ValueError, match="not a level name"):
        spanza.set_log_level("LOUD")
    with pytest.raises(TypeError, match="want a logging level"):
        spanza.set_log_level(1.5)  # type: ignore[arg-type]


@pytest.mark.spanza_allow_errors
def test_log_thread_runs_and_errors_are_kept_for_the_plugin() -> None:
    spanza.default_runtime()
    assert _log._thread is not None and _log._thread.is_alive()
    seen = _log.errors_seen()
    rt = spanza.Runtime("log-test")
    try:
        from spanza._ffi import lib

        lib.rt_py_log_error(rt.ptr, b"a fault for the test")
    finally:
        rt.close()
    _log.drain()
    assert [r.message for r in _log.errors_since(seen)] == ["log-test: a fault for the test"]
