"""Arguments a caller gets wrong are refused with a message that says what
to pass; the UAPI socket treats CRLF line ends as wireguard-go does."""

from __future__ import annotations

import logging
import math
import os
import socket
import time

import pytest

import spanza
from spanza import Device


@pytest.mark.parametrize("port", [1.5, "x", True, [1]])
def test_listen_port_must_be_an_integer(port: object) -> None:
    with pytest.raises(TypeError, match=r"listen_port: want an integer in 0\.\.65535"):
        Device(listen_port=port)  # type: ignore[arg-type]


def test_listen_port_out_of_range() -> None:
    with pytest.raises(spanza.ConfigError, match=r"listen_port: 70000 is not in 0\.\.65535"):
        Device(listen_port=70000)


def test_address_of_the_wrong_type_names_the_parameter() -> None:
    with pytest.raises(TypeError, match=r"address: want an interface like '192\.168\.4\.1/24'.*not int 5"):
        Device(listen_port=0, address=5)  # type: ignore[arg-type]
    with pytest.raises(spanza.ConfigError, match=r"address: .*'10\.0\.0\.300/24'"):
        Device(listen_port=0, address="10.0.0.300/24")


@pytest.mark.parametrize(
    ("timeout", "error", "match"),
    [
        (math.nan, ValueError, r"read_packet: timeout is NaN; give a number of seconds >= 0, or None"),
        (-1, ValueError, r"read_packet: timeout must be >= 0 seconds or None, got -1"),
        ("1", TypeError, r"read_packet: timeout must be a number of seconds or None, not str"),
    ],
)
def test_read_packet_timeout_says_what_is_wrong(timeout: object, error: type, match: str) -> None:
    with Device(listen_port=None) as d:
        with pytest.raises(error, match=match):
            d.read_packet(timeout=timeout)  # type: ignore[arg-type]
        with pytest.raises(TimeoutError):
            d.read_packet(timeout=0.01)  # still usable


def test_uapi_crlf_get_is_closed_at_once_like_wireguard_go(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    """wireguard-go reads the operation line ('get=1\\n') and closes the
    connection on anything else, "get=1\\r\\n" included: no reply, no wait."""
    name = f"crlf{os.getpid() % 10000}"
    with (
        Device(listen_port=None, name=name, uapi_dir=str(tmp_path)),
        caplog.at_level(logging.WARNING, logger="spanza.device"),
    ):
        path = str(tmp_path / f"{name}.sock")
        for request in (b"get=1\r\n\r\n", b"set=1\r\nlisten_port=1\r\n\r\n", b"get=1\r\n"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(path)
                s.settimeout(5)
                s.sendall(request)
                t0 = time.monotonic()
                assert s.recv(100) == b""  # closed, without a reply
                assert time.monotonic() - t0 < 2
        deadline = time.monotonic() + 5
        while not any("ends in \\r\\n" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, [r.getMessage() for r in caplog.records]
            time.sleep(0.01)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(path)
            s.sendall(b"get=1\n\n")
            s.settimeout(5)
            assert s.recv(65536).endswith(b"errno=0\n\n")


def test_relay_url_is_url_everywhere_old_names_warn() -> None:
    with spanza.DerpServer() as relay:
        with pytest.warns(DeprecationWarning, match=r"Gateway\(derp_url=...\) is deprecated: call it url"):
            g = spanza.Gateway(derp_url=relay.url, private_key=spanza.PrivateKey.generate())
        with g:
            assert g.url == relay.url
            with pytest.warns(DeprecationWarning):
                assert g.derp_url == relay.url
        from spanza.scenario import Peer

        with pytest.warns(DeprecationWarning, match=r"Peer\(relay_url=...\)"):
            p = Peer(relay_url=relay.url, address="10.95.0.1/24")
        with p:
            assert p.url == relay.url
        with pytest.raises(TypeError, match="not both"), pytest.warns(DeprecationWarning):
            spanza.Gateway(relay.url, spanza.PrivateKey.generate(), derp_url=relay.url)


def test_public_keys_are_public_key_objects() -> None:
    with spanza.DerpServer() as relay, spanza.DerpClient(relay.url, spanza.PrivateKey.generate()) as c:
        c.wait_connected(10)
        assert isinstance(relay.public_key, spanza.PublicKey) and isinstance(c.public_key, spanza.PublicKey)
        c.send(c.public_key, b"to myself")
        src, data = c.recv(5)
        assert isinstance(src, spanza.PublicKey) and src == c.public_key and data == b"to myself"
        assert src == c.public_key.raw  # equal to its raw bytes, as when some APIs returned bytes
