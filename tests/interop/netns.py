"""Network namespaces, veth links and wireguard-go peers for interop tests.

Everything here is created by the test that uses it and removed in teardown,
even when the test fails: namespaces get unique names (``spz-<pid>-<n>``),
veth links get test-owned addresses from 169.254.0.0/16 and fd5a::/16
derived from the pid, and wireguard-go runs in the foreground so the test
owns the process. Only loopback and these namespaces are ever reached.

Typical use (as root)::

    with NetNS() as ns, Veth(ns) as link, WireGuardGo(ns) as wg:
        wg.configure(private_key=..., listen_port=..., peers=[...])
        ns.run("ip", "addr", "add", "10.7.0.1/24", "dev", wg.ifname)
        ...  # link.host_v4 is the host end, link.ns_v4 the namespace end

Tests that need these should call ``require_root()`` (skips with a clear
reason when not root or when the tools are missing).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pytest

from tests.support import plain_env, wait_for  # noqa: F401 - plain_env re-exported for the interop tests

UAPI_DIR = "/var/run/wireguard"
_counter = itertools.count(1)


def unique(prefix: str, maxlen: int = 15) -> str:
    """A name unique on this host for this process: prefix + pid + counter.

    Interface names must fit IFNAMSIZ (15 chars) and be unique across all
    namespaces, because wireguard-go's UAPI socket directory is shared."""
    name = f"{prefix}{os.getpid() % 100000}x{next(_counter)}"
    if len(name) > maxlen:
        raise ValueError(f"name {name!r} longer than {maxlen}")
    return name


def uapi_listening(path: str) -> bool:
    """Whether a process accepts connections on the UAPI socket ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            return False
    return True


def claim_uapi(path: str) -> bool:
    """Frees ``path`` for a new wireguard-go: removes a stale socket file (no
    process behind it: one killed before it could clean up, whose name an
    earlier test process with our pid used; pids wrap at pid_max). False if
    a live process serves it (an orphan of such a process)."""
    if uapi_listening(path):
        return False
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return True


def wait_uapi(path: str, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Waits until wireguard-go (``proc``) accepts connections on its UAPI
    socket ``path``; RuntimeError with its output if it exited first.

    Not until the file exists: it exists from wireguard-go's bind(), a
    moment before its listen(), and a stale file of the same name may be
    there before wireguard-go replaces it. A `wg` that connects to either
    gets ECONNREFUSED, takes the socket for a dead process's, unlinks it
    (wireguard-go, which watches its file, then exits) and falls back to
    the kernel module: "Unable to modify interface: Protocol not
    supported". An accepted connection closed at once is harmless:
    wireguard-go's handler reads EOF."""
    wait_for(lambda: uapi_listening(path) or proc.poll() is not None, timeout, f"wireguard-go's UAPI socket {path}")
    if proc.poll() is not None:
        raise RuntimeError(f"wireguard-go exited ({proc.returncode}): {kill_tree(proc)}")


def require_root(*tools: str) -> None:
    """Skip the calling test unless running as root with the tools present."""
    if os.geteuid() != 0:
        pytest.skip("needs root: creates network namespaces, veth links and TUN devices")
    for tool in ("ip", *tools):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool!r} (Debian package providing it is not installed)")


def sh(*args: str, check: bool = True, timeout: float = 10.0, **kw) -> subprocess.CompletedProcess:
    """Run a command, capture its output, raise with stderr on failure."""
    p = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({p.returncode}): {p.stderr.strip() or p.stdout.strip()}")
    return p


