"""`spanza derper`: derper's flags mapped onto DerpServer, and a real run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from spanza._derper_cli import go_style_args, server_options
from spanza.cli import build_parser
from spanza.derp import write_self_signed_cert
from tests.integration._derp_raw import assert_relays, connect


def opts(*argv: str) -> dict:
    args = build_parser().parse_args(go_style_args(["derper", *argv]))
    return server_options(args)


def test_plain_http_on_a_non_443_port(tmp_path):
    o = opts("-a", "127.0.0.1:8080", "-c", str(tmp_path / "k"), "--stun=false")
    assert o["host"] == "127.0.0.1" and o["port"] == 8080 and not o["tls"]
    assert o["key_file_config"] == str(tmp_path / "k")


def test_go_style_single_dash_flags_and_equals(tmp_path):
    o = opts("-a=:3341", "-c=" + str(tmp_path / "k"), "-stun=false", "-tcp-write-timeout=500ms")
    assert o["host"] == "0.0.0.0" and o["port"] == 3341 and o["write_timeout_ms"] == 500


def test_dev_mode_uses_3340_a_fresh_key_and_the_env_mesh_key(monkeypatch):
    key = os.urandom(32).hex()
    monkeypatch.setenv("TAILSCALE_DERPER_MESH_KEY", key)
    o = opts("--dev", "-a", ":9999")
    assert o["port"] == 3340 and not o["tls"] and "key_file_config" not in o
    assert o["host"] == "127.0.0.1"  # what it prints is what it binds
    assert o["mesh_key"] == bytes.fromhex(key)


def test_manual_certmode_with_an_ip_makes_a_self_signed_cert(tmp_path):
    o = opts(
        "-a",
        "127.0.0.1:8443",
        "-c",
        str(tmp_path / "k"),
        "--certmode",
        "manual",
        "--hostname",
        "127.0.0.1",
        "--certdir",
        str(tmp_path),
    )
    assert o["tls"] and o["hostname"] == "127.0.0.1" and "cert_file" not in o


MANUAL_CERTS = "-a :8443 -c k --certmode manual --hostname derp.example.com --certdir"


def test_manual_certmode_uses_certdir_files_and_checks_sni(tmp_path):
    write_self_signed_cert("derp.example.com", tmp_path / "derp.example.com.crt", tmp_path / "derp.example.com.key")
    o = opts(*MANUAL_CERTS.split(), str(tmp_path))
    assert o["cert_file"].endswith("derp.example.com.crt") and o["require_sni"]


def test_manual_certmode_with_a_dns_name_needs_the_files(tmp_path):
    with pytest.raises(SystemExit, match="missing"):
        opts(*MANUAL_CERTS.split(), str(tmp_path))


def test_port_443_without_manual_certs_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="ACME"):
        opts("-a", ":443", "-c", str(tmp_path / "k"))


def test_mesh_flags(tmp_path):
    (tmp_path / "mesh").write_text("  " + "ab" * 32 + "\n")
    o = opts("-a", ":1", "-c", "k", "--mesh-psk-file", str(tmp_path / "mesh"), "--mesh-with", "a:1,b/c")
    assert o["mesh_key"] == bytes.fromhex("ab" * 32) and o["mesh_with"] == ["a:1", "b/c"]
    with pytest.raises(SystemExit, match="mesh-psk-file"):
        opts("-a", ":1", "-c", "k", "--mesh-with", "a:1")


def test_rate_flags(tmp_path):
    (tmp_path / "rate.json").write_text(
        json.dumps({"PerClientRateLimitBytesPerSec": 1000, "PerClientRateBurstBytes": 70000})
    )
    o = opts("-a", ":1", "-c", "k", "--rate-config", str(tmp_path / "rate.json"))
    assert o["rate_limit"] == 1000 and o["rate_burst"] == 70000
    o = opts("-a", ":1", "-c", "k", "--rate-limit", "5000", "--allowlist", "allow.txt")
    assert o["rate_limit"] == 5000 and o["allowlist_file"] == "allow.txt"


def test_unsupported_flags_say_so():
    with pytest.raises(SystemExit, match="allowlist"):
        opts("-a", ":1", "-c", "k", "--verify-clients")
    with pytest.raises(SystemExit, match="derp=false"):
        opts("-a", ":1", "-c", "k", "--derp=false")


def test_derper_command_serves_until_sigterm(tmp_path):
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        port = so.getsockname()[1]
    config = tmp_path / "var" / "lib" / "derper" / "derper.key"  # its directory is created, as derper does
    proc = subprocess.Popen(
        [sys.executable, "-m", "spanza", "derper", "-a", f"127.0.0.1:{port}", "-c", str(config), "--stun=false"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                a = connect(port)
                break
            except OSError:
                assert time.monotonic() < deadline, proc.stdout.read1(10000) if proc.poll() is not None else ""
                time.sleep(0.05)
        b = connect(port)
        assert_relays(a, b)
        key = json.loads(config.read_text())["PrivateKey"]
        assert key.startswith("privkey:")
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=15)[0].decode()
        assert proc.returncode == 0, out
        assert f"http://127.0.0.1:{port}/derp" in out and "shutting down" in out
        a.expect_closed()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_without_c_as_non_root_names_the_root_default(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(SystemExit, match="-c <file> not specified.*/var/lib/derper/derper.key"):
        opts("-a", ":1")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert opts("-a", ":1")["key_file_config"] == "/var/lib/derper/derper.key"


def test_genpsk_prints_a_wireguard_key():
    import base64

    out = subprocess.run([sys.executable, "-m", "spanza", "genpsk"], capture_output=True, text=True, check=True)
    assert len(base64.b64decode(out.stdout.strip(), validate=True)) == 32
