"""Virtual hosts inside the tunnel, on Spanza's lwIP stack.

A :class:`Host` is one network interface of lwIP with its own addresses.
Its packets go to a *link* (a WireGuard device, or a :class:`MemoryWire` in
tests); packets for it come back from that link. Python talks to it with
real OS sockets (socketpairs pumped by the runtime's loop thread), so
``http.client``, ``http.server``, ``socketserver``, ``selectors`` and
``asyncio`` work unchanged::

    a, b, wire = wired_pair("192.168.4.1/24", "192.168.4.2/24")
    with a.serve_http(80):
        conn = HTTPConnection(b, "192.168.4.1", 80)
        conn.request("GET", "/")

lwIP is one stack per process: every host lives on one runtime (the default
runtime unless the first host says otherwise), at most ``MAX_HOSTS`` hosts.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import gc
import os
import select
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator

from spanza._addr import ip_address, ip_interface, ip_text
from spanza._ffi import ffi, lib
from spanza._handle import Handle, fork_generation
from spanza._impairable import Impairable
from spanza._lazy import lazy_names
from spanza._sock import recv_fds, socketpair
from spanza._sock import socket as c_socket
from spanza._wait import sliced
from spanza.errors import AddressInUseError, ClosedError, ConfigError, SpanzaError, SpanzaTimeoutError, check, error
from spanza.runtime import Runtime, default_runtime

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ipaddress
    import socket
    import socketserver
    from typing import Any, TypeVar

    from spanza._addr import IP
    from spanza._http1 import BodyServer
    from spanza._http_conn import HTTPConnection
    from spanza._link import Link

    _Sock = TypeVar("_Sock", bound=c_socket)  # socket.socket, or _socket's (spanza._sock)

__all__ = [
    "DeviceLink",
    "Forward",
    "HTTPConnection",
    "Host",
    "Link",
    "Listener",
    "MAX_HOSTS",
    "MemoryWire",
    "ServerThread",
    "UDPSocket",
    "wired_pair",
]

MAX_HOSTS: int = lib.NS_MAX_HOSTS
_HDR = lib.NS_ADDR_HDR

Address = tuple[str, int]


# ---- addresses ----


def _ip(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> IP:
    try:
        return ip_address(address)
    except ValueError as exc:
        raise ConfigError(f"{address!r} is not an IP address (tunnel addresses are literal IPs)") from exc


def _ns_addr(address: Any, port: int = 0) -> Any:
    return _c_addr(_ip(address), port)


def _c_addr(ip: IP, port: int, prefix: int = 0) -> Any:
    version, packed, _ = ip
    if not 0 <= port <= 65535:
        raise ConfigError(f"port {port} is out of range 0-65535")
    a = ffi.new("struct ns_addr *")
    a.family = version
    a.port = port
    a.prefix = prefix
    ffi.memmove(a.ip, packed, len(packed))
    return a


def _split(address: Any, what: str) -> Address:
    if not isinstance(address, tuple) or len(address) < 2:
        raise ConfigError(f"{what} must be an (address, port) tuple, not {address!r}")
    return str(address[0]), int(address[1])


def _hdr_pack(address: str, port: int) -> bytes:
    version, packed, _ = _ip(address)
    return bytes([version, 0]) + port.to_bytes(2, "big") + packed.ljust(16, b"\0")


def _hdr_unpack(hdr: bytes) -> Address:
    if len(hdr) < _HDR or hdr[0] not in (4, 6):
        raise SpanzaError("malformed address header from the netstack")
    raw = hdr[4:8] if hdr[0] == 4 else hdr[4:20]
    return ip_text(bytes(raw)), int.from_bytes(hdr[2:4], "big")


def _wait(op: Any, timeout: float | None, what: str) -> int:
    """Waits for a C operation (in slices: Ctrl-C gets through); TimeoutError past the deadline."""
    rc = sliced(lambda ms: int(lib.ns_op_wait(op, ms)), timeout, pending=-errno.EINPROGRESS)
    if rc == -errno.EINPROGRESS:
        raise SpanzaTimeoutError(f"{what}: timed out after {timeout} s")
    return rc


# ---- the memory wire ----


class _WireEnd:
    def __init__(self, wire: MemoryWire, side: int) -> None:
        self.wire = wire
        self.side = side
        self.runtime = wire.runtime

    def output(self) -> tuple[Any, Any]:
        return ffi.addressof(lib, "ns_wire_output"), lib.ns_wire_end(self.wire.ptr, self.side)

    def attach(self, host: Any) -> None:
        check(lib.ns_wire_plug(self.wire.ptr, self.side, host.ptr), "memory wire")
        self.wire._state.plugged[self.side] = True

    def detach(self, host: Any) -> None:
        self.wire._state.unplug(self.side)


class _WireState:
    """A wire's C side; freed when closed and both hosts are unplugged."""

    def __init__(self, ptr: Any) -> None:
        self.ptr = ptr
        self.plugged = [False, False]
        self.closing = False

    def unplug(self, side: int) -> None:
        if self.ptr is not None:
            lib.ns_wire_plug(self.ptr, side, ffi.NULL)
        self.plugged[side] = False
        self.maybe_free()

    def release(self) -> None:
        self.closing = True
        self.maybe_free()

    def maybe_free(self) -> None:
        if self.closing and self.ptr is not None and self.plugged == [False, False]:
            ptr, self.ptr = self.ptr, None
            lib.ns_wire_free(ptr)


