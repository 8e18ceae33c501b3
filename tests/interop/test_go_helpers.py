"""The referees themselves work: derper relays between two Go clients."""

import pytest

from tests.interop.gohelpers import Derper, GoDerpClient

pytestmark = pytest.mark.interop


@pytest.mark.parametrize("tls", [False, True], ids=["http", "tls"])
def test_derper_relays_between_go_clients(tls):
    with Derper(tls=tls) as d:
        opts = {"insecure": True} if tls else {}
        with GoDerpClient(d.url, **opts) as a, GoDerpClient(d.url, **opts) as b:
            a.send(b.public_key, b"hello")
            src, data = b.recv()
            assert (src, data) == (a.public_key, b"hello")
            assert a.ping()["ok"]
