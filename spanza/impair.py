"""Impairments on any hop: loss, delay, reordering... set from Python, done in C.

Every object with a link has ``impair(...)``: `Device` (its UDP socket, or
its DERP transport), `Gateway` (its DERP connection, or its UDP side),
`DerpClient`, `MemoryWire`, and `spanza.scenario.Peer` (its relay link)::

    with peer.impair(loss=0.1, delay=0.02, jitter=0.005, seed=1) as imp:
        ...                       # traffic crosses the impaired link
    print(imp.stats.dropped_loss)  # what it did (kept after it is lifted)

The engine (csrc/impair/) runs on the hop's loop thread, packet by packet,
with its own PRNG: the same seed and the same packets give the same drops,
delays and corruptions on every run. Settings change between two packets
(the call runs on the owning loop), so an impairment can be set, changed
and lifted while traffic flows. Lifting releases what it holds, in order.

Knobs (all off by default):

- ``loss``: probability a packet is dropped; with ``burst`` (mean length of
  a loss burst, in packets) the losses come in bursts (a two-state
  Gilbert-Elliott chain with the same average loss); ``gilbert=(p, r,
  loss_bad, loss_good)`` sets the chain directly.
- ``delay`` and ``jitter`` (seconds): each packet waits delay +- uniform
  jitter; the order is kept (``reorder`` is its own knob).
- ``reorder``: probability a packet skips the delay and overtakes the held
  ones (netem's meaning: it needs a delay).
- ``duplicate``: probability a packet is sent twice; ``corrupt``: that one
  random bit is flipped.
- ``rate`` (bits/s) with ``queue`` (packets waiting for the link, default
  1000) and ``queue_policy`` "tail" (drop the new packet) or "head" (drop
  the oldest, like derper's per-client queue).
- ``mtu``: larger packets are dropped. ``blackhole``: everything is.
- ``direction``: "out" (what the object sends), "in" (what it receives)
  or "both" (each direction its own engine, seeded seed and seed + 1).
"""

from __future__ import annotations

import dataclasses
import errno
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager

from spanza._ffi import ffi, lib
from spanza._impairable import Impairable
from spanza.errors import ConfigError, SpanzaError, check

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Literal

    Direction = Literal["both", "out", "in"]
    _Use = Callable[[], AbstractContextManager[Any]]

__all__ = ["ImpairStats", "Impairable", "Impairment", "impair_config"]

_DIRS = {"out": (lib.IMP_OUT,), "in": (lib.IMP_IN,), "both": (lib.IMP_OUT, lib.IMP_IN)}
_DIR_NAME = {lib.IMP_OUT: "out", lib.IMP_IN: "in"}
_POLICIES = {"tail": lib.IMP_TAIL_DROP, "head": lib.IMP_DROP_HEAD}
_MAX_US = 2**32 - 1
_SETTINGS = (
    "loss",
    "delay",
    "jitter",
    "reorder",
    "duplicate",
    "corrupt",
    "rate",
    "queue",
    "queue_policy",
    "mtu",
    "blackhole",
    "burst",
    "gilbert",
)


@dataclasses.dataclass(frozen=True)
class ImpairStats:
    """What an impairment did (one direction, or the sum of both)."""

    packets: int = 0
    bytes: int = 0
    delivered: int = 0
    delivered_bytes: int = 0
    dropped_loss: int = 0
    dropped_blackhole: int = 0
    dropped_mtu: int = 0
    dropped_queue: int = 0
    dropped_overflow: int = 0
    duplicated: int = 0
    corrupted: int = 0
    reordered: int = 0
    delayed: int = 0
    bad_state_packets: int = 0
    held: int = 0

    @property
    def dropped(self) -> int:
        """Every packet the impairment dropped, whatever the reason."""
        return (
            self.dropped_loss + self.dropped_blackhole + self.dropped_mtu + self.dropped_queue + self.dropped_overflow
        )

    @classmethod
    def _from_c(cls, st: Any) -> ImpairStats:
        return cls(**{f.name: int(getattr(st, f.name)) for f in dataclasses.fields(cls)})

    def __add__(self, other: ImpairStats) -> ImpairStats:
        return ImpairStats(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in dataclasses.fields(self)})


def _prob(name: str, value: float) -> float:
    v = float(value)
    if not 0.0 <= v <= 1.0:
        raise ConfigError(f"{name}: {value!r} is not a probability in [0, 1] (0.1 means 10 %)")
    return v


def _us(name: str, seconds: float) -> int:
    v = float(seconds)
    if v < 0 or v * 1e6 > _MAX_US:
        raise ConfigError(f"{name}: {seconds!r} s is outside 0..{_MAX_US / 1e6:.0f} s (seconds, e.g. 0.05)")
    return round(v * 1e6)


