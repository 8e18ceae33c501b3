"""The DERP client's timer rules, sans-IO with a virtual clock (ms):
liveness (read timeout, ping timeout, idle pings) and reconnect backoff."""

from __future__ import annotations

from spanza._ffi import ffi, lib

NONE = 2**64 - 1
OK, READ, PING, SEND = (
    lib.DERP_LIVE_OK,
    lib.DERP_LIVE_READ_TIMEOUT,
    lib.DERP_LIVE_PING_TIMEOUT,
    lib.DERP_LIVE_SEND_PING,
)


def live(now, last_rx, *, idle_sent=0, oldest_ping=NONE, read=120000, ping=5000, idle=0):
    nxt = ffi.new("uint64_t *")
    act = lib.derp_client_liveness(now, last_rx, idle_sent, oldest_ping, read, ping, idle, nxt)
    return (act, nxt[0]) if act == OK else (act, None)


def test_read_timeout_is_120s_of_silence():
    t0 = 1_000_000
    assert live(t0, t0) == (OK, t0 + 120000)
    assert live(t0 + 119999, t0) == (OK, t0 + 120000)
    assert live(t0 + 120000, t0) == (READ, None)
    # any frame moves the deadline
    assert live(t0 + 119999, t0 + 60000) == (OK, t0 + 180000)


def test_unanswered_ping_times_out_after_5s():
    t0 = 500_000
    assert live(t0 + 4999, t0, oldest_ping=t0) == (OK, t0 + 5000)
    assert live(t0 + 5000, t0 + 4000, oldest_ping=t0) == (PING, None)
    # the read timeout still wins when it comes first
    assert live(t0 + 3000, t0 - 120000 + 3000, oldest_ping=t0) == (READ, None)


def test_idle_pings_only_when_quiet_and_none_outstanding():
    t0 = 10_000
    idle = 30000
    assert live(t0 + 29999, t0, idle=idle) == (OK, t0 + 30000)
    assert live(t0 + 30000, t0, idle=idle) == (SEND, None)
    # after sending one at t0+30000 (and while it is out) no second one
    assert live(t0 + 30001, t0, idle_sent=t0 + 30000, oldest_ping=t0 + 30000, idle=idle) == (OK, t0 + 35000)
    # answered (a frame arrived): the next is due idle ms after it
    assert live(t0 + 30010, t0 + 30005, idle_sent=t0 + 30000, idle=idle) == (OK, t0 + 60005)
    # off by default
    assert live(t0 + 10**6 - 1, t0 + 10**6 - 100000)[0] == OK


def test_backoff_grows_quadratically_to_5s_with_jitter():
    def b(n, rnd):
        return lib.derp_client_backoff_ms(n, 10, 5000, rnd)

    assert b(0, 2**31) == 0
    # a virtual sequence of consecutive failures: n*n*10 ms, half to one and a half
    for n in range(1, 40):
        d = min(n * n * 10, 5000)
        assert b(n, 0) == d // 2
        assert b(n, 2**31) == d // 2 + d // 2
        assert d // 2 <= b(n, 2**32 - 1) < d * 3 // 2 + 1