class MemoryWire(Handle, Impairable):
    """Two hosts wired to each other in memory (tests and benchmarks).

    What one side sends reaches the other on a later loop iteration, after
    ``delay_ms`` if given. ``capture(n)`` keeps copies of the last n packets
    for ``take()``. Closing it frees it once both hosts are closed (each
    host keeps its end, and so the wire, alive).
    """

    def __init__(self, runtime: Runtime | None = None, delay_ms: float = 0) -> None:
        self.runtime = runtime or default_runtime()
        out = ffi.new("ns_wire_t **")
        check(lib.ns_wire_new(self.runtime.ptr, int(delay_ms * 1000), out), "memory wire")
        self._state = _WireState(out[0])
        self._handle_open(self._state.release, "MemoryWire")

    @property
    def ptr(self) -> Any:
        self._check_open()
        if self._state.ptr is None:
            raise ClosedError("MemoryWire is closed")
        return self._state.ptr

    # impairments (spanza.impair): out = what side 0 sends, in = what side 1 sends
    _IMPAIR_HOPS = {"wire": lib.IMP_HOP_WIRE}

    @contextlib.contextmanager
    def _impair_ptr(self) -> Iterator[Any]:
        yield self.ptr

    def end(self, side: int) -> Link:
        if side not in (0, 1):
            raise ConfigError("a memory wire has sides 0 and 1")
        return _WireEnd(self, side)

    def set_delay(self, delay_ms: float) -> None:
        check(lib.ns_wire_set_delay(self.ptr, int(delay_ms * 1000)), "memory wire")

    def stats(self) -> dict[str, list[int]]:
        st = ffi.new("struct ns_wire_stats *")
        check(lib.ns_wire_get_stats(self.ptr, st), "memory wire")
        return {k: [int(getattr(st, k)[0]), int(getattr(st, k)[1])] for k in ("packets", "bytes", "dropped")}

    def capture(self, max_packets: int) -> None:
        check(lib.ns_wire_capture(self.ptr, max_packets), "memory wire capture")

    def take(self) -> list[tuple[int, bytes]]:
        """Captured packets so far, oldest first, as (sending side, packet)."""
        out: list[tuple[int, bytes]] = []
        buf = ffi.new("uint8_t[]", 65536)
        side = ffi.new("int *")
        while True:
            n = check(lib.ns_wire_take(self.ptr, buf, 65536, side), "memory wire")
            if n == 0:
                return out
            out.append((int(side[0]), ffi.buffer(buf, n)[:]))


# ---- a WireGuard device as the link ----


