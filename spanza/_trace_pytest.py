"""The ``packet_trace`` fixture of the pytest plugin (spanza.pytest_plugin
imports these): a capture of everything the test does; a failing test's
report gets the capture's summary, the packets that did not arrive, and a
pcapng file that Wireshark opens."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

MAX_JOURNEYS_SHOWN = 20

_CAPTURE = pytest.StashKey[Any]()
_PCAPNG = pytest.StashKey[Any]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--spanza-trace",
        action="store_true",
        default=False,
        help="trace the packets of every test (the packet_trace fixture); a failing test's "
        "report gets the journeys and a pcapng file",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--spanza-trace", default=False):
        return
    for item in items:
        names = getattr(item, "fixturenames", None)
        if names is not None and "packet_trace" not in names:
            names.append("packet_trace")


@pytest.fixture
def packet_trace(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A `spanza.trace.Capture` of every packet (whole packets, handshake
    keys) while the test runs. Name objects for readable labels with
    ``packet_trace.follow(a, b, relay)`` (the test's peer/relay fixtures are
    followed automatically). If the test fails, its report shows the
    summary, the journeys that did not arrive, and a pcapng path."""
    from spanza import trace

    cap = trace.capture(snaplen=0)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:60]
    request.node.stash[_CAPTURE] = cap
    request.node.stash[_PCAPNG] = tmp_path_factory.mktemp("packet_trace") / f"{safe}.pcapng"
    try:
        yield cap
    finally:
        cap.stop()


def _follow_fixtures(cap: Any, item: pytest.Item) -> None:
    from spanza.errors import SpanzaError

    for value in getattr(item, "funcargs", {}).values():
        objs = [getattr(value, n) for n in ("relay", "a", "b") if hasattr(value, n)] or [value]
        for o in objs:
            try:
                cap.follow(o)
            except (SpanzaError, AttributeError, TypeError):
                pass  # not something traced, or closed already


def describe(cap: Any, pcapng: Any) -> str:
    """The report section: summary, journeys that did not arrive, the file."""
    from spanza import trace

    lines = [str(cap.summary())]
    bad = [j for j in cap.journeys() if j.status != "delivered"]
    if bad:
        lines.append(f"{len(bad)} packet(s) did not arrive; the last {min(len(bad), MAX_JOURNEYS_SHOWN)}:")
        lines += [str(j) for j in bad[-MAX_JOURNEYS_SHOWN:]]
    try:
        cap.write_pcapng(pcapng)
        lines.append(f"pcapng: {pcapng}\n  {' '.join(trace.tshark_command(pcapng))}")
    except OSError as e:
        lines.append(f"pcapng not written: {e}")
    return "\n".join(lines)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    cap = item.stash.get(_CAPTURE, None)
    if cap is not None and report.failed and call.when == "call":  # type: ignore[attr-defined]
        _follow_fixtures(cap, item)
        pcapng = item.stash[_PCAPNG]
        report.sections.append(("spanza packet trace", describe(cap, pcapng)))  # type: ignore[attr-defined]
        report.user_properties.append(("packet_trace_pcapng", str(pcapng)))  # type: ignore[attr-defined]
    return report
