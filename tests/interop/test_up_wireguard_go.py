"""`spanza up wg0.conf` talks to Debian's wireguard-go in a network
namespace this test creates: curl on the host reaches an HTTP server inside
the namespace (on wireguard-go's tunnel address) through `up`'s SOCKS5
proxy and through its --forward. No root inside Spanza: only the namespace
side needs it."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.integration._up import start_up
from tests.interop.netns import (
    NetNS,
    Veth,
    WgPeer,
    WireGuardGo,
    genkey,
    kill_tree,
    plain_env,
    require_root,
)

pytestmark = pytest.mark.interop

GO4, SPZ4 = "10.98.0.1", "10.98.0.2"
HTTP_PORT = 8000


def _curl_until(args: list[str], want: bytes, timeout: float = 20.0) -> None:
    """curl until it returns `want` (the first try also waits for the handshake)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = subprocess.run(
            ["curl", "-sS", "-m", "5", *args],
            capture_output=True,
            timeout=15,
            check=False,
            env=plain_env(),
        )
        if last.returncode == 0 and last.stdout == want:
            return
        time.sleep(0.2)
    raise AssertionError(
        f"curl {' '.join(args)}: {last.returncode if last else '?'} "
        f"{last.stdout[:200] if last else b''!r} {last.stderr if last else ''}"
    )


def test_up_socks5_and_forward_reach_a_server_behind_wireguard_go(tmp_path):
    require_root("wireguard-go", "wg", "curl")
    go_priv, go_pub = genkey()
    priv, pub = genkey()
    www = tmp_path / "www"
    www.mkdir()
    (www / "hello.txt").write_bytes(b"hello from the namespace\n")
    with NetNS() as ns, Veth(ns) as link, WireGuardGo(ns) as go:
        # wireguard-go learns our endpoint from the handshake (no Endpoint for us).
        go.configure(go_priv, 0, addresses=[f"{GO4}/24"], peers=[WgPeer(pub, [f"{SPZ4}/32"])])
        server = ns.popen(
            sys.executable,
            "-m",
            "http.server",
            str(HTTP_PORT),
            "--bind",
            GO4,
            "--directory",
            str(www),
        )
        conf = tmp_path / "wg0.conf"
        conf.write_text(
            f"[Interface]\nPrivateKey = {priv}\nAddress = {SPZ4}/24\n\n"
            f"[Peer]\nPublicKey = {go_pub}\nAllowedIPs = {GO4}/32\n"
            f"Endpoint = {link.ns_v4}:{go.listen_port}\nPersistentKeepalive = 25\n"
        )
        up = start_up(conf, f"{GO4}:{HTTP_PORT}")
        try:
            forward, socks = up.forward, up.socks5
            want = b"hello from the namespace\n"
            _curl_until(["--socks5", socks, f"http://{GO4}:{HTTP_PORT}/hello.txt"], want)
            _curl_until([f"http://{forward}/hello.txt"], want)
            # wireguard-go saw our handshake and traffic
            dump = go.wg("show", go.ifname, "dump").stdout.splitlines()[1].split("\t")
            assert int(dump[4]) > 0 and int(dump[5]) > 0  # latest handshake, rx bytes
            assert up.stop() == 0
        finally:
            up.stop()
            kill_tree(server)
