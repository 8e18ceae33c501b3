"""Networks for scenario exploration: relays (meshed), peers, faults, transfers.

    with Network(peers=4, relays=2, mode="gateway") as net:
        net.mesh()                                # every peer a peer of every other
        with net.peers[0].impair(loss=0.1, seed=1):
            r = net.transfer(net.peers[0], net.peers[1], 8 << 20)
        net.relays[0].kill()                      # its peers move to the next node
        net.transfer(net.peers[0], net.peers[1], 1 << 20)

A `Network` owns what it creates: `close()` (or leaving the ``with``) ends
every peer and relay, also after a set-up that failed half way.

Relays form one DERP region (Tailscale's DERP map JSON: `derp_map()`), meshed
with a shared mesh key, so peers homed on different nodes reach each other.
Each peer's DERP client knows the region's nodes, its home first: when its
node dies it fails over to the next one by itself (the next request works
without user action).

Faults from Python: `Relay.kill()` (connections reset) / `stop()` and
`start()` (same port and key), `restart_gateway(peer)` (same key and
ports), `roam(peer)` (the device's UDP port changes), `rekey(a, b)`,
`remove_peer(a, b)` / `a.add_peer(b)`, `move_relay(peer, url)` (home relay
change), and impairments on any link (`spanza.impair`).

Time without waiting: `Device.advance_clock` moves a device's WireGuard
clock (rekey after 120 s, keepalive, handshake retry, key expiry; advance
both ends), the sans-IO `spanza.Tunnel` takes ``now`` from the caller, and
`DerpServer.advance_clock` moves a relay's clock (keepalives, deadlines,
mesh retries). DERP clients (backoff, read and ping timeouts), lwIP and the
impairments keep real time: force the event instead (`rekey`,
`DerpClient.reconnect`, `Relay.kill`) or shorten it
(``derp_options={"backoff_max_ms": ...}``).
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import http.server
import itertools
import json
import logging
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from spanza._ffi import ffi, lib
from spanza.derp import DerpServer, write_self_signed_cert
from spanza.derp_client import DerpClient
from spanza.device import Device
from spanza.errors import ConfigError, SpanzaError, check
from spanza.gateway import Gateway
from spanza.keys import PrivateKey
from spanza.netstack import HTTPConnection
from spanza.scenario import MODES, Peer

if TYPE_CHECKING:
    from spanza.scenario import Mode

log = logging.getLogger("spanza.network")

__all__ = [
    "Network",
    "Relay",
    "TransferResult",
    "derp_map_urls",
    "move_relay",
    "rekey",
    "remove_peer",
    "restart_gateway",
    "roam",
]

RelayKind = Literal["spanza", "derper"]
REGION_ID = 900
CHUNK = 1 << 20
# Fail over and come back quickly: Tailscale's 5 s backoff cap is for the
# internet; on loopback a scenario wants answers in seconds.
FAST_DERP = {"backoff_max_ms": 300, "note_preferred": 1}
# `spanza scenario` sets this to a list: every network closed appends its report
_reports: list[str] | None = None
_subnets = itertools.count()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_derper() -> str | None:
    """Tailscale's derper: $SPANZA_DERPER, .cache/go/bin/derper (`make
    go-helpers`) or on PATH."""
    env = os.environ.get("SPANZA_DERPER")
    if env:
        return env
    local = Path(__file__).resolve().parent.parent / ".cache" / "go" / "bin" / "derper"
    if local.exists():
        return str(local)
    return shutil.which("derper")


# ---- relays ----


class Relay:
    """One node of the network's region: our DerpServer or Tailscale's derper
    (a child process), on a fixed port so it restarts where it was."""

    def __init__(
        self,
        index: int,
        kind: RelayKind,
        port: int,
        mesh_key: str,
        mesh_with: list[str],
        certdir: Path | None = None,
    ) -> None:
        self.index = index
        self.kind = kind
        self.port = port
        # TLS: certdir holds 127.0.0.1.crt/.key (this relay's), others.pem (the other relays')
        self.certdir = certdir
        self.private_key = PrivateKey.generate()
        self._mesh_key = mesh_key
        self._mesh_with = mesh_with
        self.server: DerpServer | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"{'https' if self.certdir else 'http'}://127.0.0.1:{self.port}/derp"

    @property
    def name(self) -> str:
        return f"{REGION_ID}{chr(ord('a') + self.index)}"

    @property
    def alive(self) -> bool:
        return self.server is not None or (self._proc is not None and self._proc.poll() is None)

    def start(self) -> None:
        """Starts (again) on its port with its key and mesh."""
        if self.alive:
            return
        if self.kind == "spanza":
            tls: dict[str, Any] = {}
            if self.certdir is not None:
                tls = {
                    "tls": True,
                    "cert_file": self.certdir / "127.0.0.1.crt",
                    "key_file": self.certdir / "127.0.0.1.key",
                    "mesh_ca_file": self.certdir / "others.pem",
                }
            self.server = DerpServer(
                port=self.port,
                private_key=self.private_key.raw,
                mesh_key=self._mesh_key if self._mesh_with else None,
                mesh_with=self._mesh_with,
                mesh_retry_ms=500,
                **tls,
            )
            return
        self._start_derper()

    def _start_derper(self) -> None:
        exe = find_derper()
        if exe is None:
            raise ConfigError(
                "relay_kind='derper': Tailscale's derper is not built; run `make go-helpers` "
                "(or set SPANZA_DERPER to its path)"
            )
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="spz-derper-")
        d = Path(self._tmp.name)
        (d / "derper.json").write_text(json.dumps({"PrivateKey": f"privkey:{self.private_key.raw.hex()}"}))
        args = [
            exe,
            "-a",
            f"127.0.0.1:{self.port}",
            "--stun=false",
            "-c",
            str(d / "derper.json"),
        ]
        env = dict(os.environ)
        if self.certdir is not None:
            args += [
                "--certmode",
                "manual",
                "--certdir",
                str(self.certdir),
                "--hostname",
                "127.0.0.1",
                "--http-port",
                "-1",
            ]
            env["SSL_CERT_FILE"] = str(self.certdir / "others.pem")  # its mesh client trusts the others
        if self._mesh_with:
            (d / "mesh.key").write_text(self._mesh_key)
            args += [
                "--mesh-psk-file",
                str(d / "mesh.key"),
                "--mesh-with",
                ",".join(u.split("//")[1].split("/")[0] for u in self._mesh_with),
            ]
        with open(d / "derper.log", "ab") as logf:  # the child keeps its own copy of the fd
            self._proc = subprocess.Popen(
                args,
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise SpanzaError(
                        f"derper did not start on port {self.port}: "
                        f"{(d / 'derper.log').read_text(errors='replace')[-1500:]}"
                    ) from None
                time.sleep(0.05)

    def kill(self) -> None:
        """Stops abruptly, like a crash: connections are reset, nothing
        queued is written (derper: SIGKILL)."""
        if self.server is not None:
            server, self.server = self.server, None
            server.kill()
        elif self._proc is not None:
            self._proc.kill()
            self._proc.wait(5)
            self._proc = None

    def stop(self) -> None:
        """Stops cleanly (queued frames get a last write; derper: SIGTERM)."""
        if self.server is not None:
            server, self.server = self.server, None
            server.close()
        elif self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
            self._proc = None

    def restart(self, abrupt: bool = False) -> None:
        """Kills (abrupt) or stops it, then starts it again on the same port."""
        self.kill() if abrupt else self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def stats(self) -> dict[str, int]:
        return self.server.stats() if self.server is not None else {}

    def __repr__(self) -> str:
        return f"<Relay {self.name} {self.kind} {self.url} {'up' if self.alive else 'down'}>"


def derp_map_urls(
    derp_map: dict[str, Any],
    region_id: int = REGION_ID,
    home: int = 0,
    scheme: str = "https",
) -> list[str]:
    """The URLs of a region's nodes from a DERP map (Tailscale's JSON), in
    map order starting at node `home` (the order a client tries them).
    scheme "http" for plain test relays (Tailscale's TS_DEBUG_USE_DERP_HTTP)."""
    try:
        nodes = derp_map["Regions"][str(region_id)]["Nodes"]
    except KeyError:
        raise ConfigError(f"derp map: no region {region_id}") from None
    urls = []
    for n in nodes:
        host = n.get("IPv4") or n.get("HostName")
        urls.append(f"{scheme}://{host}:{n.get('DERPPort', 443)}/derp")
    return urls[home:] + urls[:home]


# ---- transfers ----


@dataclasses.dataclass
class TransferResult:
    """One transfer: bytes received, whether the sha256 matched what the
    server sent, and the goodput."""

    nbytes: int
    received: int
    sha256_sent: str
    sha256_received: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.received == self.nbytes and self.sha256_sent == self.sha256_received

    @property
    def goodput(self) -> float:
        """Bytes per second of intact data."""
        return self.received / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        return (
            f"{self.received} of {self.nbytes} bytes in {self.seconds:.2f} s, "
            f"{self.goodput / 1e6:.2f} MB/s, sha256 {'ok' if self.ok else 'MISMATCH'}"
        )


def _chunks(nbytes: int, seed: int) -> Any:
    rnd = random.Random(seed)
    left = nbytes
    while left > 0:
        n = min(CHUNK, left)
        yield rnd.randbytes(n)
        left -= n


class _BytesHandler(http.server.BaseHTTPRequestHandler):
    """GET /bytes/<n>/<seed>: n pseudo-random bytes; the sha256 of what was
    written is kept in the server's ``sent`` dict under the path."""

    protocol_version = "HTTP/1.1"
    sent: ClassVar[dict[str, str]] = {}

    def do_GET(self) -> None:
        parts = self.path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != "bytes" or not parts[1].isdigit() or not parts[2].isdigit():
            self.send_error(404)
            return
        n, seed = int(parts[1]), int(parts[2])
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(n))
        self.end_headers()
        h = hashlib.sha256()
        try:
            for c in _chunks(n, seed):
                self.wfile.write(c)
                h.update(c)
        except (
            BrokenPipeError,
            ConnectionResetError,
        ):  # the client gave up (a cut transfer)
            self.close_connection = True
            return
        self.sent[self.path] = h.hexdigest()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("transfer server: " + format, *args)


def transfer(
    src: Peer,
    dst: Peer,
    nbytes: int,
    *,
    port: int = 8099,
    seed: int | None = None,
    timeout: float = 120.0,
    progress: Callable[[int, int], None] | None = None,
) -> TransferResult:
    """`src` GETs `nbytes` over HTTP from `dst` (which serves them on
    `port`, started on first use) through the tunnel; both ends hash what
    they saw (sha256). `progress(done, total)` is called per chunk read.
    TimeoutError if nothing arrives for `timeout` seconds."""
    if nbytes < 0:
        raise ConfigError(f"nbytes: {nbytes!r} is negative")
    servers: dict[int, Any] = dst.__dict__.setdefault("_transfer_servers", {})
    if port not in servers:
        handler = type("Handler", (_BytesHandler,), {"sent": {}})
        servers[port] = (dst.device.serve_http(port, handler), handler)
    handler = servers[port][1]
    seed = random.randrange(2**31) if seed is None else seed
    path = f"/bytes/{nbytes}/{seed}"
    t0 = time.monotonic()
    h = hashlib.sha256()
    got = 0
    conn = HTTPConnection(src.device.host, dst.address, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        if resp.status != 200:
            raise SpanzaError(f"transfer: {dst} answered {resp.status}")
        while True:
            chunk = resp.read(256 * 1024)
            if not chunk:
                break
            h.update(chunk)
            got += len(chunk)
            if progress is not None:
                progress(got, nbytes)
    finally:
        conn.close()
    seconds = time.monotonic() - t0
    deadline = time.monotonic() + 5  # the server records its hash after its last write
    while path not in handler.sent and time.monotonic() < deadline:
        time.sleep(0.01)
    return TransferResult(nbytes, got, handler.sent.pop(path, ""), h.hexdigest(), seconds)


# ---- breaking parts ----


def restart_gateway(peer: Peer) -> None:
    """Stops the peer's gateway and starts it again with the same key,
    the same UDP ports for its remote peers and the same relay. Its links'
    impairments are set again on the new gateway (the links are the
    network's, not the gateway's): the old `Impairment` objects keep their
    counters, ``peer.gateway.impairments()`` has the new ones."""
    old = peer.gateway
    if old is None:
        raise ConfigError(f"{peer}: restart_gateway needs a gateway-mode peer")
    ports = [(k, old.address_for(k)) for k in old.remote_peers]
    url, wg_ep = old.url, old.wg_endpoint
    impairments = [(imp.hop, imp.settings) for imp in old.impairments()]
    for imp in old.impairments():
        imp.lift()
    old.close()
    gw = Gateway(url, peer.gateway_key, wg_endpoint=wg_ep, **peer._gateway_args)
    try:
        for key, addr in ports:
            gw.add_remote_peer(key, listen=addr)
        for hop, settings in impairments:
            gw.impair(hop=hop, **settings)
    except BaseException:
        gw.close()
        raise
    peer.gateway = gw
    peer._parts[1] = gw


def roam(peer: Peer, port: int = 0) -> int:
    """Moves the device's UDP socket to another port (0: any free one), as a
    roaming laptop would; a gateway learns the new address from the next
    datagram. Returns the new port."""
    if peer.gateway is None:
        raise ConfigError(f"{peer}: roam needs a gateway-mode peer (a transport-mode device has no UDP port)")
    old = peer.device.listen_port
    peer.gateway.wg_endpoint = None  # learn where WireGuard sends from
    peer.device.ipc_set(f"listen_port={port}")
    new = peer.device.listen_port
    log.info("%s roamed from UDP port %d to %d", peer, old, new)
    # Speak first so the gateway learns the new address.
    for info in peer.device.peers:
        peer.device.rekey(info.public_key)
    return new


def rekey(a: Peer, b: Peer) -> None:
    """Forces a new WireGuard handshake from a to b now."""
    a.device.rekey(b.public_key)


def remove_peer(a: Peer, b: Peer) -> None:
    """a forgets b (its session and keys); `a.add_peer(b)` brings it back."""
    a.device.remove_peer(b.public_key)


def move_relay(obj: Peer | Gateway | Device | DerpClient, url: str) -> None:
    """Moves a relay connection to another relay (one URL, or a region's
    node URLs separated by spaces), same scheme: a home relay change. obj:
    a scenario Peer (its relay link), a Gateway, a Device's DERP transport
    or a DerpClient. The connection is dropped and the new relay dialled
    at once; impairments on the connection stay."""
    target: Any = obj
    if isinstance(obj, Peer):
        target = obj.gateway if obj.gateway is not None else obj.device
    kinds = {
        Gateway: lib.IMP_HOP_GATEWAY_DERP,
        Device: lib.IMP_HOP_DEVICE_DERP,
        DerpClient: lib.IMP_HOP_DERP_CLIENT,
    }
    kind = next((k for cls, k in kinds.items() if isinstance(target, cls)), None)
    if kind is None:
        raise ConfigError(f"move_relay: {obj!r} has no relay connection (a Peer, Gateway, Device or DerpClient)")
    err = ffi.new("char[256]")
    with target._impair_ptr() as ptr:
        rc = lib.imp_py_move_relay(kind, ptr, url.encode(), err, 256)
    if rc < 0:
        msg = ffi.string(err).decode(errors="replace")
        if rc == -errno.ENOENT:
            raise ConfigError(f"move_relay: {obj!r} has no DERP connection now")
        if msg:
            raise ConfigError(f"move_relay: {msg}")
        check(rc, "move_relay")
    if isinstance(obj, Peer):
        obj.url = url


# ---- the network ----


class Network:
    """`relays` DERP relays meshed in one region and `peers` peers homed on
    them in turn (peer i on relay i % relays), each knowing the region's
    nodes, in ``mode`` "gateway" or "transport". ``relay_kind`` "spanza"
    (ours), "derper" (Tailscale's, where built: `make go-helpers`) or a list
    with one kind per relay (a mixed region). ``tls``: relays serve TLS with
    certificates the network makes (every client and mesh link verifies
    them); default only where derper meshes, which dials its mesh peers
    over https only. Peers get .1, .2... of ``subnet`` (three octets; default
    10.77.N, a new N for each network of the process). ``derp_options``
    go to every DERP client."""

    def __init__(
        self,
        peers: int = 2,
        relays: int = 1,
        mode: Mode = "gateway",
        relay_kind: RelayKind | Sequence[RelayKind] = "spanza",
        *,
        tls: bool | None = None,
        derp_options: dict[str, int] | None = None,
        subnet: str | None = None,
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"mode: {mode!r} is not one of {', '.join(MODES)}")
        if not 1 <= relays <= 8:
            raise ConfigError(f"relays: {relays!r} is outside 1..8 (the nodes of one region)")
        kinds = [relay_kind] * relays if isinstance(relay_kind, str) else list(relay_kind)
        if len(kinds) != relays or any(k not in ("spanza", "derper") for k in kinds):
            raise ConfigError(f"relay_kind: {relay_kind!r} is not 'spanza', 'derper' or a list of {relays} of them")
        if not 0 <= peers <= 250:
            raise ConfigError(f"peers: {peers!r} is outside 0..250")
        self.mode: Mode = mode
        self.relay_kind = relay_kind
        self.relays: list[Relay] = []
        self.peers: list[Peer] = []
        self.results: list[TransferResult] = []
        self._derp_options = {**FAST_DERP, **(derp_options or {})}
        # several networks may live in one process (one lwIP stack): each its own /24
        self._subnet = subnet or f"10.77.{next(_subnets) % 256}"
        self._closed = False
        self.tls = bool(tls) if tls is not None else ("derper" in kinds and relays > 1)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.ca_file: Path | None = None
        try:
            ports = [_free_port() for _ in range(relays)]
            certdirs: list[Path | None] = [None] * relays
            if self.tls:
                certdirs = self._make_certs(relays)
            scheme = "https" if self.tls else "http"
            mesh_key = os.urandom(32).hex()
            for i, port in enumerate(ports):
                others = [f"{scheme}://127.0.0.1:{p}/derp" for j, p in enumerate(ports) if j != i]
                self.relays.append(Relay(i, kinds[i], port, mesh_key, others, certdirs[i]))
            for _ in range(peers):
                self.add_peer()
            if relays > 1:
                self.wait_mesh()
        except BaseException:
            self.close()
            raise

    def _make_certs(self, n: int) -> list[Path | None]:
        self._tmp = tempfile.TemporaryDirectory(prefix="spz-network-")
        root = Path(self._tmp.name)
        dirs: list[Path] = []
        pems = []
        for i in range(n):
            d = root / f"relay{i}"
            d.mkdir()
            write_self_signed_cert("127.0.0.1", d / "127.0.0.1.crt", d / "127.0.0.1.key")
            pems.append((d / "127.0.0.1.crt").read_text())
            dirs.append(d)
        ca = root / "ca.pem"
        ca.write_text("".join(pems))
        self.ca_file = ca
        for i, d in enumerate(dirs):
            (d / "others.pem").write_text("".join(p for j, p in enumerate(pems) if j != i))
        return list(dirs)

    # -- the DERP map --

    def homes(self) -> list[int]:
        """How many peers each relay serves as their home now (the clients
        that sent NotePreferred); a dead relay counts 0."""
        return [r.stats().get("home_clients", 0) if r.alive else 0 for r in self.relays]

    def derp_map(self) -> dict[str, Any]:
        """The region in Tailscale's DERP map JSON shape (tailcfg.DERPMap)."""
        nodes = [
            {
                "Name": r.name,
                "RegionID": REGION_ID,
                "HostName": "127.0.0.1",
                "IPv4": "127.0.0.1",
                "IPv6": "none",
                "DERPPort": r.port,
                "STUNPort": -1,
            }
            for r in self.relays
        ]
        return {
            "Regions": {
                str(REGION_ID): {
                    "RegionID": REGION_ID,
                    "RegionCode": "spz",
                    "RegionName": "Spanza scenario",
                    "Nodes": nodes,
                }
            }
        }

    def wait_mesh(self, timeout: float = 15.0) -> None:
        """Waits until every relay of ours has its mesh links up, both ways
        (its links to the others, and the others' watching it)."""
        want = len(self.relays) - 1

        def up(st: dict[str, int]) -> bool:
            return st.get("mesh_clients_up", want) >= want and st.get("watchers", want) >= want

        deadline = time.monotonic() + timeout
        for r in self.relays:
            while r.server is not None and not up(r.server.stats()):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"relay {r.name}: mesh links not up after {timeout} s")
                time.sleep(0.02)

    # -- peers --

    def add_peer(self, home: int | None = None) -> Peer:
        """A new peer homed on relay `home` (default: the next in turn)."""
        i = len(self.peers)
        home = i % len(self.relays) if home is None else home
        urls = derp_map_urls(self.derp_map(), home=home, scheme="https" if self.tls else "http")
        peer = Peer(
            " ".join(urls),
            f"{self._subnet}.{i + 1}/24",
            mode=self.mode,
            derp_options=self._derp_options,
            ca_file=self.ca_file,
        )
        peer.home = home  # type: ignore[attr-defined]
        self.peers.append(peer)
        return peer

    def mesh(self, timeout: float = 10.0) -> None:
        """Makes every peer a WireGuard peer of every other, and waits for
        their relay connections."""
        for a in self.peers:
            for b in self.peers:
                if a is not b:
                    a.add_peer(b)
        for p in self.peers:
            p.wait_relay(timeout)

    def advance_clock(self, seconds: float, step: float = 1.0, settle: float = 0.005) -> None:
        """Moves every peer's WireGuard clock `seconds` forward, in steps of
        `step` virtual seconds; after each step the packets the timers sent
        (keepalives, handshakes) get `settle` real seconds to arrive, so the
        peers see events in order (a keepalive at 10 s clears the other
        side's 15 s handshake timer, as it would in real time). 121 virtual
        seconds take about 0.6 real ones. DERP clients and lwIP keep real
        time."""
        if seconds < 0 or step <= 0:
            raise ConfigError(f"advance_clock: seconds {seconds!r} >= 0 and step {step!r} > 0, please")
        left = float(seconds)
        while left > 1e-9:
            dt = min(step, left)
            for p in self.peers:
                p.device.advance_clock(dt)
            left -= dt
            time.sleep(settle)

    def transfer(self, src: Peer, dst: Peer, nbytes: int, **kwargs: Any) -> TransferResult:
        """`spanza.network.transfer`, remembered for the report."""
        r = transfer(src, dst, nbytes, **kwargs)
        self.results.append(r)
        return r

    # -- report and lifetime --

    def report(self) -> str:
        """What the network is and did: relays (up, homes, drops), peers
        (relay link reconnects, impairments and their counters), transfers."""
        kinds = self.relay_kind if isinstance(self.relay_kind, str) else "+".join(self.relay_kind)
        lines = [f"network: {len(self.peers)} peers ({self.mode}), {len(self.relays)} relays ({kinds})"]
        for r in self.relays:
            st = r.stats()
            extra = ""
            if st:
                drops = sum(v for k, v in st.items() if k.startswith("drop_"))
                extra = f", home of {st.get('home_clients', 0)} peers, {drops} packets dropped"
            lines.append(f"  relay {r.name} {r.url} {'up' if r.alive else 'down'}{extra}")
        for p in self.peers:
            extra = ""
            try:
                # The raw counters (Peer.stats() leaves zeros out).
                derp: dict[str, Any] = (
                    p.gateway.stats()["derp"] if p.gateway is not None else p.device.derp_stats()["client"]
                )
                extra = f", relay link reconnected {derp.get('reconnects', 0)} times"
            except SpanzaError:  # closed
                pass
            for obj in (p.device, p.gateway):
                for i in obj.impairments() if obj is not None else ():
                    extra += f"; {i.hop} {i.settings}: {i.stats.packets} packets, {i.stats.dropped} dropped"
            home = self.relays[getattr(p, "home", 0)].name
            lines.append(f"  peer {p.address} ({p.mode}) first homed on {home}{extra}")
        lines += [f"  transfer: {t}" for t in self.results]
        return "\n".join(lines)

    def close(self) -> None:
        """Ends every peer and relay (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if _reports is not None:
            _reports.append(self.report())
        errors: list[BaseException] = []
        for p in reversed(self.peers):
            for s, _h in p.__dict__.get("_transfer_servers", {}).values():
                s.close()
            try:
                p.close()
            except Exception as e:
                errors.append(e)
        for r in reversed(self.relays):
            try:
                r.close()
            except Exception as e:
                errors.append(e)
        if self._tmp is not None:
            self._tmp.cleanup()
        if errors:
            raise errors[0]

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Network {len(self.peers)} peers {len(self.relays)} relays {self.mode} {self.relay_kind}>"