def impair_config(
    *,
    loss: float = 0.0,
    delay: float = 0.0,
    jitter: float = 0.0,
    reorder: float = 0.0,
    duplicate: float = 0.0,
    corrupt: float = 0.0,
    rate: float | None = None,
    queue: int | None = None,
    queue_policy: str = "tail",
    mtu: int | None = None,
    blackhole: bool = False,
    burst: float | None = None,
    gilbert: tuple[float, float, float, float] | None = None,
    seed: int = 0,
) -> Any:
    """The C ``struct imp_config`` for these settings (checked; see the
    module docstring for their meaning)."""
    c = ffi.new("struct imp_config *")
    c.loss = _prob("loss", loss)
    if gilbert is not None and burst is not None:
        raise ConfigError("burst and gilbert: give one (burst sets the chain from loss and a mean burst length)")
    if burst is not None:
        b = float(burst)
        if b < 1:
            raise ConfigError(f"burst: {burst!r} is a mean burst length in packets, at least 1")
        if c.loss >= 1:
            raise ConfigError("burst: needs a loss below 1")
        if c.loss > 0:
            # Bad state loses everything; mean stay 1/r = burst, and the
            # stationary share of the bad state p/(p+r) = loss.
            r = 1.0 / b
            p = c.loss * r / (1.0 - c.loss)
            if p > 1:
                raise ConfigError(f"burst: {burst!r} is too short for loss {loss!r} (need burst >= loss/(1-loss))")
            c.ge_p, c.ge_r, c.ge_loss_bad, c.ge_loss_good = p, r, 1.0, 0.0
    if gilbert is not None:
        if len(gilbert) != 4:
            raise ConfigError("gilbert: (p good->bad, r bad->good, loss in bad, loss in good)")
        c.ge_p, c.ge_r, c.ge_loss_bad, c.ge_loss_good = (_prob(f"gilbert[{i}]", v) for i, v in enumerate(gilbert))
    c.delay_us = _us("delay", delay)
    c.jitter_us = _us("jitter", jitter)
    c.reorder = _prob("reorder", reorder)
    c.duplicate = _prob("duplicate", duplicate)
    c.corrupt = _prob("corrupt", corrupt)
    if rate is not None:
        if rate <= 0:
            raise ConfigError(f"rate: {rate!r} is not a bandwidth in bits/s above 0 (None: unlimited)")
        c.rate_bps = int(rate)
    if queue is not None:
        if not 1 <= int(queue) <= 1_000_000:
            raise ConfigError(f"queue: {queue!r} packets is outside 1..1000000")
        c.queue = int(queue)
    if queue_policy not in _POLICIES:
        raise ConfigError(f"queue_policy: {queue_policy!r} is not 'tail' (drop new) or 'head' (drop oldest)")
    c.queue_policy = _POLICIES[queue_policy]
    if mtu is not None:
        if not 1 <= int(mtu) <= 65536:
            raise ConfigError(f"mtu: {mtu!r} is outside 1..65536 bytes")
        c.mtu = int(mtu)
    c.blackhole = 1 if blackhole else 0
    if not 0 <= int(seed) < 2**64:
        raise ConfigError(f"seed: {seed!r} is not an integer in 0..2**64-1")
    c.seed = int(seed)
    return c


class Impairment:
    """An impairment in place on one hop (one or both directions).

    ``stats`` reads its counters (summed over directions; ``by_direction``
    splits them); ``lift()`` (or leaving the ``with`` block) removes it,
    releasing what it holds, and freezes the counters. Setting another
    impairment on the same hop and direction replaces this one (its
    counters freeze at that moment).
    """

    def __init__(
        self,
        owner: Impairable,
        hop: str,
        kind: int,
        dirs: tuple[int, ...],
        settings: dict[str, Any],
    ) -> None:
        self._owner = owner
        self.hop = hop
        self._kind = kind
        self._dirs = dirs
        self.settings = settings
        self._final: dict[int, ImpairStats] = {}
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return len(self._final) < len(self._dirs)

    def _op(self, d: int, op: int) -> ImpairStats | None:
        st = ffi.new("struct imp_stats *")
        with self._owner._impair_ptr() as ptr:
            rc = lib.imp_py_op(self._kind, ptr, d, op, ffi.NULL, st)
        if rc == -errno.ENOENT:
            return None
        check(rc, f"impairment on {self.hop}")
        return ImpairStats._from_c(st)

    @property
    def by_direction(self) -> dict[str, ImpairStats]:
        """Counters per direction ("out", "in")."""
        out = {}
        with self._lock:
            for d in self._dirs:
                if d in self._final:
                    out[_DIR_NAME[d]] = self._final[d]
                    continue
                try:
                    st = self._op(d, lib.IMP_OP_STATS)
                except SpanzaError:  # the owner is closed: what we saw last is gone
                    st = None
                out[_DIR_NAME[d]] = st if st is not None else ImpairStats()
        return out

    @property
    def stats(self) -> ImpairStats:
        """Counters summed over the directions."""
        total = ImpairStats()
        for st in self.by_direction.values():
            total = total + st
        return total

    def _freeze(self, d: int, st: ImpairStats) -> None:
        with self._lock:
            self._final.setdefault(d, st)

    def lift(self) -> ImpairStats:
        """Removes the impairment (held packets go out now, in order) and
        returns its final counters. Idempotent."""
        for d in self._dirs:
            with self._lock:
                if d in self._final:
                    continue
            try:
                st = self._op(d, lib.IMP_OP_LIFT) or ImpairStats()
            except SpanzaError:
                st = ImpairStats()
            self._freeze(d, st)
            self._owner._impair_forget(self, d)
        return self.stats

    def __enter__(self) -> Impairment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.lift()

    def __repr__(self) -> str:
        s = self.stats
        state = "active" if self.active else "lifted"
        return f"<Impairment {self.hop} {state} {self.settings} packets={s.packets} dropped={s.dropped}>"