class DeviceLink:
    """A :class:`spanza.Device` as a host's link: what the host sends goes
    into the tunnel (to the peer whose allowed IPs hold the destination),
    what the tunnel delivers goes to the host. Create the host on the
    device's runtime; close the host before the device (a host made with
    ``Device(address=...)`` is the device's own: the device closes it)."""

    def __init__(self, device: Any, *, _owned: bool = False) -> None:
        # A user's link keeps its device alive for the host's sake; the
        # device's own host must not (the device would never be collected).
        self._device: Any = None if _owned else device
        self._ref = weakref.ref(device)
        self._owned = _owned
        self._dev_ptr = device.ptr
        self.runtime = device.runtime

    @property
    def device(self) -> Any:
        return self._device if self._device is not None else self._ref()

    def output(self) -> tuple[Any, Any]:
        return ffi.addressof(lib, "ns_dev_output"), self._dev_ptr

    def attach(self, host: Any) -> None:
        rc = lib.ns_dev_attach(host.ptr, self._dev_ptr)
        if rc == -errno.EXDEV:
            raise ConfigError(
                "the host and its device must be on the same runtime (create the host with runtime=device.runtime)"
            )
        check(rc, "attach host to device")

    def detach(self, host: Any) -> None:
        # The device's own host is freed before the device; a user's host
        # after it only if the device is still open.
        if self._owned or not self._device.closed:
            lib.ns_dev_detach(host.ptr, self._dev_ptr)


# ---- hosts ----


class _HostState:
    """A host's C side and the release functions of what lives on it; the
    host's finalizer holds it, so it refers to no Python object on the host."""

    def __init__(self, ptr: Any, link: Link) -> None:
        self.ptr = ptr
        self.link = link
        self.lock = threading.RLock()  # a finalizer may run while it is held
        self.children: dict[int, Callable[[], None]] = {}  # id -> release
        self._next = 0

    def add(self, release: Callable[[], None]) -> int:
        with self.lock:
            self._next += 1
            self.children[self._next] = release
            return self._next

    def remove(self, key: int) -> None:
        with self.lock:
            self.children.pop(key, None)

    def release(self) -> None:
        """Closes what lives on the host (servers first: their threads poll
        their listener's fd, which must not be closed and reused while they
        do), detaches the link, frees the host. Idempotent."""
        if self.ptr is None:
            return
        with self.lock:
            children = sorted(self.children.items(), key=lambda kv: not getattr(kv[1], "server_first", False))
            self.children.clear()
        for _, release in children:
            release()
        self.link.detach(self)
        ptr, self.ptr = self.ptr, None
        lib.ns_host_free(ptr)


