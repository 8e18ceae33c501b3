"""`Impairable`, the mixin that gives devices, gateways, hosts' wires and
DERP clients ``impair()`` (see `spanza.impair`). A module of its own so that
those classes can be defined without importing spanza.impair and the
dataclasses it needs (cold start): the first ``impair()`` imports it."""

from __future__ import annotations

import errno

from spanza._ffi import ffi, lib
from spanza.errors import ConfigError, check

TYPE_CHECKING = False
if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from typing import Any, ClassVar

    from spanza.impair import Direction, Impairment


class Impairable:
    """Mixin: ``impair()`` and ``clear_impairments()`` for an object whose
    hops are impaired in C. Subclasses set ``_IMPAIR_HOPS`` (hop name ->
    IMP_HOP_* kind), ``_impair_default_hop()`` and ``_impair_ptr()`` (a
    context manager that yields the C handle and keeps it alive)."""

    _IMPAIR_HOPS: ClassVar[dict[str, int]] = {}

    def _impair_ptr(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _impair_default_hop(self) -> str:
        return next(iter(self._IMPAIR_HOPS))

    def _impair_table(self) -> dict[tuple[str, int], Impairment]:
        table: dict[tuple[str, int], Impairment] | None = self.__dict__.get("_impairments")
        if table is None:
            table = self.__dict__.setdefault("_impairments", {})
        return table

    def _impair_forget(self, imp: Impairment, d: int) -> None:
        table = self._impair_table()
        if table.get((imp.hop, d)) is imp:
            del table[(imp.hop, d)]

    def impair(
        self,
        *,
        direction: Direction = "both",
        hop: str | None = None,
        seed: int = 0,
        **settings: Any,
    ) -> Impairment:
        """Impairs this object's link: ``loss``, ``delay``, ``jitter``,
        ``reorder``, ``duplicate``, ``corrupt``, ``rate``, ``queue``,
        ``queue_policy``, ``mtu``, ``blackhole``, ``burst``, ``gilbert``
        (see `spanza.impair`), seeded by ``seed``, in ``direction`` "out",
        "in" or "both", on ``hop`` (default: the object's relay or main
        link). Returns the `Impairment` (a context manager that lifts it)."""
        from spanza import impair as _i

        hop = hop or self._impair_default_hop()
        if hop not in self._IMPAIR_HOPS:
            raise ConfigError(f"hop: {hop!r} is not one of {', '.join(self._IMPAIR_HOPS)} for {type(self).__name__}")
        if direction not in _i._DIRS:
            raise ConfigError(f"direction: {direction!r} is not 'both', 'out' or 'in'")
        unknown = set(settings) - set(_i._SETTINGS)
        if unknown:
            raise ConfigError(
                f"impair: unknown setting(s) {', '.join(sorted(unknown))} (known: {', '.join(_i._SETTINGS)})"
            )
        kind = self._IMPAIR_HOPS[hop]
        dirs = _i._DIRS[direction]
        shown = {k: v for k, v in settings.items() if v not in (0, 0.0, None, False, "tail")}
        imp = _i.Impairment(self, hop, kind, dirs, shown | {"seed": seed, "direction": direction})
        table = self._impair_table()
        for i, d in enumerate(dirs):
            cfg = _i.impair_config(seed=(int(seed) + i) % 2**64, **settings)
            old = table.get((hop, d))
            if old is not None:
                st = old._op(d, lib.IMP_OP_STATS)
                old._freeze(d, st or _i.ImpairStats())
            with self._impair_ptr() as ptr:
                rc = lib.imp_py_op(kind, ptr, d, lib.IMP_OP_SET, cfg, ffi.NULL)
            if rc == -errno.ENOENT:
                raise ConfigError(f"hop {hop!r}: {type(self).__name__} has no such link now")
            check(rc, f"impair {hop}")
            table[(hop, d)] = imp
        return imp

    def impairments(self) -> list[Impairment]:
        """The impairments in place on this object."""
        seen: list[Impairment] = []
        for imp in self._impair_table().values():
            if imp not in seen:
                seen.append(imp)
        return seen

    def clear_impairments(self) -> None:
        """Lifts every impairment on this object (all hops, both directions)."""
        for imp in self.impairments():
            imp.lift()
        for kind in set(self._IMPAIR_HOPS.values()):
            for d in (lib.IMP_OUT, lib.IMP_IN):
                with self._impair_ptr() as ptr:
                    rc = lib.imp_py_op(kind, ptr, d, lib.IMP_OP_LIFT, ffi.NULL, ffi.NULL)
                if rc not in (0, -errno.ENOENT):
                    check(rc, "clear_impairments")