class NetNS:
    """A named network namespace with its loopback up; deleted on exit."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or f"spz-{os.getpid()}-{next(_counter)}"
        self._created = False

    def __enter__(self) -> NetNS:
        sh("ip", "netns", "add", self.name)
        self._created = True
        self.run("ip", "link", "set", "lo", "up")
        return self

    def __exit__(self, *exc: object) -> None:
        self.delete()

    def delete(self) -> None:
        if not self._created:
            return
        self._created = False
        # Processes still inside keep the namespace alive but not its name;
        # callers stop their processes first (WireGuardGo does).
        sh("ip", "netns", "delete", self.name, check=False)

    def cmd(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *args]

    def run(self, *args: str, check: bool = True, timeout: float = 10.0) -> subprocess.CompletedProcess:
        return sh(*self.cmd(*args), check=check, timeout=timeout)

    def popen(self, *args: str, **kw) -> subprocess.Popen:
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.STDOUT)
        # Own process group, so teardown can stop the whole tree.
        return subprocess.Popen(self.cmd(*args), start_new_session=True, **kw)


def _subnet_index() -> int:
    """A per-link index that differs between processes: pid-derived base."""
    return (os.getpid() * 7 + next(_counter)) % 16000


@dataclass
class Veth:
    """A veth pair: one end in the host namespace (or ``host_ns``), the other
    in ``ns``, with test-owned point-to-point addresses:
    IPv4 169.254.a.b/30 and IPv6 fd5a:<pid>:<n>::1/64 and ::2 (no DAD)."""

    ns: NetNS
    host_ns: NetNS | None = None
    host_if: str = field(default="")
    ns_if: str = field(default="")

    def __post_init__(self) -> None:
        self.host_if = self.host_if or unique("spzh")
        self.ns_if = self.ns_if or unique("spzn")
        i = _subnet_index()
        base = 4 * i  # /30 blocks inside 169.254.0.0/16, skipping .0.x
        a, b = 1 + base // 256, base % 256
        self.host_v4 = f"169.254.{a}.{b + 1}"
        self.ns_v4 = f"169.254.{a}.{b + 2}"
        tag = f"{os.getpid() % 0xFFFF:x}:{i:x}"
        self.host_v6 = f"fd5a:{tag}::1"
        self.ns_v6 = f"fd5a:{tag}::2"
        self._up = False

    def _host(self, *args: str) -> subprocess.CompletedProcess:
        return self.host_ns.run(*args) if self.host_ns else sh(*args)

    def __enter__(self) -> Veth:
        self._host("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        self._up = True
        try:
            self._host("ip", "link", "set", self.ns_if, "netns", self.ns.name)
            for run, ifn, v4, v6 in (
                (self._host, self.host_if, self.host_v4, self.host_v6),
                (self.ns.run, self.ns_if, self.ns_v4, self.ns_v6),
            ):
                run("ip", "addr", "add", f"{v4}/30", "dev", ifn)
                run("ip", "-6", "addr", "add", f"{v6}/64", "dev", ifn, "nodad")
                run("ip", "link", "set", ifn, "up")
        except BaseException:
            self.delete()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.delete()

    def delete(self) -> None:
        if not self._up:
            return
        self._up = False
        # Deleting either end removes both, with their addresses and routes;
        # the namespace end may already be gone with its namespace.
        if self.host_ns:
            self.host_ns.run("ip", "link", "del", self.host_if, check=False)
        else:
            sh("ip", "link", "del", self.host_if, check=False)


def kill_tree(p: subprocess.Popen, timeout: float = 5.0) -> str:
    """Stop a process started with start_new_session (TERM, then KILL); its output."""
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout)
    out = ""
    if p.stdout is not None:
        with contextlib.suppress(Exception):
            out = p.stdout.read() or ""
            if isinstance(out, bytes):
                out = out.decode(errors="replace")
    return out


@dataclass
class WgPeer:
    public_key: str  # base64
    allowed_ips: Sequence[str] = ()
    endpoint: str | None = None
    preshared_key: str | None = None  # base64
    persistent_keepalive: int | None = None


class WireGuardGo:
    """Debian's wireguard-go in the foreground inside ``ns``, configured with
    Debian's ``wg`` (and ``ip`` for addresses). Stopped and its UAPI socket
    removed on exit."""

    def __init__(self, ns: NetNS, ifname: str | None = None) -> None:
        self.ns = ns
        self._named = ifname is not None
        self.ifname = ifname or unique("spzwg")
        self.proc: subprocess.Popen | None = None
        self.output = ""
        self._tmpfiles: list[str] = []

    @property
    def sock(self) -> str:
        return os.path.join(UAPI_DIR, f"{self.ifname}.sock")

    def __enter__(self) -> WireGuardGo:
        # The socket we wait for must be this wireguard-go's.
        while not claim_uapi(self.sock):
            if self._named:
                raise RuntimeError(f"{self.sock}: another process serves {self.ifname}")
            self.ifname = unique("spzwg")
        env = dict(os.environ, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD="1", LOG_LEVEL="debug")
        self.proc = self.ns.popen("wireguard-go", "-f", self.ifname, env=env, text=True)
        try:
            wait_uapi(self.sock, self.proc)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc is not None:
            self.output = kill_tree(self.proc)
            self.proc = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.sock)
        for f in self._tmpfiles:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f)
        self._tmpfiles.clear()

    def _keyfile(self, b64: str) -> str:
        import tempfile

        fd, path = tempfile.mkstemp(prefix="spz-key-")
        os.write(fd, (b64 + "\n").encode())
        os.close(fd)
        self._tmpfiles.append(path)
        return path

    def wg(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        # The UAPI socket directory is shared by all namespaces; running `wg`
        # inside the namespace keeps `wg show` output scoped the same way.
        return self.ns.run("wg", *args, check=check)

    def set_peer(self, peer: WgPeer) -> None:
        args = ["set", self.ifname, "peer", peer.public_key]
        if peer.allowed_ips:
            args += ["allowed-ips", ",".join(peer.allowed_ips)]
        if peer.endpoint:
            args += ["endpoint", peer.endpoint]
        if peer.preshared_key:
            args += ["preshared-key", self._keyfile(peer.preshared_key)]
        if peer.persistent_keepalive is not None:
            args += ["persistent-keepalive", str(peer.persistent_keepalive)]
        self.wg(*args)

    def configure(
        self,
        private_key: str,
        listen_port: int = 0,
        addresses: Sequence[str] = (),
        peers: Sequence[WgPeer] = (),
        mtu: int = 1420,
    ) -> None:
        """Set the key and port, add peers, assign tunnel addresses, bring the TUN up."""
        self.wg("set", self.ifname, "private-key", self._keyfile(private_key), "listen-port", str(listen_port))
        for p in peers:
            self.set_peer(p)
        for a in addresses:
            extra = ["nodad"] if ":" in a else []
            self.ns.run("ip", "addr", "add", a, "dev", self.ifname, *extra)
        self.ns.run("ip", "link", "set", self.ifname, "mtu", str(mtu), "up")

    @property
    def listen_port(self) -> int:
        return int(self.wg("show", self.ifname, "listen-port").stdout.strip())

    def dump(self) -> list[list[str]]:
        """`wg show IF dump` as rows of fields (first row: the interface)."""
        out = self.wg("show", self.ifname, "dump").stdout
        return [line.split("\t") for line in out.splitlines() if line]

    def latest_handshake(self, public_key: str) -> int:
        for row in self.dump()[1:]:
            if row[0] == public_key:
                return int(row[4])
        raise KeyError(public_key)


@contextlib.contextmanager
def wireguard_go_in_netns() -> Iterator[tuple[NetNS, Veth, WireGuardGo]]:
    """The common interop setup: a namespace, a veth to the host, wireguard-go."""
    with NetNS() as ns, Veth(ns) as link, WireGuardGo(ns) as wg:
        yield ns, link, wg


def genkey() -> tuple[str, str]:
    """A (private, public) base64 key pair from Debian's `wg genkey`/`wg pubkey`."""
    priv = sh("wg", "genkey").stdout.strip()
    pub = subprocess.run(["wg", "pubkey"], input=priv + "\n", capture_output=True, text=True, check=True).stdout.strip()
    return priv, pub