class Host(Handle):
    """A virtual host: one lwIP netif with its addresses, on a link.

    ``addresses`` are interfaces like ``"192.168.4.1/24"`` or ``"fd00::1/64"``
    (at most one IPv4 and three IPv6). Every socket the host opens uses one
    of them as its local address; packets not addressed to the host are
    dropped and counted (see :meth:`stats`). Closing the host closes what
    lives on it (listeners, sockets, forwards, servers).
    """

    def __init__(
        self,
        addresses: str | Iterable[str],
        link: Link,
        *,
        runtime: Runtime | None = None,
        mtu: int = lib.NS_DEFAULT_MTU,
        _owned: bool = False,
    ) -> None:
        if isinstance(addresses, str):
            addresses = [addresses]
        elif not isinstance(addresses, Iterable):
            raise TypeError(
                f"address: want an interface like '192.168.4.1/24' or a list of them, "
                f"not {type(addresses).__name__} {addresses!r}"
            )
        try:
            given = list(addresses)
            ifaces = [ip_interface(a) for a in given]
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"address: {exc} (want an interface like '192.168.4.1/24')") from exc
        if not ifaces:
            raise ConfigError("a host needs at least one address")
        self.runtime = runtime or getattr(link, "runtime", None) or default_runtime()
        self._given = given
        self._ifaces = ifaces
        self.mtu = mtu
        arr = ffi.new("struct ns_addr[]", len(ifaces))
        for i, (ip, prefix, _) in enumerate(ifaces):
            arr[i] = _c_addr(ip, 0, prefix)[0]
        fn, ctx = link.output()
        out = ffi.new("ns_host_t **")
        names = ", ".join(text for _, _, text in ifaces)
        rc = lib.ns_host_new(self.runtime.ptr, arr, len(ifaces), mtu, fn, ctx, out)
        if rc == -errno.EADDRINUSE:
            # The holder may be garbage not yet collected (a notebook cell run
            # again): collect it, then try once more.
            gc.collect()
            rc = lib.ns_host_new(self.runtime.ptr, arr, len(ifaces), mtu, fn, ctx, out)
        if rc == -errno.EXDEV and fork_generation() > 0:
            raise SpanzaError(
                "lwIP's stack was in use by the parent process when it forked, and it is one per "
                "process: create hosts in a process started with multiprocessing's 'spawn' start "
                "method, or fork before creating any host",
                errno.EXDEV,
            )
        if rc == -errno.EXDEV:
            raise SpanzaError(
                "lwIP runs one stack per process and it already runs on another runtime: "
                "create every host on the same runtime (the default one unless you chose)",
                errno.EXDEV,
            )
        if rc == -errno.EUSERS:
            raise SpanzaError(
                f"too many hosts: at most {MAX_HOSTS} per process (lwIP's interface limit); "
                "close hosts you no longer need",
                errno.EUSERS,
            )
        if rc == -errno.EADDRINUSE:
            raise AddressInUseError(
                f"host {names}: another host of this process already has one of these addresses "
                "(close it, or spanza.close_all())",
                errno.EADDRINUSE,
            )
        if rc == -errno.EINVAL:
            raise ConfigError(
                f"host {names}: need unicast addresses (at most one IPv4, three IPv6, "
                f"no loopback/link-local/multicast) and an MTU of 576-65535 (1280+ with IPv6), got mtu={mtu}"
            )
        check(rc, f"host {names}")
        self._state = _HostState(out[0], link)
        # A device's own host is freed by the device (no finalizer of its own).
        self._handle_open(self._state.release, f"Host {names}", owned=_owned)
        try:
            link.attach(self)
        except BaseException:
            self.close()
            raise

    # -- basics --

    @property
    def ptr(self) -> Any:
        if self._state.ptr is None:
            raise ClosedError(f"{self._label} is closed (its device was closed)")
        self._check_open()
        return self._state.ptr

    @property
    def closed(self) -> bool:
        return super().closed or self._state.ptr is None

    @functools.cached_property
    def interfaces(self) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
        """The host's addresses as ipaddress interfaces."""
        import ipaddress

        return [ipaddress.ip_interface(a) for a in self._given]

    @property
    def addresses(self) -> list[str]:
        return [ip[2] for ip, _, _ in self._ifaces]

    def address(self, version: int = 4) -> str:
        """The host's (first) address of this IP version."""
        for (v, _, text), _, _ in self._ifaces:
            if v == version:
                return text
        raise ConfigError(f"host {self} has no IPv{version} address")

    def stats(self) -> dict[str, int]:
        st = ffi.new("struct ns_host_stats *")
        check(lib.ns_host_get_stats(self.ptr, st), "host stats")
        return {name: int(getattr(st, name)) for name, _ in ffi.typeof("struct ns_host_stats").fields}

    def inject(self, packet: bytes) -> bool:
        """Delivers a raw IP packet as if it came from the link; False if the
        host dropped it (malformed, or not addressed to it)."""
        return bool(lib.ns_host_inject(self.ptr, packet, len(packet)) == 0)

    def __repr__(self) -> str:
        return f"<Host {' '.join(text for _, _, text in self._ifaces)}{' closed' if self.closed else ''}>"

    def __str__(self) -> str:
        return ",".join(self.addresses)

    # -- TCP --

    def connect(self, address: Address, timeout: float | None = None) -> socket.socket:
        """Opens a TCP connection inside the tunnel; returns a connected
        (AF_UNIX) socket whose other end the runtime pumps into lwIP."""
        import socket

        return self._connect(address, timeout, socket.socket)

    def _connect(self, address: Address, timeout: float | None, cls: type[_Sock]) -> _Sock:
        """`connect` as a `cls` (Spanza's own HTTP exchange takes the C
        module's, see spanza._sock)."""
        ip, port = _split(address, "address")
        out = ffi.new("ns_op_t **")
        rc = lib.ns_tcp_connect(self.ptr, _ns_addr(ip, port), out)
        if rc == -errno.EAFNOSUPPORT:
            raise ConfigError(f"host {self} has no IPv{_ip(ip)[0]} address to connect to {ip} from")
        check(rc, f"connect to {ip}:{port}")
        op = out[0]
        try:
            rc = _wait(op, timeout, f"connect to {ip}:{port} from {self}")
            if rc == -errno.ECONNREFUSED:
                raise error(errno.ECONNREFUSED, f"connection to {ip}:{port} refused (from {self})")
            if rc == -errno.ETIMEDOUT:
                raise SpanzaTimeoutError(f"connection to {ip}:{port} timed out (from {self})")
            if rc < 0:
                raise error(-rc, f"connect to {ip}:{port} from {self}: {os.strerror(-rc)}")
            sock = cls(fileno=rc)
            if timeout is not None:
                sock.settimeout(timeout)
            return sock
        finally:
            lib.ns_op_free(op)

    def listen(self, port: int = 0, backlog: int = 128) -> Listener:
        """Listens on ``port`` (0: an ephemeral one) on every address of the
        host. ``accept()`` returns ``(socket, (peer_address, peer_port))``."""
        return Listener(self, port, backlog)

    def make_server(
        self,
        port: int,
        handler: type[socketserver.BaseRequestHandler],
        server_class: type[socketserver.TCPServer] | None = None,
        *,
        backlog: int = 128,
    ) -> socketserver.TCPServer:
        """A socketserver/http.server server listening inside the tunnel
        (not started: call ``serve_forever()``); the server class is
        ``http.server.ThreadingHTTPServer`` unless given."""
        if server_class is None:
            import http.server

            server_class = http.server.ThreadingHTTPServer
        listener = self.listen(port, backlog)
        try:
            server = server_class(("", listener.port), handler, bind_and_activate=False)
        except BaseException:
            listener.close()
            raise
        server.socket.close()
        server.socket = listener  # type: ignore[assignment]
        server.server_address = listener.getsockname()
        server.server_name = server.server_address[0]  # type: ignore[attr-defined]
        server.server_port = listener.port  # type: ignore[attr-defined]
        return server

    def serve_http(
        self,
        port: int = 80,
        handler: type[socketserver.BaseRequestHandler] | None = None,
        *,
        directory: str | None = None,
        body: bytes | str | None = None,
        content_type: str = "text/plain",
    ) -> ServerThread:
        """Runs an HTTP server on ``port`` inside the tunnel in a thread:
        `handler` (an http.server handler class), else one ``body`` for
        every GET and HEAD (with `content_type`; a str is sent as UTF-8), else
        ``SimpleHTTPRequestHandler`` on ``directory`` (default: the current
        one). Close the returned object to stop it."""
        if sum(x is not None for x in (handler, directory, body)) > 1:
            raise ConfigError("serve_http: give a handler, a directory or a body, not several")
        if body is not None:
            from spanza._http1 import BodyServer

            if isinstance(body, str):
                body = body.encode()
            if not isinstance(body, (bytes, bytearray, memoryview)):
                raise TypeError(f"serve_http: body is {type(body).__name__}, want bytes or str")
            listener = self.listen(port)
            try:
                return ServerThread(BodyServer(listener, body, content_type), self)
            except BaseException:
                listener.close()  # the port is free again for a corrected call
                raise
        if handler is None:
            import http.server

            d = directory or os.getcwd()

            class _Handler(http.server.SimpleHTTPRequestHandler):
                def __init__(self, *args: Any, **kwargs: Any) -> None:
                    super().__init__(*args, directory=d, **kwargs)

                def log_message(self, format: str, *args: Any) -> None:
                    pass

            handler = _Handler
        return ServerThread(self.make_server(port, handler), self)

    # -- UDP --

    def udp_socket(self, port: int = 0) -> UDPSocket:
        """A UDP socket on ``port`` (0: ephemeral) of every host address."""
        return UDPSocket(self, port)

    # -- ICMP --

    def ping(self, address: str, count: int = 1, timeout: float = 1.0, size: int = 56) -> list[float]:
        """Sends ``count`` echo requests (ICMP or ICMPv6) one after another;
        returns the round-trip times in seconds of those answered within
        ``timeout`` each. TimeoutError if none was."""
        rtts = []
        for _ in range(count):
            out = ffi.new("ns_op_t **")
            rc = lib.ns_ping(self.ptr, _ns_addr(address), size, out)
            if rc == -errno.EAFNOSUPPORT:
                raise ConfigError(f"host {self} has no IPv{_ip(address)[0]} address to ping {address} from")
            check(rc, f"ping {address}")
            try:
                try:
                    rc = _wait(out[0], timeout, f"ping {address}")
                except TimeoutError:
                    continue
                check(rc, f"ping {address}")
                rtts.append(lib.ns_op_value(out[0]) / 1e9)
            finally:
                lib.ns_op_free(out[0])
        if not rtts:
            raise SpanzaTimeoutError(f"no echo reply from {address} to {self} ({count} sent, {timeout} s each)")
        return rtts

    # -- port forwards --

    def forward(self, listen: Address = ("127.0.0.1", 0), to: Address | None = None, *, proto: str = "tcp") -> Forward:
        """Listens on the OS address ``listen``; every connection (or UDP
        client) there is carried into the tunnel to ``to``. Returns the OS
        address (a tuple that also has ``close()``)."""
        import socket

        if to is None:
            raise ConfigError("forward needs to=(tunnel_address, port)")
        lip, lport = _split(listen, "listen")
        tip, tport = _split(to, "to")
        fam = socket.AF_INET6 if _ip(lip)[0] == 6 else socket.AF_INET
        if proto == "tcp":
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        elif proto == "udp":
            s = socket.socket(fam, socket.SOCK_DGRAM)
        else:
            raise ConfigError(f"proto must be 'tcp' or 'udp', not {proto!r}")
        try:
            s.bind((lip, lport))
            if proto == "tcp":
                s.listen(128)
            bound = s.getsockname()
        except BaseException:
            s.close()
            raise
        fn = lib.ns_fwd_tcp_in if proto == "tcp" else lib.ns_fwd_udp_in
        out = ffi.new("ns_fwd_t **")
        rc = fn(self.ptr, s.detach(), _ns_addr(tip, tport), out)  # C owns the fd now
        if rc == -errno.EAFNOSUPPORT:
            raise ConfigError(f"host {self} has no IPv{_ip(tip)[0]} address to reach {tip} from")
        check(rc, f"forward {proto} {lip}:{lport} -> {tip}:{tport}")
        return Forward(self, out[0], (bound[0], bound[1]))

    def expose(self, port: int, to: Address, *, proto: str = "tcp") -> Forward:
        """Accepts connections (or datagrams) on the host's tunnel ``port``
        (0: ephemeral) and carries them to the OS address ``to``. Returns the
        tunnel address (a tuple that also has ``close()``)."""
        oip, oport = _split(to, "to")
        if proto not in ("tcp", "udp"):
            raise ConfigError(f"proto must be 'tcp' or 'udp', not {proto!r}")
        fn = lib.ns_fwd_tcp_out if proto == "tcp" else lib.ns_fwd_udp_out
        out = ffi.new("ns_fwd_t **")
        if not 0 <= port <= 65535:
            raise ConfigError(f"port {port} is out of range 0-65535")
        rc = fn(self.ptr, port, _ns_addr(oip, oport), out)
        if rc == -errno.EADDRINUSE:
            raise AddressInUseError(f"{proto} port {port} of {self} is in use", errno.EADDRINUSE)
        check(rc, f"expose {proto} {self}:{port} -> {oip}:{oport}")
        return Forward(self, out[0], (self.addresses[0], int(lib.ns_fwd_port(out[0]))))


