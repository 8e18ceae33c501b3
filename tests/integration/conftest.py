"""Fixtures the DERP server's hostile-input tests share (a module may define
its own `server` instead, as test_derp_server.py does)."""

from __future__ import annotations

import pytest

import spanza
from tests.integration._derp_raw import MESH_KEY, connect


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
