"""The Spanza gateway: a sidecar that carries a WireGuard's UDP over DERP.

    with spanza.Gateway("https://derp.example.com/derp", key,
                        wg_endpoint="127.0.0.1:51820",
                        remote_peers=["nodekey:..."]) as gw:
        host, port = gw.address   # the remote peer's endpoint for the local WireGuard

The local WireGuard (kernel, wireguard-go, a spanza.Device) is configured
with the gateway's UDP address as the endpoint of each remote peer. What it
sends there is relayed to that peer's DERP key; what the peer sends through
DERP comes back from the same address. Each remote peer has its own UDP
socket, so the local WireGuard sees one stable endpoint per peer (and two
remote peers are never confused). The relay runs in C on a runtime's loop
thread; no Python runs per packet.

Where packets from DERP go: ``wg_endpoint`` when given, otherwise the
address that last sent to that peer's socket (or, before it sent anything,
to any of the gateway's sockets). In that learned mode whoever can send to
the sockets decides where replies go: keep them on loopback (the default)
or give ``wg_endpoint`` when listening on other addresses.

Backpressure: while the DERP connection is congested the gateway stops
reading its sockets (the kernel buffers, then drops and counts:
``drops_udp_overflow``); while it is down, the DERP client keeps the newest
packets in a bounded queue (``drops_queue_full`` counts the oldest lost).

Ports: the first remote peer listens on ``listen``; later ones on the same
host, on ``listen``'s port + 1, + 2, ... when that port is fixed, or on any
free port when it is 0 (see ``address_for``), unless given their own.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import warnings
from _socket import AF_INET, AF_INET6
from collections.abc import Iterable, Iterator

from spanza import _diagnose
from spanza._addr import format_address, ip_address, ip_text, parse_address, scope_id
from spanza._derp_opts import client_opts
from spanza._ffi import ffi, lib
from spanza._handle import Handle
from spanza._impairable import Impairable
from spanza._log import get_logger
from spanza._renamed import renamed
from spanza._sock import has_ipv6
from spanza.errors import ConfigError, check, error
from spanza.keys import PublicKey, private_key_bytes, public_key_bytes
from spanza.runtime import Runtime

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Union

    from spanza._addr import AddressLike

    KeyLike = Union[str, bytes, bytearray, memoryview, Any]

log = get_logger("spanza.gateway")


_AF = {4: AF_INET, 6: AF_INET6}
_DST_KIND = {0: None, 1: "configured", 2: "learned"}


# ---- addresses --------------------------------------------------------------------


def _to_c(addr: tuple[str, int], out: Any) -> None:
    host, port = addr
    if host == "":  # all addresses: dual-stack when the host has IPv6
        host = "::" if has_ipv6() else "0.0.0.0"
    version, packed, _ = ip_address(host.partition("%")[0])
    out.family = _AF[version]
    out.port = port
    out.scope_id = scope_id(host)
    ffi.memmove(out.addr, packed, len(packed))


def _from_c(a: Any) -> tuple[str, int] | None:
    if a.family == AF_INET:
        return ip_text(bytes(a.addr[0:4])), int(a.port)
    if a.family == AF_INET6:
        host = ip_text(bytes(a.addr[0:16]))
        if a.scope_id:
            host += f"%{a.scope_id}"
        return host, int(a.port)
    return None


def _reachable(addr: tuple[str, int]) -> tuple[str, int]:
    """The address a local WireGuard uses for a socket bound to addr: a
    wildcard means this host, so its loopback."""
    host, port = addr
    if host in ("0.0.0.0", ""):
        return "127.0.0.1", port
    if host == "::":
        return "127.0.0.1", port  # dual-stack: IPv4 loopback reaches it too
    return host, port


# ---- the gateway ----------------------------------------------------------------------


def _free_gateway(ptr: Any, runtime: Runtime | None) -> None:
    """A gateway's release: the gateway, then the runtime it owns."""
    lib.gw_py_shutdown(ptr)
    lib.gw_py_free(ptr)
    if runtime is not None:
        runtime.close()