# ---- objects living on a host ----


class _HostObject(Handle):
    """Something that lives on a host (listener, socket, forward, server).

    The host owns it: it stays open until closed or until its host closes,
    even if dropped (a server or forward started and not kept goes on
    working). It refers to its host weakly, so the host's finalizer can
    free a host whose objects are still around."""

    def __init__(self, host: Host, release: Callable[[], None], label: str) -> None:
        state = host._state
        self._host_ref = weakref.ref(host)
        self._host_text = str(host)
        self.addresses = host.addresses
        key = 0
        done = self._done = threading.Event()

        def release_once() -> None:
            state.remove(key)
            with state.lock:
                if done.is_set():
                    return
                done.set()
            release()

        release_once.server_first = isinstance(self, ServerThread)  # type: ignore[attr-defined]
        key = state.add(release_once)
        self._handle_open(release_once, label, owned=True)

    @property
    def closed(self) -> bool:
        return super().closed or self._done.is_set()

    @property
    def host(self) -> Host:
        host = self._host_ref()
        if host is None:
            raise ClosedError(f"{self._label}: its host is gone")
        return host


def _closer(close: Callable[[Any], None], ptr: Any, sock: c_socket) -> Callable[[], None]:
    """The release of a C socket object whose fd Python holds as `sock`."""

    def release() -> None:
        close(ptr)
        sock.close()

    return release


