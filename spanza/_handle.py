"""One base for every object that owns C resources (threads, fds, listeners).

A `Handle`:

- ``close()`` frees it; idempotent; ``with`` closes it too;
- dropped without ``close()``, the garbage collector frees it (a
  `weakref.finalize`) and a `ResourceWarning` says so, as the standard
  library does for sockets and files;
- used after ``close()``, raises `spanza.errors.ClosedError` naming it;
- used in a child of ``os.fork()``, raises `ClosedError` saying it belongs
  to the parent (the loop threads that drive it do not exist in the child);
- is listed for `close_all()` (a notebook cell run again) and closed at exit.

A subclass calls ``_handle_open(release, label)`` once its C object exists.
``release`` frees the C side and must not refer to the handle (directly or
through a bound method): the finalizer holds it, and a reference back would
keep the handle alive for ever. Work that needs the handle (waking waiters,
waiting for calls in flight) goes in ``_before_release``, which ``close()``
runs first.
"""

from __future__ import annotations

import atexit
import itertools
import os
import threading
import warnings
import weakref
from collections.abc import Callable

from spanza._log import get_logger
from spanza.errors import ClosedError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeVar

    _H = TypeVar("_H", bound="Handle")

__all__ = ["Handle", "close_all", "fork_generation", "live_handles"]

log = get_logger("spanza")

# Re-entrant: the collector may run a finalizer (which closes handles) in a
# thread that holds it.
_lock = threading.RLock()
_live: dict[int, weakref.ref[Handle]] = {}  # creation order -> handle
_order = itertools.count()
# Bumped in the child of every fork: handles made before it belong to the parent.
_generation = 0
_SPAWN_HINT = (
    "it was created before os.fork() and its threads do not exist in this child process; "
    "create new Spanza objects in the child, or use multiprocessing's 'spawn' start method "
    "(multiprocessing.set_start_method('spawn'))"
)


def fork_generation() -> int:
    """How many forks separate this process from the one that imported Spanza."""
    return _generation


def _collected(label: str, release: Callable[[], None]) -> None:
    """The finalizer: the handle was garbage-collected while open."""
    warnings.warn(f"unclosed {label}: close it (or use `with`)", ResourceWarning, stacklevel=2)
    try:
        release()
    except Exception:  # a finalizer must not raise
        log.exception("freeing unclosed %s", label)


class Handle:
    """Base class of Spanza's objects that own C resources (see the module)."""

    _label: str = "object"
    _closed: bool = True
    _generation: int = -1
    _finalizer: weakref.finalize[Any, Any] | None = None
    _release: Callable[[], None] | None = None
    _seq: int = -1

    def _handle_open(self, release: Callable[[], None], label: str, *, owned: bool = False) -> None:
        """Marks the handle open; `release` frees its C side (see the module).
        `owned`: another handle frees it (no finalizer of its own, not in
        close_all's list)."""
        self._label = label
        self._release = release
        self._generation = _generation
        self._closed = False
        if owned:
            return
        fin = weakref.finalize(self, _collected, label, release)
        fin.atexit = False  # the atexit hook below closes what is left, in order, without warnings
        self._finalizer = fin
        with _lock:
            self._seq = next(_order)
            _live[self._seq] = weakref.ref(self)

    def _before_release(self) -> None:
        """Hook: what close() does with the handle before `release` runs."""

    @property
    def closed(self) -> bool:
        """True once closed (or in a forked child, where it cannot be used)."""
        return self._closed or self._generation != _generation

    def _check_open(self) -> None:
        """Raises ClosedError when the handle cannot be used."""
        if self._generation != _generation and self._generation >= 0:
            raise ClosedError(f"{self._label} belongs to the parent process: {_SPAWN_HINT}")
        if self._closed:
            raise ClosedError(f"{self._label} is closed")

    def close(self) -> None:
        """Frees the object's threads, sockets and memory. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with _lock:
            _live.pop(self._seq, None)
        fin = self._finalizer
        if self._generation != _generation:
            # A parent's object in a forked child: its C side is the parent's.
            if fin is not None:
                fin.detach()
            return
        try:
            self._before_release()
        finally:
            if fin is None or fin.detach() is not None:
                if self._release is not None:
                    self._release()

    def __enter__(self: _H) -> _H:
        self._check_open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def live_handles() -> list[Handle]:
    """The open handles of this process, oldest first."""
    with _lock:
        items = list(_live.items())
    refs = [r for _, r in sorted(items, key=lambda kv: kv[0])]
    out = []
    for r in refs:
        h = r()
        if h is not None and not h.closed:
            out.append(h)
    return out


def close_all() -> int:
    """Closes every open Spanza object of this process, newest first (runtimes
    last); returns how many. For a notebook cell that is run again, or a
    script's clean-up (it also runs at exit). Objects made afterwards work as
    usual. In a test it would also close what fixtures made: use the
    fixtures' own clean-up there."""
    from spanza.runtime import Runtime

    handles = live_handles()
    handles.reverse()
    handles.sort(key=lambda h: isinstance(h, Runtime))  # stable: newest first within each group
    n = 0
    for h in handles:
        try:
            h.close()
            n += 1
        except Exception:
            log.exception("close_all: closing %s", h._label)
    return n


def _after_fork_in_child() -> None:
    global _generation, _lock
    _generation += 1
    _lock = threading.RLock()  # another thread may have held it at fork
    with _lock:
        refs = list(_live.values())
        _live.clear()
    # The parent's objects stay unusable here; their finalizers must not try
    # to free the parent's C state (its loop threads are not in this process).
    for r in refs:
        h = r()
        if h is not None and h._finalizer is not None:
            h._finalizer.detach()


def _at_exit() -> None:
    close_all()
    from spanza import _log

    _log.stop()  # after close_all, so the records of closing get out too


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_at_exit)
