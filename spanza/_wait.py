"""Blocking C calls, waited for in slices so that Ctrl-C gets through.

A C call waits with the GIL released, but Python runs signal handlers only
between bytecodes: a call that waits 10 s in C ignores Ctrl-C for 10 s.
`sliced` calls it again and again with at most `SLICE_MS` each, so
KeyboardInterrupt (or any signal handler's exception) is raised within
that, and an interrupted call leaves the object as it was.
"""

from __future__ import annotations

import errno
import math
import time
from collections.abc import Callable

SLICE_MS = 50
MAX_MS = 2**31 - 1
_MAX_S = MAX_MS // 1000


def timeout_ms(timeout: float | None, what: str) -> int:
    """A timeout in seconds as whole milliseconds, rounded up (-1: None, wait
    for ever); TypeError/ValueError that say what to pass."""
    if timeout is None:
        return -1
    if (type(timeout) is float or type(timeout) is int) and 0 <= timeout < _MAX_S:  # NaN fails >= 0
        return math.ceil(timeout * 1000)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"{what}: timeout must be a number of seconds or None, not {type(timeout).__name__}")
    if math.isnan(timeout):
        raise ValueError(f"{what}: timeout is NaN; give a number of seconds >= 0, or None to wait for ever")
    if timeout < 0:
        raise ValueError(f"{what}: timeout must be >= 0 seconds or None, got {timeout}")
    if math.isinf(timeout):
        return -1
    return min(math.ceil(timeout * 1000), MAX_MS)


def sliced(
    call: Callable[[int], int], timeout: float | None, *, pending: int = -errno.ETIMEDOUT, what: str = "wait"
) -> int:
    """Runs ``call(ms)``, a C wait that returns `pending` when `ms` passed
    without a result, in slices of at most SLICE_MS until it returns
    something else or `timeout` seconds (None: for ever) are over. Returns
    its last result (`pending` on timeout). The first slice is a poll when
    `timeout` is 0."""
    ms = timeout_ms(timeout, what)
    # The first slice before any clock work: a packet already waiting costs
    # one C call.
    start = time.monotonic()
    rc = call(ms if 0 <= ms <= SLICE_MS else SLICE_MS)
    if rc != pending or 0 <= ms <= SLICE_MS:
        return rc
    deadline = None if ms < 0 else start + ms / 1000
    while True:
        if deadline is None:
            step = SLICE_MS
        else:
            step = max(0, min(SLICE_MS, math.ceil((deadline - time.monotonic()) * 1000)))
        rc = call(step)
        if rc != pending:
            return rc
        if deadline is not None and time.monotonic() >= deadline:
            return rc
