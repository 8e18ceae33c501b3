"""Event-loop threads that own Spanza's sockets and timers."""

from __future__ import annotations

import atexit
import threading

from spanza._ffi import ffi, lib
from spanza.errors import ClosedError, check


class Runtime:
    """One C event-loop thread. Objects created on it are driven by it.

    Most users never create one: `default_runtime()` is shared by devices,
    and a DERP server gets its own so relay and peers use both cores.
    """

    def __init__(self, name: str = "spanza") -> None:
        self._ptr = None
        if not isinstance(name, str):
            raise TypeError(f"Runtime name must be a str, not {type(name).__name__}")
        ptr = lib.rt_new(name.encode())
        if ptr == ffi.NULL:
            raise OSError(ffi.errno, f"cannot start runtime {name!r}")
        self._ptr = ptr
        self.name = name

    @property
    def ptr(self):  # noqa: ANN201 - cffi pointer
        if self._ptr is None:
            raise ClosedError(f"runtime {self.name!r} is closed")
        return self._ptr

    def sync(self) -> None:
        """Wait until the loop has run everything queued before this call."""
        check(lib.rt_py_sync(self.ptr), f"runtime {self.name}")

    @property
    def iterations(self) -> int:
        return int(lib.rt_iterations(self.ptr))

    def close(self) -> None:
        if self._ptr is not None:
            ptr, self._ptr = self._ptr, None
            lib.rt_free(ptr)

    @property
    def closed(self) -> bool:
        return self._ptr is None

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Runtime {self.name!r}{' closed' if self.closed else ''}>"


_default: Runtime | None = None
_default_lock = threading.Lock()


def default_runtime() -> Runtime:
    """The process-wide runtime that devices use unless given another."""
    global _default
    with _default_lock:
        if _default is None or _default.closed:
            _default = Runtime("spanza")
        return _default


def now_ms() -> int:
    """The runtimes' monotonic clock, in milliseconds."""
    return int(lib.rt_now_ms())


@atexit.register
def _close_default() -> None:  # objects still open at exit leak, by design
    pass
