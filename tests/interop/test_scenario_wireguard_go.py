"""The original Spanza container test, without containers.

Debian's wireguard-go runs in a network namespace this test creates,
configured with Debian's ``wg``; its peer's endpoint is a Spanza gateway on
the host end of a test-owned veth link. The other WireGuard peer is a
Spanza userspace peer (`spanza.scenario.Peer`) with an lwIP TCP/IP host,
either on the DERP transport or behind its own gateway. Between them: a
DERP relay, Spanza's `DerpServer` or Tailscale's derper.

HTTP both ways, over IPv4 and IPv6:

- ``curl`` inside the namespace -> the kernel routes to wireguard-go's TUN
  -> wireguard-go encrypts, UDP over the veth -> gateway -> DERP relay ->
  the Spanza peer -> its lwIP host's HTTP server; and back.
- the Spanza peer's ``http_get`` -> lwIP -> WireGuard -> relay -> gateway
  -> wireguard-go -> the namespace's kernel -> ``python3 -m http.server``
  bound to wireguard-go's tunnel address.

Small bodies are compared byte for byte, 1 MiB ones by sha256; the relay's
counters must have carried at least the bytes that crossed. Tunnel
addresses exist only in lwIP and inside the namespace; the namespace, the
veth, wireguard-go and the HTTP servers are removed in teardown, also when
the test fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import subprocess
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from ipaddress import ip_interface
from pathlib import Path
from typing import Any

import pytest

from spanza import DerpServer, Gateway
from spanza.keys import PrivateKey, PublicKey
from spanza.scenario import Peer, http_get
from tests.interop.gohelpers import Derper
from tests.interop.netns import NetNS, Veth, WgPeer, WireGuardGo, genkey, kill_tree, plain_env, require_root

pytestmark = pytest.mark.interop

# Tunnel addresses: wireguard-go's live in the namespace, the Spanza peer's in lwIP.
GO4, SPZ4 = "192.168.4.1", "192.168.4.2"
GO6, SPZ6 = "fd5b:4::1", "fd5b:4::2"
NS_PORT, SPZ_PORT = 8000, 8080
BIG = 1 << 20
MIN_RELAYED = 2 * BIG  # both 1 MiB bodies crossed the relay


@dataclass
class NamespacePeer:
    """wireguard-go as seen by `Peer.add_peer`: its WireGuard key, the DERP
    key of its gateway, and its tunnel addresses."""

    public_key: PublicKey
    derp_key: PublicKey
    interfaces: list = field(default_factory=lambda: [ip_interface(f"{GO4}/32"), ip_interface(f"{GO6}/128")])


def make_files(root: Path, who: str) -> dict[str, bytes]:
    """A small and a 1 MiB file in ``root``; returns {path: body}."""
    root.mkdir()
    files = {"/hello.txt": f"hello from {who}\n".encode(), "/big.bin": os.urandom(BIG)}
    for name, body in files.items():
        (root / name.lstrip("/")).write_bytes(body)
    return files


def start_http_server(ns: NetNS, address: str, port: int, directory: Path) -> subprocess.Popen:
    """Debian's python3 -m http.server inside the namespace, bound to a
    tunnel address (see wait_serving)."""
    return ns.popen(
        "python3",
        "-u",
        "-m",
        "http.server",
        "--bind",
        address,
        "--directory",
        str(directory),
        str(port),
        text=True,
        env=plain_env(),
    )


def wait_serving(p: subprocess.Popen, timeout: float = 10.0) -> None:
    """Returns once http.server listens (it says so on stdout)."""
    ready, _, _ = select.select([p.stdout], [], [], timeout)
    line = p.stdout.readline() if ready else ""
    if not line.startswith("Serving HTTP"):
        raise RuntimeError(f"http.server did not start: {line}{kill_tree(p)}")


def curl(ns: NetNS, url: str) -> bytes:
    """GET with curl inside the namespace; the body (fails on HTTP errors)."""
    p = subprocess.run(
        ns.cmd("curl", "-sS", "--fail", "-g", "--max-time", "15", url), capture_output=True, timeout=30, env=plain_env()
    )
    assert p.returncode == 0, f"curl {url}: exit {p.returncode}: {p.stderr.decode(errors='replace')}"
    return p.stdout


def derper_vars(derper: Derper) -> dict[str, int]:
    """derper's own counters (expvar, served to loopback on /debug/vars)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{derper.port}/debug/vars", timeout=5) as r:
        d = json.load(r)["derp"]
    return {k: int(d[k]) for k in ("packets_received", "packets_sent", "bytes_received", "bytes_sent")}


def server_vars(server: DerpServer) -> dict[str, int]:
    """Spanza's DerpServer counters, under derper's names."""
    st = server.stats()
    return {
        "packets_received": st["packets_recv"],
        "packets_sent": st["packets_sent"],
        "bytes_received": st["bytes_recv"],
        "bytes_sent": st["bytes_sent"],
    }


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


