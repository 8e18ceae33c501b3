"""Debian's real `wg` (wireguard-tools) talking to the core's UAPI through a
throwaway unix socket served from Python (the device layer's socket server
is another module; this checks the text protocol itself)."""

import os
import shutil
import socket
import subprocess
import threading

import pytest

from spanza._ffi import ffi, lib
from spanza.keys import PresharedKey, PrivateKey
from spanza.wireguard import Tunnel

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("wg") is None, reason="wireguard-tools not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for /run/wireguard"),
]

SOCK_DIR = "/var/run/wireguard"


class UapiServer:
    def __init__(self, tunnel: Tunnel, name: str) -> None:
        self.tunnel = tunnel
        self.lock = threading.Lock()
        os.makedirs(SOCK_DIR, mode=0o755, exist_ok=True)
        self.path = f"{SOCK_DIR}/{name}.sock"
        if os.path.exists(self.path):
            os.unlink(self.path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.stop = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                buf = b""
                while True:
                    try:
                        chunk = conn.recv(65536)
                    except TimeoutError:
                        break
                    if not chunk:
                        break  # `wg` probes with empty connections
                    buf += chunk
                    n = lib.wg_uapi_request_len(buf, len(buf))
                    if not n:
                        continue
                    req, buf = buf[:n], buf[n:]
                    out = ffi.new("char **")
                    ln = ffi.new("size_t *")
                    with self.lock:
                        rc = lib.wg_uapi_request(self.tunnel.dev, self.tunnel.now, req, len(req), out, ln)
                    if rc:
                        break
                    conn.sendall(ffi.buffer(out[0], ln[0])[:])
                    lib.wg_uapi_free(out[0])

    def close(self) -> None:
        self.stop = True
        self.thread.join(5)
        self.sock.close()
        if os.path.exists(self.path):
            os.unlink(self.path)


@pytest.fixture
def served(tmp_path):
    t = Tunnel(seed=1, listen_port=51820)
    name = f"spzwg{os.getpid() % 100000}"
    srv = UapiServer(t, name)
    try:
        yield t, name, tmp_path
    finally:
        srv.close()
        t.close()


def wg(*args, input=None):
    r = subprocess.run(["wg", *args], capture_output=True, text=True, timeout=20, input=input)
    return r.returncode, r.stdout, r.stderr


def test_wg_show_set_setconf(served):
    t, name, tmp = served
    priv = PrivateKey.generate()
    peer = PrivateKey.generate().public_key
    psk = PresharedKey.generate()
    (tmp / "priv").write_text(str(priv) + "\n")
    (tmp / "psk").write_text(str(psk) + "\n")
    rc, out, err = wg(
        "set",
        name,
        "listen-port",
        "40000",
        "private-key",
        str(tmp / "priv"),
        "fwmark",
        "0x10",
        "peer",
        str(peer),
        "allowed-ips",
        "10.0.0.5/24,fd00::/64",
        "endpoint",
        "[2001:db8::1]:51820",
        "persistent-keepalive",
        "25",
        "preshared-key",
        str(tmp / "psk"),
    )
    assert rc == 0, err
    assert t.private_key == priv and t.route("10.0.0.77") == peer
    rc, out, err = wg("show", name, "dump")
    assert rc == 0, err
    dev, p = [line.split("\t") for line in out.strip().splitlines()]
    assert dev == [str(priv), str(priv.public_key), "40000", "0x10"]
    assert p[:4] == [str(peer), str(psk), "[2001:db8::1]:51820", "10.0.0.0/24,fd00::/64"]
    # No handshake yet, nothing received; turning the keepalive on sent an
    # initiation (148 bytes) to get a session for it.
    assert p[4:] == ["0", "0", "148", "25"]

    rc, conf, err = wg("showconf", name)
    assert rc == 0, err
    assert f"PublicKey = {peer}" in conf and "AllowedIPs = 10.0.0.0/24, fd00::/64" in conf

    other = PrivateKey.generate().public_key
    (tmp / "c.conf").write_text(
        f"[Interface]\nPrivateKey = {priv}\nListenPort = 40001\n\n"
        f"[Peer]\nPublicKey = {other}\nAllowedIPs = 192.168.0.0/16\nEndpoint = 192.0.2.1:1\n"
    )
    rc, out, err = wg("setconf", name, str(tmp / "c.conf"))
    assert rc == 0, err
    assert t.peers == [other]  # setconf replaces peers
    rc, out, err = wg("set", name, "peer", str(other), "remove")
    assert rc == 0, err
    assert t.peers == []
    rc, out, err = wg("show", name)
    assert rc == 0 and "listening port: 40001" in out


def test_raw_socket_error_reply(served):
    t, name, tmp = served
    # wg validates what it sends, so speak to the socket directly.
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(f"{SOCK_DIR}/{name}.sock")
    s.sendall(b"set=1\nbogus=1\n\n")
    assert s.recv(100) == b"errno=-22\n\n"
    s.close()
