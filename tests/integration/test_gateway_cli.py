"""`spanza gateway`, `spanza keygen`, `spanza pubkey` as a user runs them."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys

import pytest

from spanza import DerpServer
from spanza.errors import ConfigError
from spanza.keys import PrivateKey, load_key_file


def spanza(*args: str, input: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spanza", *args], input=input, capture_output=True, text=True, timeout=timeout
    )


def test_keygen_and_pubkey_match_wg():
    priv = spanza("keygen").stdout.strip()
    assert len(priv) == 44 and PrivateKey(priv).raw[0] & 7 == 0  # base64, clamped
    pub = spanza("pubkey", input=priv + "\n").stdout.strip()
    assert pub == str(PrivateKey(priv).public_key)
    if shutil.which("wg"):
        assert subprocess.run(["wg", "pubkey"], input=priv + "\n", capture_output=True, text=True).stdout.strip() == pub
    ts = spanza("keygen", "--tailscale").stdout.strip()
    assert re.fullmatch(r"privkey:[0-9a-f]{64}", ts)
    assert spanza("pubkey", input=ts).stdout.strip() == PrivateKey(ts).public_key.tailscale
    assert spanza("pubkey", "--tailscale", input=priv).stdout.strip() == PrivateKey(priv).public_key.tailscale
    bad = spanza("pubkey", input="not a key\n")
    assert bad.returncode == 1 and "pubkey" in bad.stderr


def test_key_file_created_once_and_read_in_every_form(tmp_path):
    path = tmp_path / "gw.json"
    out = spanza("gateway", "--key-file", str(path), "--show-pubkey")
    assert out.returncode == 0, out.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = json.loads(path.read_text())
    priv = PrivateKey(doc["PrivateKey"])  # derper's format
    assert out.stdout.strip() == priv.public_key.tailscale
    # Shown again: the same key, the file untouched.
    assert spanza("gateway", "--key-file", str(path), "--show-pubkey").stdout == out.stdout
    for text in (priv.tailscale, priv.base64, priv.hex(), priv.tailscale + "\n"):
        p = tmp_path / "plain"
        p.write_text(text)
        assert load_key_file(p) == priv
    for text, msg in (
        ("{", "JSON"),
        ('{"Other": 1}', "PrivateKey"),
        ("a\nb", "several lines"),
        ("nodekey:" + "11" * 32, "privkey"),
    ):
        p = tmp_path / "bad"
        p.write_text(text)
        with pytest.raises(ConfigError, match=msg):
            load_key_file(p)
    with pytest.raises(ConfigError, match="does not exist"):
        load_key_file(tmp_path / "missing")


def test_gateway_command_relays_until_sigterm(tmp_path):
    ka, kb = PrivateKey.generate(), PrivateKey.generate()
    (tmp_path / "a.key").write_text(ka.tailscale + "\n")
    (tmp_path / "b.key").write_text(json.dumps({"PrivateKey": kb.tailscale}))
    wa = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    wa.bind(("127.0.0.1", 0))
    wb = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    wb.bind(("127.0.0.1", 0))
    for s in (wa, wb):
        s.settimeout(15)
    procs = []
    with DerpServer() as relay:
        try:
            for keyfile, peer, w in ((tmp_path / "a.key", kb, wa), (tmp_path / "b.key", ka, wb)):
                procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "spanza",
                            "gateway",
                            "--derp-url",
                            relay.url,
                            "--key-file",
                            str(keyfile),
                            "--remote-peer",
                            peer.public_key.tailscale,
                            "--wg-endpoint",
                            "{}:{}".format(*w.getsockname()),
                            "-v",
                        ],
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        text=True,
                    )
                )
            endpoints = []
            for p in procs:
                line = p.stdout.readline()
                m = re.match(r"remote peer nodekey:[0-9a-f]{64}: endpoint 127\.0\.0\.1:(\d+)", line)
                assert m, line + p.stderr.read() if p.poll() is not None else line
                endpoints.append(("127.0.0.1", int(m.group(1))))
                assert "relaying via" in p.stdout.readline()
            # The clients connect in the background: resend until through.
            for _ in range(100):
                wa.sendto(b"cli hello", endpoints[0])
                try:
                    wb.settimeout(0.2)
                    if wb.recvfrom(100) == (b"cli hello", endpoints[1]):
                        break
                except TimeoutError:
                    continue
            else:
                pytest.fail("nothing relayed by the spanza gateway processes")
            wb.sendto(b"cli reply", endpoints[1])
            assert wa.recvfrom(100) == (b"cli reply", endpoints[0])
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            outs = [p.communicate(timeout=15) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert "connected to DERP server" in err  # -v logs the connection (the DERP client)
        counters = [ln for ln in err.splitlines() if "INFO spanza.gateway: counters {" in ln]
        assert counters, err  # and the counters at exit, as JSON, nonzero ones
        st = json.loads(counters[-1].split("counters ", 1)[1])
        assert st["derp"]["tx_packets"] >= 1 and st["wg"]["tx_datagrams"] >= 1
        assert not re.search(r"nodekey:[0-9a-f]{0,63}[^0-9a-f]|\[[A-Za-z0-9+/]{5}\]", err.replace("...", ""))
    wa.close()
    wb.close()


def test_gateway_command_errors(tmp_path):
    url, peer = ("--derp-url", "http://127.0.0.1:1/derp"), ("--remote-peer", "nodekey:" + "11" * 32)
    cases = [
        (peer, "--derp-url"),
        (url, "--remote-peer"),
        (url + ("--remote-peer", "nodekey:12"), "remote peer"),
        (url + peer + ("--wg-endpoint", "localhost"), "wg_endpoint"),
    ]
    for args, says in cases:
        r = spanza("gateway", "--key-file", str(tmp_path / "k"), *args)
        assert r.returncode == 1 and says in r.stderr, (args, r.stderr)
    assert load_key_file(tmp_path / "k").public_key  # created by the first run


def test_gateway_example_runs():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    script = os.path.join(root, "examples", "gateway_and_derp.py")
    if not os.path.exists(script):
        pytest.skip("examples/ is not part of this tree (the `make asan` copy)")
    p = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=60, cwd=root)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "10.0.0.1 -> 10.0.0.2: echo reply" in p.stdout and "10.0.0.2 -> 10.0.0.1: echo reply" in p.stdout
    assert p.stdout.rstrip().endswith("ok")


def test_gateway_refused_by_the_allowlist_says_so_and_exits(tmp_path):
    (tmp_path / "allow").write_text(PrivateKey.generate().public_key.tailscale + "\n")
    with DerpServer(allowlist_file=str(tmp_path / "allow")) as relay:
        r = spanza(
            "gateway",
            "--key-file",
            str(tmp_path / "k"),
            "--derp-url",
            relay.url,
            "--remote-peer",
            "nodekey:" + "11" * 32,
            timeout=20,
        )
    key = load_key_file(tmp_path / "k").public_key.tailscale
    assert r.returncode == 1, r.stderr
    assert f"refused this gateway's key {key}" in r.stderr and "allowlist" in r.stderr