@pytest.mark.parametrize("mode", ["transport", "gateway"], ids=["peer-on-derp", "peer-behind-gateway"])
@pytest.mark.parametrize("relay_kind", ["spanza", "derper"], ids=["spanza-derp", "tailscale-derper"])
def test_http_between_wireguard_go_in_netns_and_spanza_peer(relay_kind: str, mode: str, tmp_path: Path) -> None:
    require_root("wireguard-go", "wg", "curl", "python3")
    ns_files = make_files(tmp_path / "ns", "the namespace")
    spz_files = make_files(tmp_path / "spanza", "spanza")
    go_priv, go_pub = genkey()

    with ExitStack() as stack:
        relay_stats: Callable[[], dict[str, int]]
        if relay_kind == "spanza":
            server = stack.enter_context(DerpServer())
            url, relay_stats = server.url, lambda: server_vars(server)
        else:
            derper = stack.enter_context(Derper())
            url, relay_stats = derper.url, lambda: derper_vars(derper)

        ns = stack.enter_context(NetNS())
        link = stack.enter_context(Veth(ns))
        go = stack.enter_context(WireGuardGo(ns))
        # wireguard-go's sidecar on the veth's host address.
        gw_key = PrivateKey.generate()
        gw = stack.enter_context(Gateway(url, gw_key, listen=(link.host_v4, 0)))
        spz = stack.enter_context(Peer(url, [f"{SPZ4}/24", f"{SPZ6}/64"], mode=mode))

        gw_addr = gw.add_remote_peer(spz.derp_key)
        go.configure(
            go_priv,
            0,
            addresses=[f"{GO4}/24", f"{GO6}/64"],
            peers=[WgPeer(str(spz.public_key), [f"{SPZ4}/32", f"{SPZ6}/128"], f"{gw_addr[0]}:{gw_addr[1]}")],
        )
        # HTTP servers on wireguard-go's tunnel addresses (they start while
        # the rest is wired up).
        servers = [start_http_server(ns, addr, NS_PORT, tmp_path / "ns") for addr in (GO4, GO6)]
        for p in servers:
            stack.callback(kill_tree, p)
        # A configured destination, so either side may start the handshake.
        gw.wg_endpoint = (link.ns_v4, go.listen_port)
        spz.add_peer(NamespacePeer(PublicKey(go_pub), gw_key.public_key))  # type: ignore[arg-type]
        gw.wait_connected(10)
        spz.wait_relay(10)

        for p in servers:
            wait_serving(p)
        stack.enter_context(spz.device.serve_http(SPZ_PORT, directory=str(tmp_path / "spanza")))
        before = relay_stats()

        def namespace_fetches() -> None:
            # curl -> kernel -> wireguard-go -> gateway -> relay -> the peer's lwIP.
            assert curl(ns, f"http://{SPZ4}:{SPZ_PORT}/hello.txt") == spz_files["/hello.txt"]
            assert curl(ns, f"http://[{SPZ6}]:{SPZ_PORT}/hello.txt") == spz_files["/hello.txt"]
            # Debian's wireguard-go keeps the default 208 KiB UDP receive
            # buffer; the gateway's bursts overflow it (UdpRcvbufErrors in
            # the namespace), so this also exercises lwIP's loss recovery.
            assert sha(curl(ns, f"http://{SPZ4}:{SPZ_PORT}/big.bin")) == sha(spz_files["/big.bin"])

        def spanza_fetches() -> None:
            # lwIP -> relay -> gateway -> wireguard-go -> kernel -> http.server.
            for host in (GO4, f"[{GO6}]"):
                status, body = http_get(spz.device, f"http://{host}:{NS_PORT}/hello.txt")
                assert (status, body) == (200, ns_files["/hello.txt"])
            status, body = http_get(spz.device, f"http://{GO4}:{NS_PORT}/big.bin", timeout=15)
            assert status == 200 and sha(body) == sha(ns_files["/big.bin"])

        # Whoever sends first starts the WireGuard handshake: each side
        # starts once per relay and once per peer mode.
        spanza_starts = (relay_kind == "spanza") == (mode == "gateway")
        for fetch in (spanza_fetches, namespace_fetches) if spanza_starts else (namespace_fetches, spanza_fetches):
            fetch()

        after = relay_stats()
        moved = {k: after[k] - before[k] for k in after}
        assert moved["bytes_received"] >= MIN_RELAYED and moved["bytes_sent"] >= MIN_RELAYED, moved
        # At most 1420-byte tunnel MTU: 2 MiB is well over 1000 datagrams.
        assert moved["packets_received"] >= MIN_RELAYED // 1500 and moved["packets_sent"] >= MIN_RELAYED // 1500, moved

        # wireguard-go completed a handshake with the Spanza peer, through
        # the gateway's socket, and carried both bodies.
        row = go.dump()[1]
        assert row[0] == str(spz.public_key)
        assert row[2] == f"{gw_addr[0]}:{gw_addr[1]}"
        assert int(row[4]) > 0
        assert int(row[5]) >= BIG and int(row[6]) >= BIG  # transfer rx, tx

        st = gw.stats()
        assert st["wg_rx_bytes"] >= BIG and st["wg_tx_bytes"] >= BIG, st
        assert st["derp_tx_bytes"] >= BIG and st["derp_rx_bytes"] >= BIG, st
        peer = st["peers"][spz.derp_key.tailscale]
        assert peer["dst_kind"] == "configured" and peer["dst"] == f"{link.ns_v4}:{go.listen_port}"
        assert st["drops_unknown_key"] == st["drops_no_destination"] == st["drops_send_error"] == 0, st

        info = {p.public_key: p for p in spz.device.peers}[PublicKey(go_pub)]
        assert info.last_handshake is not None and info.rx_bytes >= BIG and info.tx_bytes >= BIG, info
        side: dict[str, Any] = spz.stats(all=True)
        wgst = side["device"]
        assert wgst["handshakes_completed"] >= 1, wgst
        if spanza_starts:
            assert wgst["initiations_sent"] >= 1 and wgst["responses_received"] >= 1, wgst
        else:
            assert wgst["initiations_received"] >= 1 and wgst["responses_sent"] >= 1, wgst
        if mode == "gateway":
            assert side["gateway"]["drops"]["unknown_key"] == 0, side["gateway"]
