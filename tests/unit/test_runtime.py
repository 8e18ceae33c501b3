import threading

import pytest

import spanza
from spanza.runtime import Runtime, now_ms


def test_runtime_starts_syncs_and_stops():
    with Runtime("t1") as rt:
        before = rt.iterations
        rt.sync()
        rt.sync()
        assert rt.iterations >= before + 1
    assert rt.closed
    with pytest.raises(spanza.ClosedError):
        rt.sync()


def test_runtime_sync_from_many_threads():
    with Runtime("t2") as rt:
        errors = []

        def worker():
            try:
                for _ in range(200):
                    rt.sync()
            except Exception as e:  # pragma: no cover
                errors.append(e)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert not errors
        assert all(not t.is_alive() for t in threads)


def test_clock_is_monotonic():
    a = now_ms()
    b = now_ms()
    assert b >= a > 0
