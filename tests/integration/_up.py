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


def start_up(conf: Path, forward_to: str, *extra: str) -> Up:
    """`spanza up conf --socks5 127.0.0.1:0 --forward 127.0.0.1:0:<forward_to>`,
    then `extra` (--expose ...), once it printed what it serves (the peer
    line first, the socks5 line last)."""
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
            *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None
    lines: list[str] = []
    while not (lines and lines[-1].startswith("socks5 ")) and len(lines) < 8:
        line = p.stdout.readline()
        if not line:
            break
        lines.append(line)
    ours = {ln.split()[0]: ln.split()[1] for ln in lines if ln.startswith(("forward ", "socks5 "))}
    if not (lines and lines[0].startswith("peer ")) or len(ours) != 2:
        p.kill()
        raise AssertionError(f"spanza up did not start: {lines} {p.communicate()[1]}")
    return Up(p, ours["forward"], ours["socks5"])
