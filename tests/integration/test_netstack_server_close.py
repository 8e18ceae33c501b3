"""Servers started with serve_http stop when their host closes (the device
case is in test_netstack_device.py).

Before, the ``serve_forever`` thread outlived the host: it kept polling its
closed listener's fd number, pinning whichever file reused that number (a
closed TCP listener then stayed in LISTEN and its port could not be bound
again) and spinning when that file was readable."""

from __future__ import annotations

import threading

from spanza.netstack import wired_pair


def _threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


def test_closing_the_host_stops_its_http_servers():
    a, b, wire = wired_pair("192.168.77.1/24", "192.168.77.2/24")
    try:
        srv = a.serve_http(8081)
        name = f"http {srv.address}"
        assert _threads(name)
        a.close()
        assert not _threads(name)
        srv.close()  # still fine afterwards
    finally:
        a.close()
        b.close()
        wire.close()


def test_a_server_closed_first_leaves_the_host_usable():
    a, b, wire = wired_pair("192.168.77.1/24", "192.168.77.2/24")
    try:
        with a.serve_http(8083):
            pass
        with a.serve_http(8083) as again:  # the port is free again
            assert again.port == 8083
    finally:
        a.close()
        b.close()
        wire.close()
