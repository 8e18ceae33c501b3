"""The WireGuard core driven by hand, with a virtual clock.

A :class:`Tunnel` is one WireGuard interface without sockets: you hand it
datagrams (:meth:`Tunnel.receive`) and IP packets (:meth:`Tunnel.send`), move
its clock (:meth:`Tunnel.advance`), and collect what it wants to send
(:meth:`Tunnel.outgoing`) and what it decrypted (:meth:`Tunnel.delivered`).
Nothing happens between calls, so scripts and tests see every timer rule at
the exact millisecond::

    a, b = Tunnel(seed=1), Tunnel(seed=2)
    a.add_peer(b.public_key, endpoint=b.address, allowed_ips=["10.0.0.2/32"])
    b.add_peer(a.public_key, endpoint=a.address, allowed_ips=["10.0.0.1/32"])
    a.send(ip_packet)        # staged; a handshake initiation is queued
    pump(a, b)               # carries datagrams between them until quiet
    b.delivered()            # [(a.public_key, ip_packet)]

Endpoints are text: ``"192.0.2.1:51820"``, ``"[2001:db8::1]:51820"``,
``"derp:<64 hex>"`` (a tuple ``(host, port)`` is accepted too).
"""

from __future__ import annotations

import errno as _errno
import ipaddress
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Union

from spanza._addr import format_address
from spanza._ffi import ffi, lib
from spanza._handle import Handle
from spanza.errors import ConfigError, check
from spanza.keys import PresharedKey, PrivateKey, PublicKey, as_key

__all__ = ["DROP_REASONS", "PeerStats", "Tunnel", "pump"]

log = logging.getLogger(__name__)

Endpoint = Union[str, tuple[str, int]]
KeyLike = Union[PublicKey, str, bytes]

DROP_REASONS: tuple[str, ...] = tuple(ffi.string(lib.wg_drop_name(i)).decode() for i in range(lib.WG_DROP__COUNT))
_FAMILY = {4: lib.WG_AF_INET, 6: lib.WG_AF_INET6}
_HS_STATES = ("zeroed", "initiation_created", "initiation_consumed", "response_created", "response_consumed")


def _endpoint_text(ep: Endpoint) -> str:
    return format_address((str(ep[0]), int(ep[1]))) if isinstance(ep, tuple) else str(ep)


def _to_c_endpoint(ep: Endpoint) -> Any:
    text = _endpoint_text(ep).encode()
    c = ffi.new("wg_endpoint *")
    if lib.wg_endpoint_parse(text, len(text), c) != 0:
        raise ConfigError(
            f"bad endpoint {ep!r}: expected 'A.B.C.D:port', '[v6]:port' or 'derp:<64 hex>'",
            _errno.EINVAL,
        )
    return c


def _from_c_endpoint(c: Any) -> str | None:
    if c.family == lib.WG_AF_NONE:
        return None
    buf = ffi.new("char[128]")
    n = lib.wg_endpoint_format(c, buf, 128)
    return ffi.string(buf).decode() if n > 0 else None


@dataclass
class PeerStats:
    """A snapshot of one peer's state and counters."""

    public_key: PublicKey
    endpoint: str | None
    rx_bytes: int
    tx_bytes: int
    rx_packets: int
    tx_packets: int
    last_handshake: float | None  # wall-clock seconds, None if never
    last_handshake_ms: int | None  # on the tunnel's clock
    handshakes_completed: int
    handshake_attempts: int
    handshake_state: str
    staged: int
    has_current: bool
    has_previous: bool
    has_next: bool
    current_send_counter: int
    current_age_ms: int
    persistent_keepalive: int
    allowed_ips: list[str] = field(default_factory=list)