class Listener(_HostObject):
    """A TCP listener inside the tunnel. Selectable (``fileno()``), so it can
    stand in for a server socket (see :meth:`Host.make_server`)."""

    def __init__(self, host: Host, port: int, backlog: int) -> None:
        if not 0 <= port <= 65535:
            raise ConfigError(f"port {port} is out of range 0-65535")
        out = ffi.new("ns_listener_t **")
        rc = lib.ns_tcp_listen(host.ptr, port, backlog, out)
        if rc == -errno.EADDRINUSE:
            raise AddressInUseError(f"TCP port {port} of {host} is in use", errno.EADDRINUSE)
        check(rc, f"listen on {host}:{port}")
        self._ptr = out[0]
        self.port = int(lib.ns_listener_port(self._ptr))
        self._sock = c_socket(fileno=lib.ns_listener_take_fd(self._ptr))
        super().__init__(host, _closer(lib.ns_listener_close, self._ptr, self._sock), f"Listener {host}:{self.port}")

    def accept(self) -> tuple[socket.socket, Address]:
        import socket

        return self._accept(socket.socket)

    def _accept(self, cls: type[_Sock]) -> tuple[_Sock, Address]:
        """`accept` as a `cls` (the body server takes the C module's, see spanza._sock)."""
        if self.closed:
            raise OSError(errno.EBADF, f"{self._label} is closed")
        msg, fds = recv_fds(self._sock, _HDR, 4)
        if not fds:
            raise OSError(errno.EBADF, f"the listener on {self._host_text}:{self.port} is closed")
        lib.ns_listener_accepted(self._ptr)
        for extra in fds[1:]:
            os.close(extra)
        sock = cls(fileno=fds[0])
        return sock, _hdr_unpack(msg)

    def fileno(self) -> int:
        return self._sock.fileno()

    def settimeout(self, timeout: float | None) -> None:
        self._sock.settimeout(timeout)

    def gettimeout(self) -> float | None:
        return self._sock.gettimeout()

    def getsockname(self) -> Address:
        return self.addresses[0], self.port

    def __repr__(self) -> str:
        return f"<Listener {self._host_text}:{self.port}{' closed' if self.closed else ''}>"


