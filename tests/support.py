"""Small helpers the tests share (waiting, ports, a fixed-body HTTP handler,
an environment for third-party tools)."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent


def run_python(
    *args: str, cwd: str | Path = ROOT, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs `python *args` in a fresh process that imports this tree's
    spanza (PYTHONPATH starts with ROOT), headless; output captured as
    text, the exit status left to the caller."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("MPLBACKEND", "Agg")  # no display: matplotlib draws to files
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env, check=False
    )


def wait_for(pred: Callable[[], T], timeout: float = 5.0, what: str = "condition", interval: float = 0.01) -> T:
    """Polls pred() until it is truthy and returns its value; fails the test
    with an AssertionError naming `what` after `timeout` seconds. Bounded in
    time, so a broken test ends instead of hanging."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def assert_close_wakes(blocked: Callable[[], object], close: Callable[[], None]) -> None:
    """A thread blocked in `blocked()` ends with spanza.ClosedError, at once,
    when another thread runs `close()`."""
    import spanza

    errors: list[BaseException] = []

    def run() -> None:
        try:
            blocked()
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.1)  # let it block (closing before it does must not hang either)
    close()
    t.join(5)
    assert not t.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], spanza.ClosedError), errors


def echo_through(src: Any, dst: Any, s: str, d: str, seq: int, timeout: float = 10.0) -> None:
    """Device `src` sends an ICMP echo request from s to d, `dst` reads it
    and answers, `src` reads the reply: both directions of a tunnel work."""
    from spanza import packets

    req = packets.icmp_echo(s, d, 0x5A, seq, b"spanza echo %d" % seq)
    src.write_packet(req)
    assert packets.read_until(dst, lambda p: p == req, timeout) == req
    rep = packets.echo_reply_for(req)
    dst.write_packet(rep)
    assert packets.read_until(src, lambda p: p == rep, timeout) == rep


def wait_event(client: Any, kind: type[T], timeout: float = 5.0) -> T:
    """The next event of type `kind` from a DerpClient (others skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        ev = client.next_event(max(0.01, deadline - time.monotonic()))
        if isinstance(ev, kind):
            return ev


def assert_closed_by_peer(sock: socket.socket) -> None:
    """The other end closed `sock`: a read gives EOF or a reset (a close
    with unread data resets, as on Linux)."""
    sock.settimeout(5)
    try:
        assert sock.recv(10) == b""
    except ConnectionResetError:
        pass


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (for servers that must be
    restarted on the same port)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def body_handler(
    body: Callable[[http.server.BaseHTTPRequestHandler], bytes],
) -> type[http.server.BaseHTTPRequestHandler]:
    """An http.server handler that answers every GET with what body(request)
    returns, quietly (a fixed body: spanza.scenario.fixed_body_handler)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            out = body(self)
            self.send_response(200)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def plain_env(**extra: str) -> dict[str, str]:
    """This process's environment without the sanitizer runtime that
    `make asan` preloads into Python (LD_PRELOAD=libasan...): third-party
    tools must run as shipped (curl, for one, hangs with ASan preloaded)."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS")
    }
    env.update(extra)
    return env
