"""Run Tailscale's derper and its Go DERP client (built by `make go-helpers`).

These are the referees of DERP interop: nothing here re-implements DERP.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.support import free_port

# SPANZA_ROOT: the checkout whose .cache holds the Go builds (make asan runs a
# copy of the tests elsewhere).
ROOT = Path(os.environ.get("SPANZA_ROOT") or Path(__file__).resolve().parents[2])
GO_BIN = ROOT / ".cache" / "go" / "bin"
DERPER = GO_BIN / "derper"
DERPCLIENT = GO_BIN / "derpclient"


def require_go_helpers() -> None:
    if not (DERPER.exists() and DERPCLIENT.exists()):
        pytest.fail("Go helpers missing: run `make go-helpers` (make test builds them)")


def wait_port(port: int, timeout: float = 15.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


class Derper:
    """Tailscale's derper on loopback: plain HTTP or TLS with a
    self-signed certificate (--certmode manual; derper makes it for an IP)."""

    def __init__(
        self,
        *,
        tls: bool = False,
        port: int | None = None,
        mesh_key: str | None = None,
        mesh_with: list[str] | None = None,
        extra: list[str] | None = None,
    ) -> None:
        require_go_helpers()
        self.tmp = tempfile.TemporaryDirectory(prefix="spz-derper-")
        self.port = port or free_port()
        self.tls = tls
        d = Path(self.tmp.name)
        args = [str(DERPER), "-a", f"127.0.0.1:{self.port}", "--stun=false", "-c", str(d / "derper.json")]
        if tls:
            args += [
                "--certmode",
                "manual",
                "--certdir",
                str(d / "certs"),
                "--hostname",
                "127.0.0.1",
                "--http-port",
                "-1",
            ]
        # (no --dev: it overrides -a with its own fixed port; a non-443 port
        # without --certmode manual already serves plain HTTP)
        if mesh_key:
            (d / "mesh.key").write_text(mesh_key)
            args += ["--mesh-psk-file", str(d / "mesh.key")]
        if mesh_with:
            args += ["--mesh-with", ",".join(mesh_with)]
        args += extra or []
        self.args = args
        self.log = open(d / "derper.log", "w+b")
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_port(self.port)
        except TimeoutError as e:
            self.stop()
            raise RuntimeError(f"derper did not start: {self.output()[-2000:]}") from e

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def output(self) -> str:
        self.log.flush()
        return (Path(self.tmp.name) / "derper.log").read_text(errors="replace")

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/derp"

    @property
    def cert_file(self) -> Path:
        """The self-signed certificate derper made (TLS mode)."""
        certs = Path(self.tmp.name) / "certs"
        for p in certs.glob("*.crt"):
            return p
        raise FileNotFoundError(f"no certificate in {certs}")

    def close(self) -> None:
        self.stop()
        self.log.close()
        self.tmp.cleanup()

    def __enter__(self) -> Derper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class GoDerpClient:
    """Tailscale's derphttp client, driven over JSON lines."""

    def __init__(
        self,
        url: str,
        *,
        key: str | None = None,
        insecure: bool = False,
        ca_file: str | None = None,
        mesh_key: str | None = None,
        echo: bool = False,
    ) -> None:
        require_go_helpers()
        args = [str(DERPCLIENT), "--url", url]
        if key:
            args += ["--key", key]
        if insecure:
            args += ["--insecure"]
        if ca_file:
            args += ["--ca-file", str(ca_file)]
        if mesh_key:
            args += ["--mesh-key", mesh_key]
        if echo:
            args += ["--echo"]
        self.proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0
        )
        self.events: queue.Queue[dict] = queue.Queue()
        self.backlog: list[dict] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        ready = self.wait_event("ready", 15)
        self.public_key: str = ready["public_key"]
        self.server_key: str = ready["server_key"]
        # Go's Connect returns before the server has registered us; a ping
        # round trip means it has (the server answers only registered peers).
        if not self.ping()["ok"]:
            raise RuntimeError("derpclient: the server did not answer the first ping")

    def _read(self) -> None:
        assert self.proc.stdout
        for line in self.proc.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                pass
        self.events.put({"ev": "exit"})

    def _cmd(self, **cmd: object) -> None:
        assert self.proc.stdin
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())

    def wait_event(self, kind: str, timeout: float = 10.0) -> dict:
        """The next event of this kind; other events are kept for later calls."""
        for i, ev in enumerate(self.backlog):
            if ev["ev"] == kind:
                return self.backlog.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {kind!r} event from derpclient in {timeout}s")
            try:
                ev = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if ev["ev"] == kind:
                return ev
            if ev["ev"] not in ("fatal", "exit"):
                self.backlog.append(ev)
                continue
            if ev["ev"] in ("fatal", "exit"):
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.poll() is not None else ""
                raise RuntimeError(f"derpclient ended: {ev} {err[-2000:]}")

    def send(self, to: str, data: bytes) -> None:
        self._cmd(op="send", to=to, data=base64.b64encode(data).decode())
        ev = self.wait_event("sent")
        if not ev["ok"]:
            raise RuntimeError(f"derpclient send failed: {ev['error']}")

    def recv(self, timeout: float = 10.0) -> tuple[str, bytes]:
        ev = self.wait_event("recv", timeout)
        return ev["from"], base64.b64decode(ev.get("data", ""))

    def ping(self, timeout: float = 10.0) -> dict:
        self._cmd(op="ping")
        return self.wait_event("pong", timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._cmd(op="close")
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)  # it ends at EOF; then stdout can be closed
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()

    def __enter__(self) -> GoDerpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_loadgen(url: str, *, pairs: int = 4, size: int = 1400, seconds: float = 5.0, insecure: bool = False) -> dict:
    """Tailscale's client as a load generator; returns its JSON result."""
    require_go_helpers()
    args = [
        str(DERPCLIENT),
        "loadgen",
        "--url",
        url,
        "--pairs",
        str(pairs),
        "--size",
        str(size),
        "--duration",
        f"{seconds}s",
    ] + (["--insecure"] if insecure else [])
    out = subprocess.run(args, capture_output=True, timeout=seconds + 60, check=True)
    return json.loads(out.stdout.decode().strip().splitlines()[-1])