class UDPSocket(_HostObject):
    """A UDP socket inside the tunnel, with the socket module's
    ``sendto``/``recvfrom``/``settimeout``/``fileno``/``close``."""

    def __init__(self, host: Host, port: int) -> None:
        import socket

        if not 0 <= port <= 65535:
            raise ConfigError(f"port {port} is out of range 0-65535")
        out = ffi.new("ns_udp_t **")
        rc = lib.ns_udp_open(host.ptr, port, out)
        if rc == -errno.EADDRINUSE:
            raise AddressInUseError(f"UDP port {port} of {host} is in use", errno.EADDRINUSE)
        check(rc, f"UDP socket on {host}:{port}")
        ptr = out[0]
        self.port = int(lib.ns_udp_port(ptr))
        self._sock = socket.socket(fileno=lib.ns_udp_take_fd(ptr))
        super().__init__(host, _closer(lib.ns_udp_close, ptr, self._sock), f"UDPSocket {host}:{self.port}")

    def sendto(self, data: bytes, address: Address) -> int:
        ip, port = _split(address, "address")
        if len(data) > 65507:
            raise OSError(errno.EMSGSIZE, f"datagram of {len(data)} bytes is too long for UDP")
        self._sock.sendmsg([_hdr_pack(ip, port), data])
        return len(data)

    def recvfrom(self, bufsize: int) -> tuple[bytes, Address]:
        msg = self._sock.recv(bufsize + _HDR)
        if not msg:
            raise OSError(errno.EBADF, f"the UDP socket {self._host_text}:{self.port} is closed")
        return msg[_HDR:], _hdr_unpack(msg[:_HDR])

    def settimeout(self, timeout: float | None) -> None:
        self._sock.settimeout(timeout)

    def gettimeout(self) -> float | None:
        return self._sock.gettimeout()

    def fileno(self) -> int:
        return self._sock.fileno()

    def getsockname(self) -> Address:
        return self.addresses[0], self.port

    def __repr__(self) -> str:
        return f"<UDPSocket {self._host_text}:{self.port}{' closed' if self.closed else ''}>"