class Tunnel(Handle):
    """One WireGuard interface on a virtual clock (milliseconds)."""

    _next_host = 1

    def __init__(
        self,
        private_key: PrivateKey | str | bytes | None = None,
        *,
        now: int = 0,
        seed: bytes | int | str | None = None,
        wall_clock: float | None = None,
        wall_clock_ns: int | None = None,
        address: Endpoint | None = None,
        listen_port: int = 51820,
        mtu: int = 1420,
    ) -> None:
        """private_key: generated if omitted (from the seed if one is given).
        seed: makes every random choice reproducible (keys, indices, jitter).
        wall_clock: Unix time at ``now`` (default: the real time, or a fixed
        2023 date with a seed); wall_clock_ns: the same in integer ns. address: this tunnel's own endpoint, used by
        :func:`pump` as the source of what it sends (default 192.0.2.N:port).
        """
        if isinstance(seed, int):
            seed = seed.to_bytes(16, "little", signed=True)
        elif isinstance(seed, str):
            seed = seed.encode()
        ptr = lib.wg_tunnel_new(seed if seed is not None else ffi.NULL, len(seed or b""))
        if ptr == ffi.NULL:
            raise MemoryError("cannot create a WireGuard tunnel")
        self._tunnel = ptr
        self._handle_open(lambda: lib.wg_tunnel_free(ptr), "Tunnel")
        self._dev = lib.wg_tunnel_device(ptr)
        self._now = int(now)
        if wall_clock_ns is None:
            if wall_clock is None:
                wall_clock = 1_700_000_000.0 if seed is not None else time.time()
            wall_clock_ns = int(wall_clock * 1e9)
        self._wall0_ns = int(wall_clock_ns) - self._now * 1_000_000
        self._buf = ffi.new("uint8_t[]", lib.WG_MAX_DATAGRAM)
        n = Tunnel._next_host
        Tunnel._next_host += 1
        self.address = _endpoint_text(address) if address else f"192.0.2.{n % 254 + 1}:{listen_port}"
        lib.wg_device_set_listen_port(self._dev, listen_port)
        lib.wg_device_set_mtu(self._dev, mtu)
        if private_key is None:
            if seed is not None:
                raw = bytearray(self._random(32))
                raw[0] &= 248
                raw[31] = (raw[31] & 127) | 64
                private_key = PrivateKey(bytes(raw))
            else:
                private_key = PrivateKey.generate()
        self.private_key = private_key

    # ---- plumbing ----
    @property
    def _tp(self) -> Any:
        """The C ``wg_tunnel *`` (ClosedError once closed)."""
        self._check_open()
        return self._tunnel

    @property
    def dev(self) -> Any:
        """The C ``wg_device *``."""
        self._check_open()
        return self._dev

    def _random(self, n: int) -> bytes:
        """Bytes from the tunnel's RNG (deterministic with a seed)."""
        buf = ffi.new("uint8_t[]", n)
        lib.wg_tunnel_random(self._tp, buf, n)
        return bytes(buf)

    def _sync_wall(self) -> None:
        lib.wg_tunnel_set_wall_ns(self._tp, max(0, self._wall0_ns + self._now * 1_000_000))

    def __repr__(self) -> str:
        if self.closed:
            return "<Tunnel closed>"
        return f"<Tunnel {self.public_key} at {self.address} t={self._now}ms>"

    # ---- identity ----
    @property
    def private_key(self) -> PrivateKey | None:
        out = ffi.new("uint8_t[32]")
        if lib.wg_device_private_key(self.dev, out) != 0:
            return None
        return PrivateKey(bytes(out))

    @private_key.setter
    def private_key(self, key: PrivateKey | str | bytes | None) -> None:
        raw = ffi.NULL if key is None else as_key(PrivateKey, key, "private_key").raw
        check(lib.wg_device_set_private_key(self.dev, self._now, raw), "set private key")

    @property
    def public_key(self) -> PublicKey | None:
        out = ffi.new("uint8_t[32]")
        if lib.wg_device_public_key(self.dev, out) != 0:
            return None
        return PublicKey(bytes(out))

    # ---- clock ----
    @property
    def now(self) -> int:
        """The virtual clock, in milliseconds."""
        return self._now

    def next_deadline(self) -> int | None:
        d = lib.wg_device_next_deadline(self.dev)
        return None if d == 2**64 - 1 else int(d)

    def advance(self, ms: int) -> None:
        """Moves the clock forward by ms, running every timer at its own
        deadline on the way (in order)."""
        if ms < 0:
            raise ValueError("the clock cannot go backwards")
        self.advance_to(self._now + int(ms))

    def advance_to(self, t: int) -> None:
        if t < self._now:
            raise ValueError(f"the clock cannot go backwards ({t} < {self._now})")
        for _ in range(1_000_000):  # bounded: each round runs at least one deadline
            d = lib.wg_device_next_deadline(self.dev)
            if d > t:
                break
            self._now = max(self._now, int(d))
            self._sync_wall()
            lib.wg_device_tick(self.dev, self._now)
        self._now = t
        self._sync_wall()

    # ---- traffic ----
    def send(self, packet: bytes) -> str | None:
        """An IP packet from the tunnel's stack. Returns None if it was sent
        or staged, else the drop reason (e.g. "no_peer")."""
        self._sync_wall()
        rc = lib.wg_device_send(self.dev, self._now, packet, len(packet))
        return None if rc == 0 else DROP_REASONS[rc]

    def receive(self, datagram: bytes, source: Endpoint | None = None) -> str | None:
        """A datagram from the network (source: its outer address). Returns
        None if accepted, else the drop reason (e.g. "bad_mac1")."""
        self._sync_wall()
        ep = _to_c_endpoint(source) if source is not None else ffi.NULL
        rc = lib.wg_device_receive(self.dev, self._now, ep, datagram, len(datagram))
        return None if rc == 0 else DROP_REASONS[rc]

    def outgoing(self) -> list[tuple[str | None, bytes]]:
        """Datagrams the tunnel sent since the last call: (endpoint, bytes)."""
        out: list[tuple[str | None, bytes]] = []
        to = ffi.new("wg_endpoint *")
        while True:
            n = lib.wg_tunnel_pop_outgoing(self._tp, to, ffi.NULL, self._buf, lib.WG_MAX_DATAGRAM)
            if n < 0:
                return out
            out.append((_from_c_endpoint(to), bytes(ffi.buffer(self._buf, n))))

    def delivered(self) -> list[tuple[PublicKey, bytes]]:
        """IP packets decrypted since the last call: (peer's key, packet)."""
        out: list[tuple[PublicKey, bytes]] = []
        pub = ffi.new("uint8_t[32]")
        while True:
            n = lib.wg_tunnel_pop_delivered(self._tp, pub, self._buf, lib.WG_MAX_DATAGRAM)
            if n < 0:
                return out
            out.append((PublicKey(bytes(pub)), bytes(ffi.buffer(self._buf, n))))

    def push_random(self, data: bytes) -> None:
        """Bytes handed out before the RNG's: an initiation or a response
        draws 32 ephemeral-key bytes, then 4 index bytes."""
        check(lib.wg_tunnel_push_random(self._tp, data, len(data)), "push_random")

    # ---- peers ----
    def _peer(self, key: KeyLike) -> Any:
        pub = as_key(PublicKey, key, "public_key")
        p = lib.wg_peer_find(self.dev, pub.raw)
        if p == ffi.NULL:
            raise KeyError(f"no peer {pub}")
        return p

    def add_peer(
        self,
        public_key: KeyLike,
        *,
        endpoint: Endpoint | None = None,
        allowed_ips: Iterable[str] = (),
        preshared_key: PresharedKey | str | bytes | None = None,
        persistent_keepalive: int = 0,
    ) -> PublicKey:
        """Adds (or updates) a peer; returns its public key."""
        pub = as_key(PublicKey, public_key, "public_key")
        pp = ffi.new("wg_peer **")
        rc = lib.wg_peer_add(self.dev, pub.raw, pp)
        if rc == -_errno.EINVAL:
            raise ConfigError(f"peer {pub} is this tunnel's own public key", _errno.EINVAL)
        if rc not in (0, -_errno.EEXIST):
            check(rc, f"add peer {pub}")
        p = pp[0]
        if preshared_key is not None:
            lib.wg_peer_set_preshared_key(p, as_key(PresharedKey, preshared_key, "preshared_key").raw)
        if endpoint is not None:
            check(lib.wg_peer_set_endpoint(p, _to_c_endpoint(endpoint)), "endpoint")
        for cidr in allowed_ips:
            self.add_allowed_ip(pub, cidr)
        if persistent_keepalive:
            self.set_persistent_keepalive(pub, persistent_keepalive)
        return pub

    def remove_peer(self, public_key: KeyLike) -> None:
        lib.wg_peer_remove(self.dev, self._peer(public_key))

    @property
    def peers(self) -> list[PublicKey]:
        n = lib.wg_device_peers(self.dev, ffi.NULL, 0)
        arr = ffi.new("wg_peer *[]", max(n, 1))
        n = lib.wg_device_peers(self.dev, arr, n)
        out = []
        pub = ffi.new("uint8_t[32]")
        for i in range(n):
            lib.wg_peer_public_key(arr[i], pub)
            out.append(PublicKey(bytes(pub)))
        return out

    def set_endpoint(self, public_key: KeyLike, endpoint: Endpoint | None) -> None:
        c = _to_c_endpoint(endpoint) if endpoint is not None else ffi.new("wg_endpoint *")
        check(lib.wg_peer_set_endpoint(self._peer(public_key), c), "endpoint")

    def set_preshared_key(self, public_key: KeyLike, psk: PresharedKey | str | bytes | None) -> None:
        raw = ffi.NULL if psk is None else as_key(PresharedKey, psk, "preshared_key").raw
        lib.wg_peer_set_preshared_key(self._peer(public_key), raw)

    def set_persistent_keepalive(self, public_key: KeyLike, seconds: int) -> None:
        if not 0 <= seconds <= 65535:
            raise ConfigError(f"persistent keepalive {seconds} s: must be 0..65535", _errno.EINVAL)
        self._sync_wall()
        lib.wg_peer_set_persistent_keepalive(self.dev, self._peer(public_key), self._now, seconds)

    def add_allowed_ip(self, public_key: KeyLike, cidr: str) -> None:
        net = _parse_cidr(cidr)
        family = _FAMILY[net.version]
        rc = lib.wg_peer_allowed_ip_add(
            self.dev, self._peer(public_key), family, net.network_address.packed, net.prefixlen
        )
        check(rc, f"allowed IP {cidr}")

    def remove_allowed_ip(self, public_key: KeyLike, cidr: str) -> bool:
        """Removes the prefix if it belongs to this peer; returns whether it did."""
        net = _parse_cidr(cidr)
        rc = lib.wg_peer_allowed_ip_remove(
            self.dev, self._peer(public_key), _FAMILY[net.version], net.network_address.packed, net.prefixlen
        )
        return bool(rc == 0)

    def allowed_ips(self, public_key: KeyLike) -> list[str]:
        p = self._peer(public_key)
        n = lib.wg_peer_allowed_ips(p, ffi.NULL, 0)
        arr = ffi.new("struct wg_allowed_ip[]", max(n, 1))
        n = lib.wg_peer_allowed_ips(p, arr, n)
        out = []
        for i in range(n):
            e = arr[i]
            size = 4 if e.family == lib.WG_AF_INET else 16
            addr = ipaddress.ip_address(bytes(ffi.buffer(e.addr, size)))
            out.append(f"{addr}/{e.cidr}")
        return out

    def route(self, address: str) -> PublicKey | None:
        """The peer the allowed IPs send `address` to."""
        ip = ipaddress.ip_address(address)
        p = lib.wg_device_lookup_ip(self.dev, _FAMILY[ip.version], ip.packed)
        if p == ffi.NULL:
            return None
        pub = ffi.new("uint8_t[32]")
        lib.wg_peer_public_key(p, pub)
        return PublicKey(bytes(pub))

    def initiate(self, public_key: KeyLike, *, force: bool = False) -> None:
        """Starts a handshake (force: ignore the 5 s rate limit)."""
        self._sync_wall()
        check(lib.wg_peer_initiate(self.dev, self._peer(public_key), self._now, int(force)), "initiate")

    def send_keepalive(self, public_key: KeyLike) -> None:
        self._sync_wall()
        lib.wg_peer_send_keepalive(self.dev, self._peer(public_key), self._now)

    def _set_send_counter(self, public_key: KeyLike, counter: int) -> None:
        """Test hook: the current session's next send counter."""
        check(lib.wg_peer_test_set_send_counter(self._peer(public_key), counter), "set counter")

    def peer_stats(self, public_key: KeyLike) -> PeerStats:
        pub = PublicKey(public_key)
        p = self._peer(pub)
        s = ffi.new("struct wg_peer_stats *")
        lib.wg_peer_stats(self.dev, p, self._now, s)
        hs = s.last_handshake_sec + s.last_handshake_nsec / 1e9 if s.handshakes_completed else None
        return PeerStats(
            public_key=pub,
            endpoint=_from_c_endpoint(ffi.addressof(s, "endpoint")) if s.has_endpoint else None,
            rx_bytes=s.rx_bytes,
            tx_bytes=s.tx_bytes,
            rx_packets=s.rx_packets,
            tx_packets=s.tx_packets,
            last_handshake=hs,
            last_handshake_ms=int(s.last_handshake_ms) if s.handshakes_completed else None,
            handshakes_completed=s.handshakes_completed,
            handshake_attempts=s.handshake_attempts,
            handshake_state=_HS_STATES[s.handshake_state],
            staged=s.staged,
            has_current=bool(s.has_current),
            has_previous=bool(s.has_previous),
            has_next=bool(s.has_next),
            current_send_counter=s.current_send_counter,
            current_age_ms=s.current_age_ms,
            persistent_keepalive=s.persistent_keepalive,
            allowed_ips=self.allowed_ips(pub),
        )

    # ---- device settings and counters ----
    def set_under_load(self, mode: str = "force", threshold: int = 0) -> None:
        """mode: "auto" (more than `threshold` handshake messages per second),
        "force" (always answer with cookies) or "never"."""
        modes = {"auto": lib.WG_LOAD_AUTO, "force": lib.WG_LOAD_FORCE, "never": lib.WG_LOAD_NEVER}
        if mode not in modes:
            raise ConfigError(f"under-load mode {mode!r}: expected one of {sorted(modes)}", _errno.EINVAL)
        lib.wg_device_set_under_load(self.dev, modes[mode], threshold)

    def set_flags(self, *, whiten_timestamps: bool = True) -> None:
        lib.wg_device_set_flags(self.dev, 0 if whiten_timestamps else lib.WG_FLAG_NO_WHITENING)

    def stats(self) -> dict[str, Any]:
        """Device counters; "drops" maps every drop reason to its count."""
        s = ffi.new("struct wg_device_stats *")
        lib.wg_device_stats(self.dev, s)
        out: dict[str, Any] = {
            name: int(getattr(s, name))
            for name in (
                "rx_datagrams rx_bytes tx_datagrams tx_bytes rx_packets tx_packets "
                "initiations_sent initiations_received responses_sent responses_received "
                "cookies_sent cookies_received keepalives_sent keepalives_received "
                "handshakes_completed peers"
            ).split()
        }
        out["under_load"] = bool(s.under_load)
        out["drops"] = {DROP_REASONS[i]: int(s.drops[i]) for i in range(1, lib.WG_DROP__COUNT)}
        return out

    @property
    def drops(self) -> dict[str, int]:
        drops: dict[str, int] = self.stats()["drops"]
        return drops

    # ---- UAPI ----
    def ipc_get(self) -> str:
        """The UAPI get reply (ends with "errno=0" and a blank line)."""
        out = ffi.new("char **")
        n = ffi.new("size_t *")
        self._sync_wall()
        check(lib.wg_uapi_get(self.dev, self._now, out, n), "ipc get")
        try:
            return str(ffi.string(out[0], n[0]).decode())
        finally:
            lib.wg_uapi_free(out[0])

    def ipc_set(self, text: str) -> None:
        """Applies UAPI set lines; ConfigError carries the errno on failure."""
        data = text.encode()
        self._sync_wall()
        rc = lib.wg_uapi_set(self.dev, self._now, data, len(data))
        if rc:
            raise ConfigError(f"ipc set failed: errno={rc} ({_errno.errorcode.get(-rc, '?')})", -rc)


def _parse_cidr(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(cidr, strict=False)
    except ValueError as exc:
        raise ConfigError(f"bad allowed IP {cidr!r}: {exc}", _errno.EINVAL) from None


def pump(*tunnels: Tunnel, rounds: int = 100) -> int:
    """Carries datagrams between tunnels (by endpoint = Tunnel.address)
    until none is left; returns how many were delivered. Datagrams to an
    unknown endpoint are dropped. All tunnels keep their own clocks."""
    by_addr = {t.address: t for t in tunnels}
    moved = 0
    for _ in range(rounds):
        any_sent = False
        for t in tunnels:
            for to, data in t.outgoing():
                any_sent = True
                dst = by_addr.get(to) if to else None
                if dst is not None:
                    dst.receive(data, t.address)
                    moved += 1
        if not any_sent:
            return moved
    raise RuntimeError(f"pump: still sending after {rounds} rounds")
