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


def test_loop_thread_carries_the_runtime_name():
    # top -H, perf and gdb tell the runtimes' threads apart (the kernel
    # keeps 15 characters of a name).
    import os

    def names():
        out = set()
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/comm") as f:
                    out.add(f.read().strip())
            except FileNotFoundError:  # a thread that just ended
                pass
        return out

    with Runtime("relay-under-test-long") as rt:
        rt.sync()
        assert "relay-under-tes" in names()
    assert "relay-under-tes" not in names()
