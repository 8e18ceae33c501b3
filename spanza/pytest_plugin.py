"""pytest plugin (entry point ``pytest11``): Spanza's fixtures.

Errors logged by Spanza's C threads during a test fail that test, with the
messages; C log records are forwarded to `logging`, so pytest's log capture
shows them beside the failing test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "spanza_allow_errors: C-side errors logged during this test do not fail it"
    )


@pytest.fixture(autouse=True)
def _spanza_c_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    from spanza import _log

    _log.drain()
    before = _log.error_count()
    yield
    records = _log.drain()
    if request.node.get_closest_marker("spanza_allow_errors"):
        return
    if _log.error_count() > before:
        errs = [f"[{r[2]}] {r[1]}: {r[3]}" for r in records if r[0] >= 40]
        pytest.fail("errors logged by Spanza's C threads:\n" + "\n".join(errs), pytrace=False)
