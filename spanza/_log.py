"""C threads queue log records; Python drains them into `logging`.

Errors logged by C threads are also counted, so the pytest plugin can fail
the test during which they happened.
"""

from __future__ import annotations

import logging

from spanza._ffi import ffi, lib

logger = logging.getLogger("spanza")
_BATCH = 64
_buf = ffi.new("struct spz_log_record[]", _BATCH)


def drain() -> list[tuple[int, str, str, str]]:
    """Forward queued C log records to `logging`; return them."""
    out = []
    while True:
        n = lib.spz_log_drain(_buf, _BATCH)
        for i in range(n):
            r = _buf[i]
            rec = (
                r.level,
                ffi.string(r.module).decode(errors="replace"),
                ffi.string(r.thread).decode(errors="replace"),
                ffi.string(r.message).decode(errors="replace"),
            )
            out.append(rec)
            logging.getLogger(f"spanza.{rec[1]}").log(rec[0], "[%s] %s", rec[2], rec[3])
        if n < _BATCH:
            return out


def error_count() -> int:
    """How many errors C code has logged since the process started."""
    return int(lib.spz_log_errors())


def set_level(level: int) -> None:
    """The lowest level C code queues for Python."""
    lib.spz_log_set_level(level)
