"""The UAPI socket of a device: the raw protocol, and Debian's `wg` on it."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import time

import pytest

import spanza
from spanza.device import Device

_n = 0


def uname() -> str:
    global _n
    _n += 1
    return f"spzt{os.getpid() % 100000}u{_n}"


def talk(path: str, *chunks: bytes, read_until: int = 1, timeout: float = 5.0) -> bytes:
    """Sends the chunks on one connection; reads until `read_until` replies
    (each ending in a blank line after errno) arrived or the peer closed."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)  # blocking, as wg does: waits while the backlog is full
        s.settimeout(timeout)
        for c in chunks:
            s.sendall(c)
            time.sleep(0.01)
        buf = b""
        while buf.count(b"errno=") < read_until or not buf.endswith(b"\n\n"):
            d = s.recv(65536)
            if not d:
                break
            buf += d
        return buf
    finally:
        s.close()


@pytest.fixture
def dev_in_tmp(tmp_path):
    name = uname()
    with Device(private_key=os.urandom(32), name=name, uapi_dir=str(tmp_path)) as d:
        yield d, str(tmp_path / f"{name}.sock")


def test_socket_serves_get_and_set_like_wireguard_go(dev_in_tmp):
    d, path = dev_in_tmp
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    # A probe connection that sends nothing (wg does this) is harmless.
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.connect(path)
    probe.close()
    reply = talk(path, b"get=1\n\n")
    assert reply.startswith(b"private_key=") and reply.endswith(b"errno=0\n\n")
    assert f"listen_port={d.listen_port}\n".encode() in reply
    pub = os.urandom(32)
    pub_hex = pub.hex()
    # A request split over several writes, then a second one on the same connection.
    reply = talk(
        path, b"set=1\npublic_", f"key={pub_hex}\nallowed_ip=10.3.0.0/16\n".encode(), b"\nget=1\n\n", read_until=2
    )
    first, _, second = reply.partition(b"errno=0\n\n")
    assert first == b""
    assert f"public_key={pub_hex}\n".encode() in second and b"allowed_ip=10.3.0.0/16\n" in second
    assert [bytes(p.public_key) for p in d.peers] == [pub]
    # An invalid value: errno=-22 (negative, as wireguard-go), earlier lines applied.
    pub2 = os.urandom(32).hex()
    assert talk(path, f"set=1\npublic_key={pub2}\nallowed_ip=10.0.0.300/32\n\n".encode()) == b"errno=-22\n\n"
    assert len(d.peers) == 2
    # An unknown operation closes the connection without a reply.
    assert talk(path, b"hello=1\n\n") == b""
    stats = d.stats()
    assert stats["uapi_requests"] >= 3


def test_socket_file_removed_on_close_and_stale_file_replaced(tmp_path):
    name = uname()
    path = str(tmp_path / f"{name}.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()  # the file stays, nobody listens
    d = Device(name=name, uapi_dir=str(tmp_path))
    assert talk(path, b"get=1\n\n").endswith(b"errno=0\n\n")
    with pytest.raises(spanza.AddressInUseError, match="served by another live process"):
        Device(name=name, uapi_dir=str(tmp_path))
    assert os.path.exists(path)  # the failed second device left it alone
    d.close()
    assert not os.path.exists(path)


def test_many_idle_connections_do_not_lock_out_clients(dev_in_tmp):
    d, path = dev_in_tmp
    idle = []
    try:
        for _ in range(40):  # more than the server keeps
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            s.sendall(b"set=1\n")  # an unfinished request
            idle.append(s)
        assert talk(path, b"get=1\n\n").endswith(b"errno=0\n\n")
    finally:
        for s in idle:
            s.close()


# ---- Debian's wg(8) against the default directory ----


def need_wg():
    if os.geteuid() != 0:
        pytest.skip("needs root: wg(8) only looks in /var/run/wireguard")
    if shutil.which("wg") is None:
        pytest.skip("needs Debian's wireguard-tools (wg)")


def wg(*args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
    p = subprocess.run(["wg", *args], capture_output=True, text=True, timeout=10, input=stdin)
    if check and p.returncode != 0:
        raise AssertionError(f"wg {' '.join(args)}: {p.stderr}")
    return p


def genkey() -> tuple[str, str]:
    priv = wg("genkey").stdout.strip()
    return priv, wg("pubkey", stdin=priv + "\n").stdout.strip()


@pytest.fixture
def named_device():
    need_wg()
    name = uname()
    priv, pub = genkey()
    with Device(private_key=priv, name=name) as d:
        yield d, name, priv, pub
    assert not os.path.exists(f"/var/run/wireguard/{name}.sock")


def test_wg_show_reports_the_device(named_device):
    d, name, priv, pub = named_device
    assert base64.b64encode(bytes(d.public_key)).decode() == pub
    out = wg("show", name).stdout
    assert f"interface: {name}" in out
    assert f"public key: {pub}" in out
    assert f"listening port: {d.listen_port}" in out
    _, ppub = genkey()
    d.add_peer(ppub, endpoint="127.0.0.1:40000", allowed_ips=["10.8.0.2/32", "fd08::/64"], persistent_keepalive=25)
    dump = [line.split("\t") for line in wg("show", name, "dump").stdout.splitlines()]
    assert dump[0] == [priv, pub, str(d.listen_port), "off"]
    assert dump[1][0] == ppub and dump[1][1] == "(none)" and dump[1][2] == "127.0.0.1:40000"
    assert dump[1][3] == "10.8.0.2/32,fd08::/64" and dump[1][7] == "25"
    conf = wg("showconf", name).stdout
    assert f"PrivateKey = {priv}" in conf and "AllowedIPs = 10.8.0.2/32, fd08::/64" in conf


def test_wg_set_configures_the_device(named_device, tmp_path):
    d, name, _, _ = named_device
    _, ppub = genkey()
    psk = wg("genpsk").stdout.strip()
    (tmp_path / "psk").write_text(psk + "\n")
    wg(
        "set",
        name,
        "peer",
        ppub,
        "allowed-ips",
        "10.9.0.0/24,fd09::1/128",
        "endpoint",
        "[::1]:41000",
        "persistent-keepalive",
        "15",
        "preshared-key",
        str(tmp_path / "psk"),
    )
    (p,) = d.peers
    assert base64.b64encode(bytes(p.public_key)).decode() == ppub
    assert sorted(p.allowed_ips) == ["10.9.0.0/24", "fd09::1/128"]
    assert p.endpoint == "[::1]:41000" and p.persistent_keepalive == 15 and p.has_preshared_key
    # listen-port: rebinds the socket; a port in use is refused with errno.
    blocker = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    blocker.bind(("::", 0))
    try:
        busy = blocker.getsockname()[1]
        r = wg("set", name, "listen-port", str(busy), check=False)
        assert r.returncode != 0 and "Address" in r.stderr
    finally:
        blocker.close()
    wg("set", name, "listen-port", "0")
    out = wg("show", name, "listen-port").stdout.strip()
    assert int(out) == d.listen_port and d.listen_port > 0
    wg("set", name, "peer", ppub, "remove")
    assert d.peers == []
