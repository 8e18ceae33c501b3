"""Event-loop threads that own Spanza's sockets and timers."""

from __future__ import annotations

import os
import threading

from spanza._ffi import ffi, lib
from spanza._handle import Handle
from spanza.errors import SpanzaOSError, check


def _free_runtime(ptr: object) -> None:
    lib.rt_free(ptr)


class Runtime(Handle):
    """One C event-loop thread. Objects created on it are driven by it.

    Most users never create one: `default_runtime()` is shared by devices,
    and a DERP server and a gateway each get their own, so relay, gateways
    and devices use every core.
    """

    def __init__(self, name: str = "spanza") -> None:
        if not isinstance(name, str):
            raise TypeError(f"Runtime name must be a str, not {type(name).__name__}")
        self.name = name
        ptr = lib.rt_new(name.encode())
        if ptr == ffi.NULL:
            raise SpanzaOSError(f"cannot start runtime {name!r}", ffi.errno)
        self._ptr = ptr
        self._handle_open(lambda: _free_runtime(ptr), f"Runtime {name!r}")
        from spanza import _log

        _log.start()  # C log records reach `logging` from now on

    @property
    def ptr(self) -> object:
        """The C ``rt_t *``."""
        self._check_open()
        return self._ptr

    def sync(self) -> None:
        """Wait until the loop has run everything queued before this call."""
        check(lib.rt_py_sync(self.ptr), f"runtime {self.name}")

    @property
    def iterations(self) -> int:
        return int(lib.rt_iterations(self.ptr))

    def __repr__(self) -> str:
        return f"<Runtime {self.name!r}{' closed' if self.closed else ''}>"


_default: Runtime | None = None
_default_lock = threading.Lock()


def default_runtime() -> Runtime:
    """The process-wide runtime that devices use unless given another (a
    fresh one after close_all() or in a forked child)."""
    global _default
    with _default_lock:
        if _default is None or _default.closed:
            _default = Runtime("spanza")
        return _default


def _after_fork_in_child() -> None:
    global _default, _default_lock
    _default = None  # the parent's loop thread is not in the child
    _default_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def now_ms() -> int:
    """The runtimes' monotonic clock, in milliseconds."""
    return int(lib.rt_now_ms())
