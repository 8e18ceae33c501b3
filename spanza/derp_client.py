"""A DERP client: Tailscale's relay protocol, spoken from C on a runtime loop.

    with spanza.DerpClient("https://derp.example.com/derp", key) as c:
        c.wait_connected(10)
        c.send(peer_public_key, b"hello")
        src, data = c.recv(timeout=5)

The connection lives on a runtime's event-loop thread (C): it reconnects by
itself with Tailscale's backoff, answers pings, and notices dead
connections. Packets received wait in a bounded queue for `recv`; events
(`Connected`, `Disconnected`, `PeerGone`, `PeerPresent`, `Health`,
`Restarting`) in another, for `next_event`/`events`.

Import these names from `spanza.derp` (next to the server); this module is
their implementation.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Union

from spanza import _diagnose
from spanza._derp_opts import _cstr, client_opts
from spanza._ffi import ffi, lib
from spanza._handle import Handle
from spanza._impairable import Impairable
from spanza._wait import sliced, timeout_ms
from spanza.errors import ConfigError, SpanzaError, SpanzaTimeoutError, check, error
from spanza.keys import PublicKey, load_key_file, private_key_bytes, public_key_bytes
from spanza.runtime import Runtime, default_runtime

__all__ = [
    "Connected",
    "DerpClient",
    "Disconnected",
    "Event",
    "Health",
    "PeerGone",
    "PeerPresent",
    "Refused",
    "Restarting",
    "backoff_ms",
    "client_opts",
]

log = logging.getLogger("spanza.derp")

MAX_PACKET = 65536  # DERP's largest relayed packet (spec §2)

KeyLike = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]", Any]


# ---- keys ----


def _private_key(value: KeyLike) -> bytes:
    """A private key argument: any form spanza.keys takes, or the path of a
    key file (derper's config file, {"PrivateKey": "privkey:<64 hex>"})."""
    if isinstance(value, os.PathLike) or (isinstance(value, str) and os.path.isfile(value)):
        return load_key_file(value).raw
    return private_key_bytes(value)


# ---- events ----


@dataclass(frozen=True)
class Connected:
    """Handshake complete (ServerInfo received)."""

    server_key: PublicKey


@dataclass(frozen=True)
class Disconnected:
    """An established connection was lost; the client is reconnecting."""

    reason: str


@dataclass(frozen=True)
class PeerGone:
    """The server says a peer left (reason 0) or is not here (reason 1)."""

    peer: PublicKey
    reason: int

    DISCONNECTED = 0
    NOT_HERE = 1


@dataclass(frozen=True)
class PeerPresent:
    """A peer connected (mesh watchers only)."""

    peer: PublicKey
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    port: int
    flags: int


@dataclass(frozen=True)
class Health:
    """Server health message; empty text means healthy again."""

    text: str


@dataclass(frozen=True)
class Restarting:
    """The server is restarting (advisory)."""

    reconnect_in: float
    try_for: float


@dataclass(frozen=True)
class Refused:
    """The server refused this client twice in a row (closed the connection
    after ClientInfo: an allowlist or client verification); the client
    stopped retrying until ``reconnect()``."""

    reason: str


Event = Union[Connected, Disconnected, PeerGone, PeerPresent, Health, Restarting, Refused]


def _event(ev: Any) -> Event | None:
    t = ev.type
    key = PublicKey(bytes(ffi.buffer(ev.key, 32)))
    if t == lib.DERP_EV_CONNECTED:
        return Connected(key)
    if t == lib.DERP_EV_DISCONNECTED:
        return Disconnected(ffi.string(ev.text).decode(errors="replace") if ev.text != ffi.NULL else "")
    if t == lib.DERP_EV_PEER_GONE:
        return PeerGone(key, int(ev.reason))
    if t == lib.DERP_EV_PEER_PRESENT:
        raw = bytes(ffi.buffer(ev.ip, 16))
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
        if raw != bytes(16):
            ip6 = ipaddress.IPv6Address(raw)
            ip = ip6.ipv4_mapped or ip6
        return PeerPresent(key, ip, int(ev.port), int(ev.flags))
    if t == lib.DERP_EV_HEALTH:
        return Health(ffi.string(ev.text).decode(errors="replace") if ev.text != ffi.NULL else "")
    if t == lib.DERP_EV_REFUSED:
        return Refused(ffi.string(ev.text).decode(errors="replace") if ev.text != ffi.NULL else "")
    if t == lib.DERP_EV_RESTARTING:
        return Restarting(ev.reconnect_in_ms / 1000.0, ev.try_for_ms / 1000.0)
    return None


def _wait(call: Any, timeout: float | None) -> int:
    """Runs a blocking C call (which takes a timeout in ms) in slices, so
    Ctrl-C gets through; returns its last result."""
    return sliced(call, timeout)


def _close_client(p: Any, runtime: Runtime) -> None:
    """A client's release: shut it down (the memory goes with the last
    reference to the gc'd pointer)."""
    if runtime.closed:  # its loop is gone: nothing can free the client safely
        log.warning("DerpClient closed after its runtime; the client is leaked")
        ffi.gc(p, None)
        return
    lib.derp_pyclient_close(p)


_STATES = {1: "backoff", 2: "resolving", 3: "connecting", 4: "tls", 5: "upgrading", 6: "connected", 7: "closed"}


class DerpClient(Handle, Impairable):
    """One DERP connection, kept up until `close()`.

    url: ``http(s)://host[:port]/derp``. private_key: 32 bytes,
    ``privkey:<hex>``, derper's config file path, or a key object.
    TLS: system CAs by default; ``ca_file`` (PEM) instead; ``pin_sha256``
    (sha256 of the server certificate's DER, derper's ``sha256-raw:<hex>``)
    instead of CA checks; or ``insecure=True`` for self-signed test servers.
    ``queue_size`` bounds the packets held while disconnected (the oldest
    is dropped when full). Timers (milliseconds) are exposed so tests can
    shorten them: ``read_timeout_ms`` (120000), ``ping_timeout_ms`` (5000),
    ``idle_ping_ms`` (0: off), ``connect_timeout_ms`` (10000),
    ``backoff_base_ms`` (10), ``backoff_max_ms`` (5000).
    """

    _p: Any = None

    def __init__(
        self,
        url: str,
        private_key: KeyLike,
        *,
        ca_file: str | os.PathLike[str] | None = None,
        pin_sha256: str | bytes | None = None,
        insecure: bool = False,
        server_name: str | None = None,
        server_key: KeyLike | None = None,
        runtime: Runtime | None = None,
        queue_size: int = 256,
        recv_queue: int = 1024,
        event_queue: int = 1024,
        write_buffer_max: int = 0,
        note_preferred: bool = False,
        read_timeout_ms: int = 0,
        ping_timeout_ms: int = 0,
        idle_ping_ms: int = 0,
        connect_timeout_ms: int = 0,
        dial_timeout_ms: int = 0,
        backoff_base_ms: int = 0,
        backoff_max_ms: int = 0,
    ) -> None:
        self.url = url
        self.runtime = runtime or default_runtime()
        priv = _private_key(private_key)
        for name, v in (("queue_size", queue_size), ("recv_queue", recv_queue), ("event_queue", event_queue)):
            if not 1 <= v <= 1 << 24:
                raise ConfigError(f"{name}: must be 1..16777216, got {v}")
        keep: list[Any] = []  # C strings alive until the constructor returns
        numbers = {
            "queue_size": queue_size,
            "note_preferred": bool(note_preferred),
            "write_buffer_max": write_buffer_max,
            "read_timeout_ms": read_timeout_ms,
            "ping_timeout_ms": ping_timeout_ms,
            "idle_ping_ms": idle_ping_ms,
            "connect_timeout_ms": connect_timeout_ms,
            "dial_timeout_ms": dial_timeout_ms,
            "backoff_base_ms": backoff_base_ms,
            "backoff_max_ms": backoff_max_ms,
        }
        opts = client_opts(keep, ca_file=ca_file, insecure=insecure, options=numbers, what="")
        if pin_sha256 is not None:
            opts.pin_sha256 = _cstr(
                keep, pin_sha256.hex() if isinstance(pin_sha256, (bytes, bytearray)) else pin_sha256
            )
        if server_name:
            opts.server_name = _cstr(keep, server_name)
        if server_key is not None:
            opts.server_key = public_key_bytes(server_key, "server_key")
            opts.has_server_key = 1
        rc = ffi.new("int *")
        err = ffi.new("char[256]")
        p = lib.derp_pyclient_new(self.runtime.ptr, url.encode(), priv, opts, recv_queue, event_queue, rc, err, 256)
        if p == ffi.NULL:
            msg = ffi.string(err).decode(errors="replace") or os.strerror(-rc[0])
            raise error(-rc[0], f"DerpClient: {msg}")
        # p is freed only when this object is collected: close() just shuts
        # it down, so a call racing with close() in another thread gets
        # ClosedError instead of touching freed memory.
        self._p = ffi.gc(p, lib.derp_pyclient_free)
        gp, rt = self._p, self.runtime
        self._handle_open(lambda: _close_client(gp, rt), f"DerpClient {url}")
        pub = ffi.new("uint8_t[32]")
        lib.derp_pyclient_public_key(p, pub)
        self.public_key = PublicKey(bytes(pub))
        log.debug("DERP client for %s as %s", url, self.public_key.tailscale)

    # ---- plumbing ----

    # impairments (spanza.impair): out = what it sends, in = what it receives
    _IMPAIR_HOPS = {"derp": lib.IMP_HOP_DERP_CLIENT}

    @contextlib.contextmanager
    def _impair_ptr(self) -> Iterator[Any]:
        yield self._ptr

    @property
    def _ptr(self) -> Any:
        self._check_open()
        return self._p

    def close(self) -> None:
        """Closes the connection. Blocked calls in other threads raise ClosedError. Idempotent."""
        super().close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("connected" if self.connected else "connecting")
        return f"<DerpClient {self.url} {self.public_key.tailscale[:16]}… {state}>"

    # ---- API ----

    @property
    def connected(self) -> bool:
        return not self.closed and bool(lib.derp_pyclient_connected(self._p))

    def wait_connected(self, timeout: float | None = 10.0) -> None:
        """Waits for the handshake. Raises RelayRefusedError when the server
        refused this client (allowlist), RelayError at once when waiting
        cannot help (connection refused, TLS against a plain relay...), and
        TimeoutError saying what the attempt is stuck on."""
        p = self._ptr
        rc = _diagnose.wait_connected(
            self.url, lambda ms: lib.derp_pyclient_wait_connected(p, ms), self.stats, lambda: self.last_error, timeout
        )
        check(rc, f"DerpClient {self.url}")

    def send(self, dst_public_key: KeyLike, data: bytes | bytearray | memoryview, timeout: float | None = 10.0) -> None:
        """Queues a packet (up to 65536 bytes) for the peer. Waits only while
        the connection is congested (backpressure); while disconnected the
        packet is queued (bounded; the oldest is dropped when full)."""
        dst = public_key_bytes(dst_public_key, "send: dst_public_key")
        buf = ffi.from_buffer(data)
        if len(buf) > MAX_PACKET:
            raise ConfigError(f"send: {len(buf)} bytes is over DERP's {MAX_PACKET}-byte packet limit")
        p = self._ptr
        rc = _wait(lambda ms: lib.derp_pyclient_send(p, dst, buf, len(buf), ms), timeout)
        if rc == -errno.ETIMEDOUT:
            raise SpanzaTimeoutError(f"DerpClient {self.url}: send: still congested after {timeout}s")
        check(rc, f"DerpClient {self.url}: send")

    def recv(self, timeout: float | None = None) -> tuple[PublicKey, bytes]:
        """The next packet as (source public key, data); TimeoutError if none."""
        out = ffi.new("struct derp_py_packet **")
        p = self._ptr
        rc = _wait(lambda ms: lib.derp_pyclient_recv(p, ms, out), timeout)
        if rc == -errno.ETIMEDOUT:
            raise SpanzaTimeoutError(f"DerpClient {self.url}: no packet within {timeout}s")
        check(rc, f"DerpClient {self.url}: recv")
        pkt = out[0]
        try:
            return PublicKey(bytes(ffi.buffer(pkt.src, 32))), bytes(ffi.buffer(pkt.data, pkt.len))
        finally:
            lib.derp_pyclient_packet_free(pkt)

    def next_event(self, timeout: float | None = None) -> Event:
        """The next event; TimeoutError if none arrives in time."""
        out = ffi.new("struct derp_client_event **")
        p = self._ptr
        while True:
            rc = _wait(lambda ms: int(lib.derp_pyclient_next_event(p, ms, out)), timeout)
            if rc == -errno.ETIMEDOUT:
                raise SpanzaTimeoutError(f"DerpClient {self.url}: no event within {timeout}s")
            check(rc, f"DerpClient {self.url}: next_event")
            try:
                ev = _event(out[0])
            finally:
                lib.derp_pyclient_event_free(out[0])
            if ev is not None:
                return ev

    def events(self, timeout: float = 0.0) -> list[Event]:
        """Every queued event, waiting up to timeout for the first one."""
        evs: list[Event] = []
        try:
            evs.append(self.next_event(timeout))
            while True:
                evs.append(self.next_event(0))
        except TimeoutError:
            pass
        return evs

    def note_preferred(self, preferred: bool = True) -> None:
        """Tells the server whether this is our home DERP (now and after reconnects)."""
        check(lib.derp_pyclient_note_preferred(self._ptr, 1 if preferred else 0), f"DerpClient {self.url}")

    def ping(self, timeout: float | None = 5.0) -> float:
        """Pings the server; returns the round-trip time in seconds."""
        rtt = ffi.new("uint64_t *")
        timeout_ms(timeout, "ping")  # checked before anything is sent
        slot = ffi.new("int *")
        p = self._ptr
        rc = lib.derp_pyclient_ping_start(p, slot)
        if rc == 0:
            try:
                rc = _wait(lambda ms: int(lib.derp_pyclient_ping_wait(p, slot[0], ms, rtt)), timeout)
            finally:
                lib.derp_pyclient_ping_end(p, slot[0])
        if rc == -errno.ETIMEDOUT:
            raise SpanzaTimeoutError(f"DerpClient {self.url}: no pong within {timeout}s")
        if rc == -errno.ENOTCONN:
            raise SpanzaError(
                f"DerpClient {self.url}: ping: not connected ({self.last_error or 'connecting'})", errno.ENOTCONN
            )
        check(rc, f"DerpClient {self.url}: ping")
        return float(rtt[0]) / 1e6

    def reconnect(self) -> None:
        """Drops the connection now; the client reconnects by itself."""
        check(lib.derp_pyclient_reconnect(self._ptr), f"DerpClient {self.url}")

    @property
    def last_error(self) -> str:
        """Why the last attempt failed or the last connection ended ('' if none)."""
        if self.closed:
            return ""
        buf = ffi.new("char[256]")
        if lib.derp_pyclient_last_error(self._p, buf, 256) < 0:
            return ""
        return str(ffi.string(buf).decode(errors="replace"))

    def stats(self) -> dict[str, int | str]:
        """Counters: packets/bytes sent and received, drops by reason,
        connects/reconnects, timeouts, and the current state."""
        st = ffi.new("struct derp_client_stats *")
        check(lib.derp_pyclient_stats(self._ptr, st), f"DerpClient {self.url}: stats")
        out: dict[str, int | str] = {}
        for name, _ in ffi.typeof(st[0]).fields:
            out[name] = int(getattr(st, name))
        out["state"] = _diagnose.STATE_NAMES.get(int(st.state), str(st.state))
        return out


def backoff_ms(failures: int, base_ms: int = 10, max_ms: int = 5000, rnd: int = 0) -> int:
    """The reconnect delay after `failures` consecutive failures, for a
    uniform rnd in [0, 2**32): min(n*n*base, max) * (0.5 + rnd/2**32)."""
    return int(lib.derp_client_backoff_ms(failures, base_ms, max_ms, rnd))
