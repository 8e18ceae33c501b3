"""Spanza's DERP client against Spanza's DERP server (spanza.derp.DerpServer),
plain and TLS (pinned and by CA), in one process."""

from __future__ import annotations

import os

import pytest

import spanza
from spanza.derp import DerpServer
from spanza.derp_client import PeerGone
from tests.support import wait_event


@pytest.mark.parametrize("mode", ["http", "tls_pin", "tls_ca"])
def test_exchange_and_peer_gone(mode, tmp_path):
    tls = mode != "http"
    with DerpServer(tls=tls, hostname="127.0.0.1" if tls else None) as s:
        kw: dict = {}
        if mode == "tls_pin":
            kw["pin_sha256"] = s.cert_name
        elif mode == "tls_ca":
            ca = tmp_path / "ca.pem"
            ca.write_text(s.ca_cert_pem)
            kw["ca_file"] = ca
        with spanza.DerpClient(s.url, os.urandom(32), **kw) as b:
            a = spanza.DerpClient(s.url, os.urandom(32), **kw)
            a.wait_connected(5)
            b.wait_connected(5)
            assert a.next_event(1).server_key == s.public_key
            for size in (1, 65536):
                d = os.urandom(size)
                a.send(b.public_key, d)
                assert b.recv(5) == (a.public_key, d)
                d = os.urandom(size)
                b.send(a.public_key, d)
                assert a.recv(5) == (b.public_key, d)
            assert a.ping(5) > 0
            a_pub = a.public_key
            a.close()
            assert wait_event(b, PeerGone, 5) == PeerGone(a_pub, PeerGone.DISCONNECTED)