class Gateway(Handle, Impairable):
    """A UDP <-> DERP relay for one local WireGuard and its remote peers.

    url: the relay, ``http(s)://host[:port]/derp`` (``derp_url``: its old,
    deprecated name). private_key: the gateway's
    DERP identity (``privkey:<hex>``, WireGuard base64, 32 bytes or a key
    object); its public key (``public_key``) is what remote peers send to.
    listen: the first remote peer's UDP address (default 127.0.0.1, any
    port). wg_endpoint: the local WireGuard's address (``"127.0.0.1:51820"``);
    None learns it from what arrives. remote_peers: DERP public keys
    (``nodekey:<hex>``, base64, bytes). TLS: system CAs, or ``ca_file``, or
    ``insecure=True`` (self-signed test servers). ``derp_options``: extra
    DERP client options (struct derp_client_opts fields, e.g.
    ``backoff_max_ms``, ``queue_size``). runtime: the loop thread it runs on
    (default: one of its own, closed with it).
    """

    def __init__(
        self,
        url: str | None = None,
        private_key: KeyLike | None = None,
        *,
        derp_url: str | None = None,
        listen: AddressLike = ("127.0.0.1", 0),
        wg_endpoint: AddressLike | None = None,
        remote_peers: Iterable[KeyLike] = (),
        ca_file: str | os.PathLike[str] | None = None,
        insecure: bool = False,
        runtime: Runtime | None = None,
        derp_options: dict[str, int] | None = None,
    ) -> None:
        url = renamed("Gateway", "url", url, "derp_url", derp_url)
        if url is None or private_key is None:
            raise TypeError("Gateway() needs url (the relay, http(s)://host[:port]/derp) and private_key")
        self._ptr: Any = None
        self._lock = threading.Lock()  # serialises configuration changes
        self._cv = threading.Condition()
        self._inflight = 0
        self.url = url
        self._listen = parse_address(listen, "listen")
        self._peers: dict[bytes, tuple[str, int]] = {}  # key -> bound address, in order
        self._wg_endpoint = (
            None if wg_endpoint is None else parse_address(wg_endpoint, "wg_endpoint", allow_port_zero=False)
        )
        priv = private_key_bytes(private_key)
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError(f"url: {url!r} is not http(s)://host[:port]/derp")

        keep: list[Any] = []
        opts = client_opts(keep, ca_file=ca_file, insecure=insecure, options=derp_options)
        wg = ffi.NULL
        if self._wg_endpoint is not None:
            wg = ffi.new("struct gw_addr *")
            _to_c(self._wg_endpoint, wg)
        rc = ffi.new("int *")
        err = ffi.new("char[256]")
        # A sidecar: on a loop thread of its own unless given a runtime, so
        # the gateway and the devices behind it (their netstack shares the
        # default runtime) use two cores, as a DerpServer does.
        own = runtime is None
        self.runtime = runtime if runtime is not None else Runtime("gateway")
        ptr = lib.gw_py_new(self.runtime.ptr, url.encode(), priv, opts, wg, rc, err, 256)
        if ptr == ffi.NULL:
            if own:
                self.runtime.close()
            self._raise(rc[0], err, "Gateway")
        self._ptr = ptr
        own_rt = self.runtime if own else None
        self._handle_open(lambda: _free_gateway(ptr, own_rt), f"Gateway {url}")
        pub = ffi.new("uint8_t[32]")
        lib.gw_py_public_key(ptr, pub)
        self._public = bytes(pub)
        try:
            for key in remote_peers:
                self.add_remote_peer(key)
        except BaseException:
            self.close()
            raise
        log.info("gateway %s for %s, %d remote peer(s)", self.public_key.tailscale, url, len(self._peers))

    @staticmethod
    def _raise(rc: int, err: Any, what: str) -> None:
        msg = ffi.string(err).decode(errors="replace") if err is not None else ""
        msg = f"{what}: {msg or os.strerror(-rc)}"
        if -rc == errno.EADDRNOTAVAIL:
            msg += " (listen: use an address of this host, or ':port' for all)"
        raise error(-rc, msg)

    @property
    def derp_url(self) -> str:
        """Deprecated: the relay's URL is `url`."""
        warnings.warn("Gateway.derp_url is deprecated: use url", DeprecationWarning, stacklevel=2)
        return self.url

    def _p(self) -> Any:
        self._check_open()
        return self._ptr

    # impairments (spanza.impair): "derp" (its relay connection) or "udp" (toward WireGuard)
    _IMPAIR_HOPS = {"derp": lib.IMP_HOP_GATEWAY_DERP, "udp": lib.IMP_HOP_GATEWAY_UDP}

    def _impair_ptr(self) -> contextlib.AbstractContextManager[Any]:
        return self._use()

    @contextlib.contextmanager
    def _use(self) -> Iterator[Any]:
        """The C pointer, kept alive (close waits) while the block runs."""
        with self._cv:
            self._check_open()
            self._inflight += 1
            ptr = self._ptr
        try:
            yield ptr
        finally:
            with self._cv:
                self._inflight -= 1
                self._cv.notify_all()

    # -- remote peers --

    def _next_listen(self) -> tuple[str, int]:
        host, port = self._listen
        if port == 0:
            return host, 0
        return host, port + len(self._peers)

    def add_remote_peer(self, key: KeyLike, listen: AddressLike | None = None) -> tuple[str, int]:
        """Adds a remote peer (its DERP public key) and returns the UDP
        address the local WireGuard should use as its endpoint."""
        raw = public_key_bytes(key, "remote peer")
        with self._lock:
            if raw in self._peers:
                raise ConfigError(f"remote peer {PublicKey(raw).tailscale} was already added")
            addr = self._next_listen() if listen is None else parse_address(listen, "listen")
            if addr[1] > 65535:
                raise ConfigError(
                    f"listen: no port left above {self._listen[1]} for remote peer {len(self._peers) + 1}"
                )
            c_listen = ffi.new("struct gw_addr *")
            _to_c(addr, c_listen)
            bound = ffi.new("struct gw_addr *")
            err = ffi.new("char[256]")
            rc = lib.gw_py_add_peer(self._p(), raw, c_listen, bound, err, 256)
            if rc < 0:
                self._raise(rc, err, f"remote peer {PublicKey(raw).tailscale}")
            got = _from_c(bound)
            assert got is not None
            self._peers[raw] = got
        log.debug(
            "remote peer %s: local WireGuard endpoint %s", PublicKey(raw).tailscale, format_address(_reachable(got))
        )
        return _reachable(got)

    def remove_remote_peer(self, key: KeyLike) -> None:
        raw = public_key_bytes(key, "remote peer")
        with self._lock:
            if raw not in self._peers:
                raise ConfigError(f"{PublicKey(raw).tailscale} is not a remote peer of this gateway")
            check(lib.gw_py_remove_peer(self._p(), raw), "remove_remote_peer")
            del self._peers[raw]

    @property
    def remote_peers(self) -> list[PublicKey]:
        return [PublicKey(k) for k in self._peers]

    def address_for(self, key: KeyLike) -> tuple[str, int]:
        """The UDP address that stands for remote peer `key` (the endpoint
        to give the local WireGuard for that peer)."""
        raw = public_key_bytes(key, "remote peer")
        try:
            return _reachable(self._peers[raw])
        except KeyError:
            raise ConfigError(f"{PublicKey(raw).tailscale} is not a remote peer of this gateway") from None

    @property
    def address(self) -> tuple[str, int]:
        """The first remote peer's UDP address (see address_for)."""
        if not self._peers:
            raise ConfigError("the gateway has no remote peer yet: add_remote_peer() first")
        return _reachable(next(iter(self._peers.values())))

    # -- configuration --

    @property
    def public_key(self) -> PublicKey:
        """The gateway's DERP public key (what remote peers send to)."""
        return PublicKey(self._public)

    @property
    def wg_endpoint(self) -> tuple[str, int] | None:
        return self._wg_endpoint

    @wg_endpoint.setter
    def wg_endpoint(self, value: AddressLike | None) -> None:
        addr = None if value is None else parse_address(value, "wg_endpoint", allow_port_zero=False)
        c = ffi.NULL
        if addr is not None:
            c = ffi.new("struct gw_addr *")
            _to_c(addr, c)
        with self._lock:
            rc = lib.gw_py_set_wg_endpoint(self._p(), c)
            if rc == -errno.EINVAL and addr is not None:
                raise ConfigError(
                    f"wg_endpoint: {format_address(addr)} cannot be reached from the "
                    "remote peers' sockets (IPv6 endpoint, IPv4 sockets?)",
                    22,
                )
            check(rc, "wg_endpoint")
            self._wg_endpoint = addr

    # -- state --

    @property
    def connected(self) -> bool:
        return bool(self.stats()["connected"])

    def wait_connected(self, timeout: float | None = 10.0) -> None:
        """Blocks until the DERP connection is up. RelayRefusedError or
        RelayError at once when waiting cannot help; TimeoutError (saying
        why) otherwise."""
        with self._use() as p:
            rc = _diagnose.wait_connected(
                self.url,
                lambda ms: lib.gw_py_wait_connected(p, ms),
                lambda: self.stats()["derp"],
                self.last_error,
                timeout,
            )
        check(rc, "wait_connected")

    def reconnect(self) -> None:
        """Drops the DERP connection; the client reconnects with backoff."""
        with self._lock:
            check(lib.gw_py_reconnect(self._p()), "reconnect")

    def last_error(self) -> str:
        buf = ffi.new("char[256]")
        with self._lock:
            lib.gw_py_last_error(self._p(), buf, 256)
        return str(ffi.string(buf).decode(errors="replace"))

    def stats(self) -> dict[str, Any]:
        """Totals (datagrams/bytes each way, drops by reason), the DERP
        client's counters under "derp" (reconnects, queue drops...), and
        per remote peer under "peers" (keyed by ``nodekey:<hex>``)."""
        st = ffi.new("struct gw_stats *")
        ds = ffi.new("struct derp_client_stats *")
        ps = ffi.new("struct gw_peer_stats *")
        with self._lock:
            p = self._p()
            check(lib.gw_py_stats(p, st, ds), "stats")
            peers: dict[str, Any] = {}
            for raw in self._peers:
                check(lib.gw_py_peer_stats(p, raw, ps), "stats")
                d: dict[str, Any] = {}
                for name, _ in ffi.typeof("struct gw_peer_stats").fields:
                    if name == "key":
                        continue
                    if name in ("local", "dst"):
                        a = _from_c(getattr(ps, name))
                        d[name] = format_address(a) if a else None
                    elif name == "dst_kind":
                        d[name] = _DST_KIND.get(int(ps.dst_kind))
                    else:
                        d[name] = int(getattr(ps, name))
                peers[PublicKey(raw).tailscale] = d
        out: dict[str, Any] = {name: int(getattr(st, name)) for name, _ in ffi.typeof("struct gw_stats").fields}
        out["derp"] = {name: int(getattr(ds, name)) for name, _ in ffi.typeof("struct derp_client_stats").fields}
        out["peers"] = peers
        return out

    # -- lifetime --

    def _before_release(self) -> None:
        """close(): wake wait_connected callers (ClosedError) and wait for
        the calls in flight; the release frees the rest."""
        with self._lock, self._cv:
            lib.gw_py_shutdown(self._ptr)
            while self._inflight:
                self._cv.wait()

    def __repr__(self) -> str:
        if self.closed:
            return f"<{self._label} closed>"
        return f"<Gateway {self.public_key.tailscale} {self.url} peers={len(self._peers)}>"


__all__ = ["Gateway", "format_address", "parse_address"]
