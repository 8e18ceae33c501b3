"""Starts `spanza up` on a wg-quick file with a SOCKS5 proxy and one
--forward, both on free loopback ports, for the tests that drive it."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Up:
    proc: subprocess.Popen[str]
    forward: str  # host:port of the --forward
    socks5: str  # host:port of the proxy

    def stop(self) -> int:
        """SIGINT, as a user's Ctrl-C; the exit code (killed after 10 s)."""
        if self.proc.poll() is None:
            self.proc.send_signal(2)
            try:
                return self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()


def start_up(conf: Path, forward_to: str) -> Up:
    """`spanza up conf --socks5 127.0.0.1:0 --forward 127.0.0.1:0:<forward_to>`,
    once it printed its three lines (peer, forward, socks5)."""
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "spanza",
            "up",
            str(conf),
            "--socks5",
            "127.0.0.1:0",
            "--forward",
            f"127.0.0.1:0:{forward_to}",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None
    lines = [p.stdout.readline() for _ in range(3)]
    if not (lines[0].startswith("peer ") and lines[2].startswith("socks5 ")):
        p.kill()
        raise AssertionError(f"spanza up did not start: {lines} {p.communicate()[1]}")
    return Up(p, lines[1].split()[1], lines[2].split()[1])
