"""`spanza up wg0.conf` against a Spanza device in this process: curl
through its SOCKS5 proxy and its --forward, the SOCKS5 replies for what
it cannot serve, and a clean exit on SIGINT."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator

import pytest

from spanza import Device
from spanza.keys import PrivateKey
from spanza.scenario import fixed_body_handler
from tests.integration._up import ROOT, Up, start_up
from tests.support import plain_env

BODY = b"hello through spanza up\n"


@pytest.fixture
def far_peer() -> Iterator[tuple[Device, PrivateKey]]:
    """The tunnel's other end (10.8.0.2, HTTP on 80) and the key `up` uses."""
    mine, far = PrivateKey.generate(), PrivateKey.generate()
    with Device(private_key=far, listen_port=0, address="10.8.0.2/24") as dev:
        dev.add_peer(mine.public_key, allowed_ips=["10.8.0.1/32"])
        dev.serve_http(80, fixed_body_handler(BODY))
        yield dev, mine


@pytest.fixture
def os_listener() -> Iterator[socket.socket]:
    """An OS TCP listener that `up --expose 7070:...` relays the tunnel to."""
    with socket.create_server(("127.0.0.1", 0)) as s:
        s.settimeout(10)
        yield s


@pytest.fixture
def up(far_peer, os_listener, tmp_path) -> Iterator[Up]:
    dev, mine = far_peer
    conf = tmp_path / "wg0.conf"
    conf.write_text(
        f"[Interface]\nPrivateKey = {mine.base64}\nAddress = 10.8.0.1/24\nDNS = 10.8.0.53\n\n"
        f"[Peer]\nPublicKey = {dev.public_key.base64}\nAllowedIPs = 10.8.0.2/32\n"
        f"Endpoint = 127.0.0.1:{dev.listen_port}\n"
    )
    up = start_up(
        conf,
        "10.8.0.2:80",
        "--expose",
        f"7070:127.0.0.1:{os_listener.getsockname()[1]}",
    )
    try:
        yield up
    finally:
        up.stop()


def _curl(*args: str) -> subprocess.CompletedProcess:
    if shutil.which("curl") is None:
        pytest.skip("needs curl")
    return subprocess.run(
        ["curl", "-sS", "-m", "10", *args],
        capture_output=True,
        timeout=20,
        check=False,
        env=plain_env(),
    )


def test_curl_through_socks5_and_forward(up):
    for args in (
        ["--socks5", up.socks5, "http://10.8.0.2/"],
        ["--socks5-hostname", up.socks5, "http://10.8.0.2/"],
        [f"http://{up.forward}/"],
    ):
        r = _curl(*args)
        assert (r.returncode, r.stdout) == (0, BODY), (args, r.stderr)
    assert up.stop() == 0


def test_expose_relays_a_tunnel_port_to_an_os_listener(up, far_peer, os_listener):
    dev, _ = far_peer
    assert _curl(f"http://{up.forward}/").returncode == 0  # the far peer learns up's endpoint
    with dev.connect(("10.8.0.1", 7070), timeout=10) as c:
        conn, _ = os_listener.accept()
        with conn:
            c.sendall(b"from the tunnel")
            assert conn.recv(100) == b"from the tunnel"
            conn.sendall(b"and back")
            assert c.recv(100) == b"and back"


def _socks(addr: str, request: bytes, methods: bytes = b"\x00") -> bytes:
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"\x05" + bytes([len(methods)]) + methods)
        hello = s.recv(2)
        if hello != b"\x05\x00":
            return hello
        s.sendall(request)
        return s.recv(10)


@pytest.mark.parametrize(
    "request_, code",
    [
        (
            b"\x05\x01\x00\x01" + bytes([10, 9, 9, 9]) + struct.pack("!H", 80),
            3,
        ),  # no route: network unreachable
        (
            b"\x05\x03\x00\x01" + bytes([10, 8, 0, 2]) + struct.pack("!H", 80),
            7,
        ),  # UDP ASSOCIATE: not supported
        (
            b"\x05\x01\x00\x03\x0bexample.com" + struct.pack("!H", 80),
            4,
        ),  # a name: host unreachable
        (
            b"\x05\x01\x00\x01" + bytes([10, 8, 0, 2]) + struct.pack("!H", 81),
            5,
        ),  # nothing listening: refused
    ],
)
def test_socks5_replies(up, request_, code):
    reply = _socks(up.socks5, request_)
    assert reply[:2] == bytes([5, code]), reply


def test_socks5_without_no_auth_method_is_refused(up):
    assert _socks(up.socks5, b"", methods=b"\x02") == b"\x05\xff"


def test_up_with_a_bad_file_says_which_line(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("[Interface]\nPrivateKey = x\n")
    r = subprocess.run(
        [sys.executable, "-m", "spanza", "up", str(conf)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert r.returncode == 1 and f"{conf}:2: privatekey" in r.stderr
