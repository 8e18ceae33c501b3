"""C threads queue log records; a Python daemon thread forwards them to `logging`.

The thread starts with the first runtime, waits in C for records (the GIL
released), and emits each on the logger of its component (`COMPONENTS`).
It stops at exit after a last drain, and a forked child starts its own.
Errors logged by C threads are also counted, and the latest kept, so the
pytest plugin can fail the test during which they happened.
"""

from __future__ import annotations

import collections
import os
import sys
import threading

from spanza._ffi import ffi, lib

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from typing import Any

# logging's levels, named here so that this module need not import it.
DEBUG, INFO, WARNING, ERROR, CRITICAL = 10, 20, 30, 40, 50

# C module name -> the component's logger (the one its Python module uses).
COMPONENTS = {
    "dev": "spanza.device",
    "derp": "spanza.derp",
    "gateway": "spanza.gateway",
    "netstack": "spanza.netstack",
    "rt": "spanza.runtime",
    "wg": "spanza.wireguard",
    "crypto": "spanza.crypto",
}
_BATCH = 64
_WAIT_MS = 500  # the thread's wait; records wake it at once
_KEEP_ERRORS = 100


# A record of a C thread (a named tuple: typing.NamedTuple costs the import of typing).
Record = collections.namedtuple("Record", "level module thread message")


class LazyLogger:
    """A `logging.Logger` by name that imports `logging` only once a record
    could be shown. While no code has imported `logging`, nothing has
    configured it, so its last-resort handler would show WARNING and above
    only: records below that are dropped here, and a command that logs
    nothing (`spanza demo`) does not pay the ~5 ms of the import. Anything
    else is the real logger's (``log.handlers``, ``log.setLevel``...)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def _emit(self, level: int, msg: object, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if level < WARNING and "logging" not in sys.modules:
            return
        import logging

        # Past _emit and debug()/info()/...: %(funcName)s is the caller's.
        kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 2
        logging.getLogger(self.name).log(level, msg, *args, **kwargs)

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        self._emit(level, msg, args, kwargs)

    def debug(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self._emit(DEBUG, msg, args, kwargs)

    def info(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self._emit(INFO, msg, args, kwargs)

    def warning(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self._emit(WARNING, msg, args, kwargs)

    def error(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self._emit(ERROR, msg, args, kwargs)

    def exception(self, msg: object, *args: Any, exc_info: Any = True, **kwargs: Any) -> None:
        self._emit(ERROR, msg, args, {**kwargs, "exc_info": exc_info})

    def critical(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self._emit(CRITICAL, msg, args, kwargs)

    def isEnabledFor(self, level: int) -> bool:
        if "logging" not in sys.modules:
            return level >= WARNING
        import logging

        return logging.getLogger(self.name).isEnabledFor(level)

    def __getattr__(self, attr: str) -> Any:
        import logging

        return getattr(logging.getLogger(self.name), attr)

    def __repr__(self) -> str:
        return f"<LazyLogger {self.name}>"


def get_logger(name: str) -> logging.Logger:
    """The logger `name`, imported lazily (see LazyLogger)."""
    return LazyLogger(name)  # type: ignore[return-value]  # the same methods


logger = get_logger("spanza")


_emit_lock = threading.Lock()  # one drainer at a time: records stay in order
_buf: Any = ffi.new("struct spz_log_record[]", _BATCH)
_errors: collections.deque[tuple[int, Record]] = collections.deque(maxlen=_KEEP_ERRORS)
_errors_seen = 0  # ERROR records emitted so far (the sequence of _errors)
_thread: threading.Thread | None = None
_stop = threading.Event()
_start_lock = threading.Lock()


def component_logger(module: str) -> logging.Logger:
    """The logger for records of C module `module`."""
    return get_logger(COMPONENTS.get(module, f"spanza.{module}"))


def _emit_locked() -> list[Record]:
    global _errors_seen
    out = []
    while True:
        n = lib.spz_log_drain(_buf, _BATCH)
        for i in range(n):
            r = _buf[i]
            rec = Record(
                int(r.level),
                ffi.string(r.module).decode(errors="replace"),
                ffi.string(r.thread).decode(errors="replace"),
                ffi.string(r.message).decode(errors="replace"),
            )
            out.append(rec)
            if rec.level >= ERROR:
                _errors_seen += 1
                _errors.append((_errors_seen, rec))
            component_logger(rec.module).log(rec.level, "[%s] %s", rec.thread, rec.message)
        if n < _BATCH:
            return out


def drain() -> list[Record]:
    """Forwards the records queued now to `logging` (the thread does this by
    itself; call it to be sure everything logged so far is out); returns them."""
    with _emit_lock:
        return _emit_locked()


def errors_seen() -> int:
    """How many ERROR records have been forwarded to `logging` so far."""
    return _errors_seen


def errors_since(seen: int) -> list[Record]:
    """The ERROR records forwarded after `errors_seen()` returned `seen`
    (the latest ones only, if there were many)."""
    return [rec for seq, rec in list(_errors) if seq > seen]


def error_count() -> int:
    """How many errors C code has logged since the process started."""
    return int(lib.spz_log_errors())


def set_level(level: int | str) -> None:
    """The lowest level C code logs (default INFO): ``logging.DEBUG``,
    ``"DEBUG"``... Python's loggers filter what they pass on as usual."""
    if isinstance(level, str):
        import logging

        named = logging.getLevelName(level.upper())
        if not isinstance(named, int):
            raise ValueError(f"set_log_level: {level!r} is not a level name (DEBUG, INFO, WARNING, ERROR)")
        level = named
    if isinstance(level, bool) or not isinstance(level, int):
        raise TypeError(f"set_log_level: want a logging level (int or name), got {type(level).__name__}")
    lib.spz_log_set_level(level)


def _run(stop: threading.Event) -> None:
    while not stop.is_set():
        if lib.spz_log_wait(_WAIT_MS) > 0:  # GIL released while it waits
            drain()
    drain()


def start() -> None:
    """Starts the forwarding thread if it is not running (idempotent)."""
    global _thread
    if _thread is not None and _thread.is_alive():
        return
    with _start_lock:
        if _thread is not None and _thread.is_alive():
            return
        _stop.clear()
        t = threading.Thread(target=_run, args=(_stop,), name="spanza-log", daemon=True)
        t.start()
        _thread = t


def stop(timeout: float = 2.0) -> None:
    """Stops the forwarding thread after a last drain (at exit)."""
    global _thread
    t, _thread = _thread, None
    _stop.set()
    lib.spz_log_wake()
    if t is not None and t is not threading.current_thread():
        t.join(timeout)
    drain()


def _after_fork_in_child() -> None:
    # The thread is not in the child; the next runtime starts a new one.
    global _thread, _emit_lock, _start_lock, _stop
    _thread = None
    _emit_lock = threading.Lock()
    _start_lock = threading.Lock()
    _stop = threading.Event()


os.register_at_fork(after_in_child=_after_fork_in_child)
