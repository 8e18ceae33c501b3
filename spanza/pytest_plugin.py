"""pytest plugin (entry point ``pytest11``): Spanza's fixtures.

Fixtures:

- ``derp_server`` / ``derp_server_tls`` (session): an embedded DERP relay,
  plain HTTP or TLS with a self-signed certificate.
- ``make_derp_server``: a factory for relays the test owns (restart one on
  the same port with ``make_derp_server(port=old.port)``).
- ``make_peer``: a factory for userspace peers (`spanza.scenario.Peer`) on a
  relay: ``make_peer("192.168.4.1/24", mode="gateway")``.
- ``peer_pair``: two connected peers (``.a`` 192.168.4.1, ``.b``
  192.168.4.2) over ``derp_server``, parametrized over the gateway and the
  DERP-transport mode; choose with
  ``@pytest.mark.parametrize("peer_pair", ["gateway"], indirect=True)``.
- ``make_network``: a factory for `spanza.network.Network` (meshed relays,
  peers, faults, transfers): ``net = make_network(peers=2, relays=2)``.
- ``impair``: ``impair(obj, loss=0.1, ...)`` impairs any object with a link
  (`spanza.impair`); every impairment is lifted at the end of the test.

Everything a fixture starts is closed at its end. Errors logged by Spanza's
C threads during a test fail that test, with the messages; C log records go
to `logging`, so pytest's log capture shows them beside the failing test.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "spanza_allow_errors: C-side errors logged during this test do not fail it")


_BASELINE = pytest.StashKey[tuple[int, int]]()


def _baseline() -> tuple[int, int]:
    from spanza import _log

    _log.drain()
    return _log.error_count(), _log.errors_seen()


def _c_errors_since(item: pytest.Item) -> str | None:
    """The error messages C threads logged since the item's baseline (None
    if none), and moves the baseline on. Records reach `logging` by
    themselves; this only makes sure the queue is empty first."""
    from spanza import _log

    count, seen = _baseline()
    before, seen_before = item.stash.get(_BASELINE, (count, seen))
    item.stash[_BASELINE] = (count, seen)
    if count <= before or item.get_closest_marker("spanza_allow_errors"):
        return None
    errs = [f"[{r.thread}] {r.module}: {r.message}" for r in _log.errors_since(seen_before)]
    return "errors logged by Spanza's C threads:\n" + "\n".join(errs or ["(records dropped)"])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    # Errors logged by C threads while the test body ran fail the test itself.
    result = yield
    msg = _c_errors_since(item)
    if msg:
        pytest.fail(msg, pytrace=False)
    return result


@pytest.fixture(autouse=True)
def _spanza_c_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """Errors logged by C threads during fixture set-up or tear-down are
    reported as errors of the test they belong to."""
    request.node.stash[_BASELINE] = _baseline()
    yield
    msg = _c_errors_since(request.node)
    if msg:
        pytest.fail(msg, pytrace=False)


@pytest.fixture(scope="session")
def derp_server() -> Iterator[Any]:
    """An embedded DERP relay on 127.0.0.1 (plain HTTP), shared by the session."""
    from spanza import DerpServer

    with DerpServer() as server:
        yield server


@pytest.fixture(scope="session")
def derp_server_tls() -> Iterator[Any]:
    """An embedded DERP relay over TLS with a self-signed certificate for
    127.0.0.1; clients need ``insecure=True`` or its ``ca_cert_pem``."""
    from spanza import DerpServer

    with DerpServer(tls=True, hostname="127.0.0.1") as server:
        yield server


def _closing_factory(make_one: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """A fixture body: a factory whose products are closed, newest first,
    when the test ends."""
    made: list[Any] = []

    def make(*args: Any, **kwargs: Any) -> Any:
        obj = make_one(*args, **kwargs)
        made.append(obj)
        return obj

    yield make
    for obj in reversed(made):
        obj.close()


@pytest.fixture
def make_derp_server() -> Iterator[Callable[..., Any]]:
    """A factory for relays owned by the test: ``make_derp_server(**kwargs)``
    takes `spanza.DerpServer`'s arguments. All are closed at the end."""
    from spanza import DerpServer

    yield from _closing_factory(DerpServer)


@pytest.fixture
def make_peer(derp_server: Any) -> Iterator[Callable[..., Any]]:
    """A factory for userspace peers: ``make_peer(address, mode="transport",
    relay=derp_server, **kwargs)`` returns a `spanza.scenario.Peer`. TLS
    relays made by ``derp_server_tls`` are trusted automatically (insecure)."""
    from spanza.scenario import Peer

    def make(address: str | list[str], mode: str = "transport", relay: Any = None, **kwargs: Any) -> Any:
        relay = relay if relay is not None else derp_server
        url = relay if isinstance(relay, str) else relay.url
        if url.startswith("https://") and "ca_file" not in kwargs:
            kwargs.setdefault("insecure", True)
        return Peer(url, address, mode=mode, **kwargs)  # type: ignore[arg-type]

    yield from _closing_factory(make)


@dataclasses.dataclass
class PeerPair:
    """Two peers that are each other's WireGuard peer over one relay."""

    a: Any
    b: Any
    relay: Any
    mode: str


@pytest.fixture(params=["gateway", "transport"])
def peer_pair(request: pytest.FixtureRequest, make_peer: Callable[..., Any], derp_server: Any) -> PeerPair:
    """Peers 192.168.4.1 (``.a``) and 192.168.4.2 (``.b``), connected over
    ``derp_server`` in the parametrized mode ("gateway" or "transport")."""
    from spanza.scenario import connect

    mode = request.param
    a = make_peer("192.168.4.1/24", mode=mode)
    b = make_peer("192.168.4.2/24", mode=mode)
    connect(a, b)
    return PeerPair(a, b, derp_server, mode)


@pytest.fixture
def make_network() -> Iterator[Callable[..., Any]]:
    """A factory for scenario networks (`spanza.network.Network`'s
    arguments); all are closed at the end of the test."""
    from spanza.network import Network

    yield from _closing_factory(Network)


@pytest.fixture
def impair() -> Iterator[Callable[..., Any]]:
    """``impair(obj, **settings)``: obj.impair(**settings) (a Device,
    Gateway, DerpClient, MemoryWire or scenario Peer), lifted at the end."""
    made: list[Any] = []

    def do(obj: Any, **settings: Any) -> Any:
        imp = obj.impair(**settings)
        made.append(imp)
        return imp

    yield do
    for imp in reversed(made):
        imp.lift()  # (a closed owner's impairment just keeps its last counters)


# ---- packet tracing: the packet_trace fixture and --spanza-trace ----
from spanza._trace_pytest import (  # noqa: E402, F401 - registered as this plugin's
    packet_trace,
    pytest_addoption,
    pytest_collection_modifyitems,
    pytest_runtest_makereport,
)