class Forward(tuple):  # type: ignore[type-arg]
    """The address a forward listens on, ``(address, port)``; ``close()``
    stops it (connections already carried stay up)."""

    _obj: _ForwardObj

    def __new__(cls, host: Host, ptr: Any, address: Address) -> Forward:
        self = super().__new__(cls, address)
        self._obj = _ForwardObj(host, ptr, address)
        return self

    @property
    def host(self) -> Host:
        return self._obj.host

    def close(self) -> None:
        self._obj.close()

    @property
    def closed(self) -> bool:
        return self._obj.closed

    def __enter__(self) -> Forward:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _ForwardObj(_HostObject):
    def __init__(self, host: Host, ptr: Any, address: Address) -> None:
        super().__init__(host, lambda: lib.ns_fwd_close(ptr), f"Forward {address[0]}:{address[1]} on {host}")


def _serve(server: socketserver.TCPServer | BodyServer, wake: c_socket) -> None:
    """``serve_forever`` that stops as soon as a byte arrives on ``wake``.

    socketserver's loop polls for its shutdown flag (every 0.1 s here), so
    closing a peer or host waited out half a poll on average: most of the
    time `spanza demo` took to exit after its response. select.poll, not
    selectors (~1 ms to import, cold start)."""
    server.timeout = 0  # handle_request() right after poll said readable
    fd, wake_fd = server.fileno(), wake.fileno()
    poll = select.poll()
    poll.register(fd, select.POLLIN)
    poll.register(wake_fd, select.POLLIN)
    while True:
        ready = dict(poll.poll())
        if wake_fd in ready:
            return
        if ready.get(fd, 0) & select.POLLNVAL:
            # The server's fd was closed under it: wait for the wake-up
            # alone (as with epoll, which drops a closed fd).
            poll.unregister(fd)
            continue
        server.handle_request()
        server.service_actions()


def _stop_server(
    server: socketserver.TCPServer | BodyServer, thread: threading.Thread, wake: c_socket, wake_in: c_socket
) -> None:
    with contextlib.suppress(OSError):
        wake.send(b"x")
    thread.join(10)
    server.server_close()
    wake.close()
    wake_in.close()


class ServerThread(_HostObject):
    """A server (socketserver's, or Spanza's BodyServer) answering in a daemon thread."""

    def __init__(self, server: socketserver.TCPServer | BodyServer, host: Host | None = None) -> None:
        self.server = server
        self.address: Address = server.server_address  # type: ignore[assignment]
        self.port = self.address[1]
        wake, wake_in = socketpair()
        self._thread = threading.Thread(target=_serve, args=(server, wake_in), name=f"http {self.address}", daemon=True)
        self._thread.start()
        thread = self._thread

        def stop() -> None:
            _stop_server(server, thread, wake, wake_in)

        if host is not None:
            # Tracked by its host, so closing the host (or its device) stops
            # the thread too instead of leaving it polling a closed listener.
            super().__init__(host, stop, f"ServerThread {host}:{self.port}")
        else:
            self._handle_open(stop, f"ServerThread port {self.port}", owned=True)


def wired_pair(
    a: str | Iterable[str],
    b: str | Iterable[str],
    *,
    delay_ms: float = 0,
    runtime: Runtime | None = None,
) -> tuple[Host, Host, MemoryWire]:
    """Two hosts joined by a :class:`MemoryWire` (close the hosts, then the wire)."""
    wire = MemoryWire(runtime, delay_ms)
    try:
        ha = Host(a, wire.end(0), runtime=runtime)
    except BaseException:
        wire.close()
        raise
    try:
        hb = Host(b, wire.end(1), runtime=runtime)
    except BaseException:
        ha.close()
        wire.close()
        raise
    return ha, hb, wire


# Their modules import typing and http.client, which most uses of this one
# do not need.
__getattr__, __dir__ = lazy_names(__name__, {"HTTPConnection": "spanza._http_conn", "Link": "spanza._link"})
