"""Why a DERP connection is not up, said once, for every waiter.

The DERP clients (a DerpClient, a gateway's, a device's DERP bind) keep
their last failure with its cause (``last_errno``) and state. A waiter
asks `relay_failure` between short waits: a refusal or a failure that will
not go away by waiting (connection refused, TLS against a plain relay,
an HTTP server that is not DERP) raises at once instead of at the timeout;
`not_connected` is the timeout's message, never "last error: none".
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable

from spanza._wait import SLICE_MS, timeout_ms
from spanza.errors import RelayError, RelayRefusedError, SpanzaTimeoutError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Failures in a row before a never-connected client is declared unreachable:
# more than one, so a relay started a moment after its client still works.
FAIL_FAST_AFTER = 3
# errno-style causes that waiting does not cure (a missing relay, the wrong
# scheme, not a DERP server, a name that does not resolve).
_HOPELESS = {errno.ECONNREFUSED, errno.EPROTO, errno.EHOSTUNREACH, errno.ENETUNREACH}
# The DERP client's states (DERP_CLIENT_* in derp_client_py.h) by number,
# with their names in stats() and what a wait stuck in them means.
BACKOFF, RESOLVING, CONNECTING, TLS, UPGRADING, CONNECTED, CLOSED, REFUSED = range(1, 9)
STATE_NAMES = {
    BACKOFF: "backoff",
    RESOLVING: "resolving",
    CONNECTING: "connecting",
    TLS: "tls",
    UPGRADING: "upgrading",
    CONNECTED: "connected",
    CLOSED: "closed",
    REFUSED: "refused",
}
_STATE_HINT = {
    BACKOFF: "waiting to retry",
    RESOLVING: "resolving the relay's host name",
    CONNECTING: "no answer yet to the TCP connect (host down, or a firewall dropping it?)",
    TLS: "no answer yet to the TLS handshake (a plain relay? use http://)",
    UPGRADING: "no answer yet to the DERP handshake (is the URL a DERP server?)",
}
# Slices a waiter sleeps in C between checks (and Ctrl-C gets through).
SLICE_S = SLICE_MS / 1000


_BY_NAME = {name: n for n, name in STATE_NAMES.items()}


def state(client: dict[str, Any]) -> int:
    """The state number of a client's counters (a number, or its name)."""
    s = client.get("state", 0)
    return _BY_NAME.get(s, 0) if isinstance(s, str) else int(s)


def relay_failure(url: str, client: dict[str, Any], last_error: str) -> RelayError | None:
    """The error to raise now for a client in this state, or None to keep
    waiting. `client`: the DERP client's counters (derp_client_stats)."""
    if state(client) == REFUSED:
        return RelayRefusedError(
            f"relay {url}: {last_error} (the client stopped retrying; call reconnect() once it is allowed)",
            errno.EACCES,
        )
    cause = int(client.get("last_errno", 0))
    if client.get("connects", 0) == 0 and int(client.get("failures", 0)) >= FAIL_FAST_AFTER and cause in _HOPELESS:
        return RelayError(f"relay {url} unreachable: {last_error}", cause)
    return None


def not_connected(url: str, client: dict[str, Any], last_error: str, timeout: float | None) -> SpanzaTimeoutError:
    """The timeout's message: the last failure, or what the attempt is stuck on."""
    why = last_error or _STATE_HINT.get(state(client), "no answer yet")
    return SpanzaTimeoutError(f"not connected to the relay {url} within {timeout} s: {why}")


def wait_connected(
    url: str,
    wait_once: Callable[[int], int],
    client_stats: Callable[[], dict[str, Any]],
    last_error: Callable[[], str],
    timeout: float | None,
) -> int:
    """Waits in slices: `wait_once(ms)` returns 0 when connected, -ETIMEDOUT
    when the slice ended (other codes are returned to the caller). Between
    slices a hopeless failure raises (RelayError), and so does the timeout
    (TimeoutError saying why)."""
    if timeout_ms(timeout, "wait_connected") < 0:
        timeout = None
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = SLICE_S if deadline is None else min(SLICE_S, max(0.0, deadline - time.monotonic()))
        rc = wait_once(int(left * 1000))
        if rc != -errno.ETIMEDOUT and rc != -errno.EACCES:
            return rc
        st = client_stats()
        err = relay_failure(url, st, last_error())
        if err is not None:
            raise err
        if deadline is not None and time.monotonic() >= deadline:
            raise not_connected(url, st, last_error(), timeout)
