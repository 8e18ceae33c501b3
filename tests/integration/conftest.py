"""Fixtures the integration tests share: a DERP server with bystanders for the
hostile-input tests (a module may define its own `server`, as
test_derp_server.py does), and host pairs for the netstack tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import spanza
from spanza.netstack import Host, MemoryWire, wired_pair
from tests.integration._derp_raw import MESH_KEY, connect
from tests.integration.netstack_helpers import A4, A6, B4, B6


@pytest.fixture(scope="module")
def server():
    """A plain-HTTP DerpServer that admits mesh peers with MESH_KEY."""
    with spanza.DerpServer(mesh_key=MESH_KEY) as s:
        yield s


@pytest.fixture(scope="module")
def bystanders(server):
    """Two registered clients: after any hostility, they must still relay."""
    a, b = connect(server.port), connect(server.port)
    yield a, b
    a.close()
    b.close()


@dataclass
class WireGuardLink:
    """Two spanza.Devices on loopback UDP carrying two hosts: the link of
    ``link_pair``'s "wireguard" variant."""

    a: Any
    b: Any


@pytest.fixture(params=["wire", "wireguard"])
def link_pair(request: pytest.FixtureRequest) -> Iterator[tuple[Host, Host, Any]]:
    """Hosts .1/fd00::1 and .2/fd00::2 joined by a memory wire, or by two
    WireGuard devices over loopback UDP (Device(address=...)): the same
    tests hold on both."""
    if request.param == "wire":
        yield from _wired()
        return
    ka, kb = spanza.PrivateKey.generate(), spanza.PrivateKey.generate()
    with (
        spanza.Device(ka, address=[f"{A4}/24", f"{A6}/64"]) as da,
        spanza.Device(kb, address=[f"{B4}/24", f"{B6}/64"]) as db,
    ):
        da.add_peer(kb.public_key, endpoint=("127.0.0.1", db.listen_port), allowed_ips=[f"{B4}/32", f"{B6}/128"])
        db.add_peer(ka.public_key, endpoint=("127.0.0.1", da.listen_port), allowed_ips=[f"{A4}/32", f"{A6}/128"])
        yield da.host, db.host, WireGuardLink(da, db)


def _wired() -> Iterator[tuple[Host, Host, MemoryWire]]:
    a, b, wire = wired_pair([f"{A4}/24", f"{A6}/64"], [f"{B4}/24", f"{B6}/64"])
    try:
        yield a, b, wire
    finally:
        a.close()
        b.close()
        wire.close()


@pytest.fixture
def pair() -> Iterator[tuple[Host, Host, MemoryWire]]:
    yield from _wired()


@pytest.fixture
def ack_batch() -> Iterator[None]:
    """Puts the ACK batch setting (process-wide) back after the test."""
    yield
    from spanza._ffi import lib

    assert lib.ns_tcp_set_ack_batch(lib.NS_ACK_BATCH_DEFAULT) == 0
