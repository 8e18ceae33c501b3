"""The stated limits of a DERP server (README, "Limits"): the relay command
raises its open-files limit; at the fd limit a server keeps serving the
clients it has and recovers once descriptors free up; memory per connection
is bounded. The server runs in a child process, so its limits and memory
are its own."""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration._derp_raw import RawDerp, assert_relays, connect
from tests.support import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024

# The child: a DerpServer under a given soft RLIMIT_NOFILE, driven by lines
# on stdin ("stats", "advance <ms>", "quit"); prints its port first.
CHILD = r"""
import json, resource, sys
soft = int(sys.argv[1])
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
from spanza.derp import DerpServer
with DerpServer(**json.loads(sys.argv[2])) as s:
    print(s.port, flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == "stats":
            print(json.dumps(s.stats()), flush=True)
        elif cmd[0] == "advance":
            s.advance_clock(int(cmd[1]))
            print("ok", flush=True)
        else:
            break
"""


class Child:
    def __init__(self, nofile: int, **server: object) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(nofile), json.dumps(server)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.strip().isdigit(), f"server child did not start: {line!r}"
        self.port = int(line)

    def ask(self, line: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline()

    def stats(self) -> dict[str, int]:
        return json.loads(self.ask("stats"))

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE_KIB

    def close(self) -> None:
        try:
            self.ask("quit")
        except (BrokenPipeError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def half_open_heads(port: int, n: int) -> list[socket.socket]:
    """n connections that started a request head and never finish it."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /derp HTTP/1.1\r\nHost: derp.test\r\n")
        socks.append(s)
    return socks


def test_at_the_fd_limit_a_server_keeps_its_clients_and_recovers():
    child = Child(nofile=96)
    flood: list[socket.socket] = []
    try:
        a, b = connect(child.port), connect(child.port)
        # Far more connections than descriptors: the kernel completes them
        # (backlog), the server accepts until EMFILE, then pauses accepting.
        flood = half_open_heads(child.port, 200)
        wait_for(lambda: child.fds() >= 90, timeout=10, what="the server to reach its fd limit")
        assert_relays(a, b)  # existing clients are served at the limit
        accepted_at_limit = child.stats()["accepts"]
        assert accepted_at_limit < 2 + 200, "the limit did not bite"
        for s in flood:
            s.close()
        flood = []
        # Recovery: the backlog drains, then a new client gets in and relays.
        c = connect(child.port, timeout=10)
        assert_relays(a, c)
        wait_for(lambda: child.stats()["connections"] == 3, what="the flood's connections to be closed", timeout=10)
        assert child.stats()["accepts"] > accepted_at_limit
        for x in (a, b, c):
            x.close()
    finally:
        for s in flood:
            s.close()
        child.close()


def test_the_relay_command_raises_its_soft_open_files_limit(tmp_path):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    low = min(256, hard)
    if hard == resource.RLIM_INFINITY or hard <= low:
        pytest.skip(f"the hard RLIMIT_NOFILE ({hard}) leaves nothing to raise")
    port = free_port()
    # `spanza derper` started with a low soft limit (set before it runs, as a shell's ulimit -Sn would).
    start = (
        "import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), "
        "resource.getrlimit(resource.RLIMIT_NOFILE)[1])); sys.argv[:2] = ['spanza']; "
        "runpy.run_module('spanza', run_name='__main__')"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            start,
            str(low),
            "derper",
            "-a",
            f"127.0.0.1:{port}",
            "-c",
            str(tmp_path / "derper.key"),
            "--stun=false",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                connect(port).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "derper did not start"
                time.sleep(0.05)
        with open(f"/proc/{proc.pid}/limits") as f:
            line = next(ln for ln in f if ln.startswith("Max open files"))
        assert int(line.split()[3]) == hard, line
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.skipif(os.environ.get("SPANZA_SANITIZED") == "1", reason="ASan's allocator makes RSS meaningless")
def test_memory_per_connection_is_bounded():
    n = 400
    child = Child(nofile=min(4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1]), queue_depth=32)
    idle: list[socket.socket] = []
    clients: list[RawDerp] = []
    try:
        # Warm up allocator and tables, then measure.
        for c in [connect(child.port) for _ in range(20)]:
            c.close()
        wait_for(lambda: child.stats()["connections"] == 0, what="warm-up connections to close", timeout=10)
        base = child.rss_kib()
        idle = half_open_heads(child.port, n)
        clients = [connect(child.port) for _ in range(n)]
        wait_for(lambda: child.stats()["clients"] == n, what="clients to register", timeout=10)
        per_conn = (child.rss_kib() - base) / (2 * n)
        # A connection is a ~0.5 KiB struct, a request head buffer (<= 8 KiB,
        # freed at the upgrade) and small tables: README states < 16 KiB.
        assert per_conn < 16, f"{per_conn:.1f} KiB per connection"

        # A registered client that never reads: its queues are bounded
        # (queue_depth data + queue_depth disco frames), the rest is dropped.
        sink = RawDerp(child.port)
        sink.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sink.handshake()
        before = child.rss_kib()
        sender = clients[0]
        big = os.urandom(65536)
        for _ in range(300):  # ~20 MB at a receiver that reads nothing
            sender.send_packet(sink.pub, big)
        wait_for(
            lambda: child.stats()["drop_queue_head"] > 0, what="the never-reading client's queue to drop", timeout=10
        )
        grown = child.rss_kib() - before
        # 32 queued 64 KiB frames plus what the socket write holds: ~2 MiB.
        assert grown < 8 * 1024, f"RSS grew {grown} KiB for one never-reading client"
        assert_relays(clients[1], clients[2])
        sink.close()
    finally:
        for s in idle:
            s.close()
        for c in clients:
            c.close()
        child.close()
