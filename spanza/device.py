"""WireGuard devices with I/O: a UDP socket, a UAPI socket, and packets.

A `Device` is the sans-IO WireGuard core driven by a runtime's event loop
(C, csrc/device/). Python configures it (`add_peer`, `ipc_set`), inspects
it (`peers`, `stats()`), and can act as its TUN: `write_packet` sends an IP
packet into the tunnel, `read_packet` returns the next packet that came
out of it. With a `name`, Debian's ``wg show NAME`` / ``wg set NAME ...``
work on it through ``/var/run/wireguard/NAME.sock``.

    with spanza.Device(private_key=key, listen_port=51820) as dev:
        dev.add_peer(peer_pub, endpoint="127.0.0.1:51821", allowed_ips=["10.0.0.2/32"])
        dev.write_packet(ip_packet)
        reply = dev.read_packet(timeout=5)
"""

from __future__ import annotations

import contextlib
import errno as _errno
import gc
import os
import threading
from collections.abc import Iterable

from spanza import _log
from spanza._addr import format_address, ip_address, ip_literal, ip_network, ip_text, parse_address
from spanza._ffi import ffi, lib
from spanza._handle import Handle
from spanza._impairable import Impairable
from spanza._lazy import lazy_names
from spanza._wait import sliced
from spanza.derp_bind import DerpBindMixin
from spanza.errors import AddressInUseError, ClosedError, ConfigError, SpanzaError, SpanzaTimeoutError, check
from spanza.keys import Key, PresharedKey, PrivateKey, PublicKey, as_key
from spanza.netstack import DeviceLink, Forward, Host, Listener, ServerThread, UDPSocket
from spanza.runtime import Runtime, default_runtime

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    import socketserver
    from typing import Any, Union

    from spanza._peerinfo import PeerInfo, parse_uapi_get

    KeyLike = Union[str, bytes, bytearray, memoryview, Any]
    Endpoint = Union[str, tuple[str, int]]

log = _log.get_logger("spanza.device")

DEFAULT_UAPI_DIR = "/var/run/wireguard"
MAX_PACKET = 65535


_LOAD_MODES = {"auto": 0, "force": 1, "never": 2}


# ---- keys -------------------------------------------------------------------


def _key_bytes(value: KeyLike, what: str, cls: type[Key] = PublicKey) -> bytes:
    """32 key bytes from a key object, raw bytes, base64 or hex text."""
    return as_key(cls, value, what).raw


# ---- configuration values -----------------------------------------------------


def _network(value: Any) -> str:
    """An allowed_ips entry as text ('10.0.0.0/24')."""
    if not isinstance(value, str):  # ipaddress objects; anything else goes as text
        import ipaddress

        if isinstance(value, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            return str(value)
        if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            return str(ipaddress.ip_network(value))
    try:
        # Like wg(8): host bits are allowed (they are masked off).
        return ip_network(str(value).strip())
    except ValueError:
        raise ConfigError(f"allowed_ips: {value!r} is not an IP network (like '10.0.0.2/32' or 'fd00::/64')") from None


_V4_MAPPED = bytes(10) + b"\xff\xff"  # ::ffff:a.b.c.d


def _endpoint_text(value: Endpoint) -> str:
    """The UAPI form of an endpoint: 'a.b.c.d:port', '[v6]:port' or 'derp:<hex>'."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("derp:"):
            hexpart = text[5:]
            if hexpart.startswith("nodekey:"):  # Tailscale's form of the DERP key
                hexpart = hexpart[len("nodekey:") :]
            if len(hexpart) != 64 or any(c not in "0123456789abcdefABCDEF" for c in hexpart):
                raise ConfigError(f"endpoint: {value!r}: a DERP endpoint is 'derp:' + 64 hex digits")
            return "derp:" + hexpart.lower()
    host, port = parse_address(value, "endpoint", allow_port_zero=False, allow_any_host=False)
    _, packed, _ = ip_address(host.partition("%")[0])
    if packed[:12] == _V4_MAPPED:
        return f"{ip_text(packed[12:])}:{port}"
    return format_address((host, port))


def _u16(value: Any, what: str) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        n = int(value)
    elif isinstance(value, bool) or not isinstance(value, int):
        # int(1.5) would quietly take port 1.
        raise TypeError(f"{what}: want an integer in 0..65535, not {type(value).__name__} {value!r}")
    else:
        n = int(value)
    if not 0 <= n <= 65535:
        raise ConfigError(f"{what}: {n} is not in 0..65535")
    return n


def _check_ipc_lines(text: str) -> list[str]:
    """Validates `ipc_set` text well enough to say which line is wrong."""
    lines = text.split("\n")
    while lines and lines[-1] == "":
        lines.pop()
    if lines and lines[0] == "set=1":
        lines.pop(0)
    for i, line in enumerate(lines, 1):
        if line == "":
            raise ConfigError(f"ipc_set: line {i} is blank (a blank line ends a UAPI request)")
        key, sep, value = line.partition("=")
        if not sep:
            raise ConfigError(f"ipc_set: line {i} {line!r} is not key=value")
        if key in ("private_key", "public_key", "preshared_key"):
            if len(value) != 64 or any(c not in "0123456789abcdefABCDEF" for c in value):
                raise ConfigError(f"ipc_set: line {i}: {key} must be 64 hex digits, got {value!r}")
        elif key in ("listen_port", "persistent_keepalive_interval"):
            _u16(value, f"ipc_set: line {i}: {key}")
        elif key == "fwmark":
            if not value.isdigit() or int(value) > 0xFFFFFFFF:
                raise ConfigError(f"ipc_set: line {i}: fwmark must be a number in 0..4294967295")
        elif key in ("replace_peers", "remove", "update_only", "replace_allowed_ips"):
            if value != "true":
                raise ConfigError(f"ipc_set: line {i}: {key} takes only 'true', got {value!r}")
        elif key == "allowed_ip":
            _network(value[1:] if value.startswith("-") else value)
            if "/" not in value:
                raise ConfigError(f"ipc_set: line {i}: allowed_ip {value!r} needs a /prefix length")
        elif key == "endpoint":
            _endpoint_text(value)
        elif key == "protocol_version":
            if value != "1":
                raise ConfigError(f"ipc_set: line {i}: protocol_version must be 1")
        else:
            raise ConfigError(f"ipc_set: line {i}: unknown key {key!r}")
    return lines


# ---- packets --------------------------------------------------------------------


def _check_ip_packet(data: bytes) -> None:
    if len(data) == 0:
        raise ConfigError("write_packet: empty packet")
    if len(data) > MAX_PACKET:
        raise ConfigError(f"write_packet: {len(data)} bytes is larger than an IP packet can be ({MAX_PACKET})")
    version = data[0] >> 4
    if version == 4:
        if len(data) < 20:
            raise ConfigError(f"write_packet: {len(data)} bytes is shorter than an IPv4 header (20)")
        total = int.from_bytes(data[2:4], "big")
        if total > len(data) or total < 20:
            raise ConfigError(f"write_packet: IPv4 total length {total} does not fit the {len(data)} bytes given")
    elif version == 6:
        if len(data) < 40:
            raise ConfigError(f"write_packet: {len(data)} bytes is shorter than an IPv6 header (40)")
        total = 40 + int.from_bytes(data[4:6], "big")
        if total > len(data):
            raise ConfigError(f"write_packet: IPv6 payload length says {total} bytes, only {len(data)} given")
    else:
        raise ConfigError(f"write_packet: not an IPv4 or IPv6 packet (version nibble {version})")


def _destination(data: bytes) -> str:
    return ip_text(bytes(data[16:20]) if data[0] >> 4 == 4 else bytes(data[24:40]))


# ---- peers ----------------------------------------------------------------------


def uapi_fields(text: str) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """A UAPI get reply as (device keys, each peer's PeerInfo fields): plain
    dicts, so that counters need not import dataclasses (see _peerinfo)."""
    dev: dict[str, str] = {}
    peers: list[dict[str, Any]] = []
    cur: dict[str, Any] | None = None
    hs_sec = hs_nsec = 0
    for line in text.split("\n"):
        if not line:
            continue
        key, _, value = line.partition("=")
        if key == "public_key":
            cur = {"public_key": PublicKey(bytes.fromhex(value)), "endpoint": None, "allowed_ips": []}
            cur.update(last_handshake=None, rx_bytes=0, tx_bytes=0, persistent_keepalive=0, has_preshared_key=False)
            hs_sec = hs_nsec = 0
            peers.append(cur)
        elif cur is None:
            dev[key] = value
        elif key == "endpoint":
            cur["endpoint"] = value
        elif key == "allowed_ip":
            cur["allowed_ips"].append(value)
        elif key in ("rx_bytes", "tx_bytes"):
            cur[key] = int(value)
        elif key == "persistent_keepalive_interval":
            cur["persistent_keepalive"] = int(value)
        elif key == "preshared_key":
            cur["has_preshared_key"] = value.strip("0") != ""
        elif key in ("last_handshake_time_sec", "last_handshake_time_nsec"):
            if key.endswith("_sec"):
                hs_sec = int(value)
            else:
                hs_nsec = int(value)
            if hs_sec or hs_nsec:
                import datetime as _dt

                cur["last_handshake"] = _dt.datetime.fromtimestamp(hs_sec + hs_nsec / 1e9, tz=_dt.timezone.utc)
    return dev, peers


# ---- the device -------------------------------------------------------------------


class _DeviceState:
    """A device's C side, for its finalizer: refers to no Python handle."""

    def __init__(self, ptr: Any, runtime: Runtime) -> None:
        self.ptr = ptr
        self.runtime = runtime
        self.host_release: Any = None  # the device's own host goes first
        self.uapi_path: str | None = None

    def release(self) -> None:
        if self.host_release is not None:
            self.host_release()
        ptr, self.ptr = self.ptr, None
        if ptr is None:
            return
        if self.runtime.closed:
            # Its loop is gone, so the device's sockets cannot be closed
            # safely: leak them rather than touch freed memory.
            log.warning("device closed after its runtime: its sockets leak; close devices first")
            if self.uapi_path:
                with contextlib.suppress(OSError):
                    os.unlink(self.uapi_path)
            return
        lib.dev_py_shutdown(ptr)
        lib.dev_py_free(ptr)


class _InFlight:
    """A call in flight on a device (a class, not @contextmanager: it is on
    read_packet's per-packet path)."""

    __slots__ = ("dev",)

    def __init__(self, dev: Device) -> None:
        self.dev = dev

    def __enter__(self) -> Any:
        dev = self.dev
        with dev._lock:
            dev._check_open()
            if dev._runtime.closed:
                raise ClosedError(f"{dev._label}: its runtime {dev._runtime.name!r} is closed")
            dev._inflight += 1
        return dev._state.ptr

    def __exit__(self, *exc: object) -> None:
        dev = self.dev
        with dev._lock:
            dev._inflight -= 1
            if dev._inflight == 0:
                dev._lock.notify_all()


class Device(DerpBindMixin, Handle, Impairable):
    """A WireGuard device on a runtime's loop (see the module docstring).

    private_key: the device's key (a spanza.keys.PrivateKey, 32 bytes, or
    base64/hex text); None for none yet (set it later with ipc_set).
    listen_port: UDP port, 0 for any free port, None for no UDP socket.
    name: serve the UAPI socket ``<uapi_dir>/<name>.sock`` (``wg`` looks in
    /var/run/wireguard, the default). keylog_file: append tshark key-log
    lines for every handshake (debugging: it writes secrets).
    derp_url: also carry datagrams over DERP (peers with ``derp:<hex>``
    endpoints; see spanza.derp_bind), as ``derp_key`` (default: private_key),
    with ``derp_ca_file`` / ``derp_insecure`` / ``derp_options`` for its client.
    address: tunnel addresses of the device's TCP/IP host (with ``mtu``).
    From a wg-quick file: `Device.from_config`; back to one: `to_config`.
    """

    def __init__(
        self,
        private_key: KeyLike | None = None,
        listen_port: int | None = 0,
        name: str | None = None,
        runtime: Runtime | None = None,
        uapi_dir: str | None = None,
        keylog_file: str | os.PathLike[str] | None = None,
        derp_url: str | None = None,
        derp_key: KeyLike | None = None,
        derp_ca_file: str | os.PathLike[str] | None = None,
        derp_insecure: bool = False,
        derp_options: dict[str, int] | None = None,
        address: str | Iterable[str] | None = None,
        mtu: int | None = None,
    ) -> None:
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name: want an interface name like 'wg0', not {type(name).__name__}")
        if address is not None and not isinstance(address, (str, list, tuple)):
            raise TypeError(
                f"address: want an interface like '192.168.4.1/24' or a list of them, "
                f"not {type(address).__name__} {address!r}"
            )
        if runtime is not None and not isinstance(runtime, Runtime):
            raise TypeError(f"runtime: want a spanza.Runtime, not {type(runtime).__name__}")
        self._runtime = runtime or default_runtime()
        self._host: Host | None = None
        self._lock = threading.Condition()
        self._inflight = 0
        self._tls = threading.local()
        self._uapi_path: str | None = None
        self.name = name
        if uapi_dir is not None and name is None:
            raise ConfigError("uapi_dir: a UAPI socket also needs a name (Device(name='wg0', ...))")
        port = lib.DEV_NO_UDP if listen_port is None else _u16(listen_port, "listen_port")
        key = ffi.NULL if private_key is None else _key_bytes(private_key, "private_key", PrivateKey)
        err = ffi.new("int *")
        ptr = lib.dev_py_new(self._runtime.ptr, key, port, err)
        if ptr == ffi.NULL and err[0] == -_errno.EADDRINUSE and port:
            gc.collect()  # the holder may be a dropped device not yet collected
            ptr = lib.dev_py_new(self._runtime.ptr, key, port, err)
        if ptr == ffi.NULL:
            code = -err[0]
            if code == _errno.EADDRINUSE:
                raise AddressInUseError(
                    f"listen_port: UDP port {listen_port} is already in use; pick another or 0 for any", code
                )
            check(err[0], "Device")
        self._state = _DeviceState(ptr, self._runtime)
        if name:
            label = f"Device {name!r}"
        elif port == lib.DEV_NO_UDP:
            label = "Device (no UDP port)"
        else:
            label = f"Device (UDP port {lib.dev_py_listen_port(ptr)})"
        self._handle_open(self._state.release, label)
        try:
            if name is not None:
                d = uapi_dir or DEFAULT_UAPI_DIR
                rc = lib.dev_py_uapi_listen(ptr, os.fsencode(d), name.encode())
                if rc == -_errno.EINVAL:
                    raise ConfigError(f"name: {name!r} is not an interface name (1-15 of A-Z a-z 0-9 _ = + . -)")
                if rc == -_errno.EADDRINUSE:
                    raise AddressInUseError(
                        f"name: {d}/{name}.sock is served by another live process; pick another name", -rc
                    )
                check(rc, f"UAPI socket {d}/{name}.sock")
                self._uapi_path = self._state.uapi_path = os.path.join(d, f"{name}.sock")
            if keylog_file is not None:
                check(lib.dev_py_set_keylog(ptr, os.fsencode(os.fspath(keylog_file))), f"keylog_file {keylog_file}")
            if derp_url is not None:
                self.attach_derp(
                    derp_url,
                    derp_key if derp_key is not None else private_key,
                    ca_file=derp_ca_file,
                    insecure=derp_insecure,
                    options=derp_options,
                )
            if address is not None:
                self._host = Host(
                    address,
                    DeviceLink(self, _owned=True),
                    runtime=self._runtime,
                    _owned=True,
                    **({"mtu": mtu} if mtu is not None else {}),
                )
                self._state.host_release = self._host._state.release
        except BaseException:
            self.close()
            raise
        if log.isEnabledFor(_log.DEBUG):  # the port is a call on the loop thread
            port_text = str(self.listen_port) if listen_port is not None else "-"
            log.debug("device %s up on UDP port %s", name or hex(id(self)), port_text)

    # -- wg-quick files (spanza.wgquick) --

    @classmethod
    def from_config(cls, path_or_text: str | os.PathLike[str], **kwargs: Any) -> Device:
        """A device from a wg-quick file (a path, or the text): [Interface]
        PrivateKey, Address (the TCP/IP host), ListenPort, MTU; [Peer]
        PublicKey, PresharedKey, AllowedIPs, Endpoint, PersistentKeepalive.
        DNS and wg-quick's hooks are ignored (logged). `kwargs` go to Device."""
        from spanza.wgquick import device_from_config

        return device_from_config(cls, path_or_text, **kwargs)  # type: ignore[no-any-return]

    def to_config(self) -> str:
        """This device as a wg-quick file's text."""
        from spanza.wgquick import device_to_config

        return device_to_config(self)

    # -- the TCP/IP host (Device(address=...)) --

    @property
    def host(self) -> Host:
        """The device's TCP/IP host (lwIP): its sockets and servers live in
        the tunnel, and what it sends crosses WireGuard."""
        if self._host is None:
            raise ConfigError(
                "the device has no TCP/IP host: give it an address, e.g. Device(..., address='192.168.4.1/24')"
            )
        return self._host

    @property
    def addresses(self) -> list[str]:
        """The host's tunnel addresses (empty without a host)."""
        return self._host.addresses if self._host is not None else []

    def connect(self, address: tuple[str, int], timeout: float | None = None) -> socket.socket:
        """A TCP connection from the host into the tunnel, as a real socket."""
        return self.host.connect(address, timeout)

    def listen(self, port: int = 0, backlog: int = 128) -> Listener:
        """A TCP listener on the host; ``accept()`` gives real sockets."""
        return self.host.listen(port, backlog)

    def make_server(
        self,
        port: int,
        handler: type[socketserver.BaseRequestHandler],
        server_class: type[socketserver.TCPServer] | None = None,
        *,
        backlog: int = 128,
    ) -> socketserver.TCPServer:
        """A socketserver/http.server server on the host (call serve_forever);
        ``http.server.ThreadingHTTPServer`` unless a class is given."""
        return self.host.make_server(port, handler, server_class, backlog=backlog)

    def serve_http(
        self,
        port: int = 80,
        handler: type[socketserver.BaseRequestHandler] | None = None,
        *,
        directory: str | None = None,
        body: bytes | str | None = None,
        content_type: str = "text/plain",
    ) -> ServerThread:
        """An HTTP server on the host, in a thread (see Host.serve_http); close it to stop."""
        return self.host.serve_http(port, handler, directory=directory, body=body, content_type=content_type)

    def udp_socket(self, port: int = 0) -> UDPSocket:
        """A UDP socket on the host (sendto/recvfrom on tunnel addresses)."""
        return self.host.udp_socket(port)

    def ping(self, address: str, count: int = 1, timeout: float = 1.0, size: int = 56) -> list[float]:
        """ICMP/ICMPv6 echo from the host; the round-trip times in seconds."""
        return self.host.ping(address, count, timeout, size)

    def forward(
        self, listen: tuple[str, int] = ("127.0.0.1", 0), to: tuple[str, int] | None = None, *, proto: str = "tcp"
    ) -> Forward:
        """An OS socket whose connections (or datagrams) enter the tunnel to `to`."""
        return self.host.forward(listen, to, proto=proto)

    def expose(self, port: int, to: tuple[str, int], *, proto: str = "tcp") -> Forward:
        """The host's `port` in the tunnel, relayed to the OS address `to`."""
        return self.host.expose(port, to, proto=proto)

    # -- lifetime --

    def _use(self) -> _InFlight:
        """``with self._use() as p``: the C pointer, and close() waits
        until the block is done."""
        return _InFlight(self)

    # -- impairments (spanza.impair): "udp" (its socket) or "derp" (its DERP transport) --

    _IMPAIR_HOPS = {"udp": lib.IMP_HOP_DEVICE_UDP, "derp": lib.IMP_HOP_DEVICE_DERP}

    def _impair_default_hop(self) -> str:
        with self._use() as ptr:
            return "udp" if lib.dev_py_listen_port(ptr) > 0 else "derp"

    def _impair_ptr(self) -> contextlib.AbstractContextManager[Any]:
        return self._use()

    @property
    def ptr(self) -> Any:
        """The C `dev_device *` (for other modules' C calls on its loop)."""
        self._check_open()
        return self._state.ptr

    @property
    def runtime(self) -> Runtime:
        return self._runtime

    def _before_release(self) -> None:
        """close(): the host, then wake `read_packet` callers (ClosedError)
        and wait for calls in flight; the state's release frees the rest."""
        if self._host is not None:
            # The host (its sockets, servers, forwards) goes first: it sends
            # through the device.
            self._host.close()
        ptr = self._state.ptr
        if ptr is None or self._runtime.closed:
            return
        lib.dev_py_shutdown(ptr)  # readers blocked in C return now
        with self._lock:
            while self._inflight:
                self._lock.wait()

    def __repr__(self) -> str:
        if self.closed:
            return f"<{self._label} closed>"
        return f"<Device {self.name or ''} port={self.listen_port} peers={len(self.peers)}>"

    def _repr_html_(self) -> str:
        from spanza._stats import html_table, readable

        if self._closed:
            return html_table({"state": "closed"}, title="spanza Device")
        head = {
            "public key": self.public_key.base64 if self.public_key else "-",
            "addresses": ", ".join(self.addresses) or "-",
            "peers": len(self.peers),
        }
        return html_table({**head, **readable(self.stats()).flat()}, title="spanza Device")

    # -- configuration --

    def ipc_get(self) -> str:
        """The UAPI get reply's key=value lines (wireguard-go's IpcGet)."""
        out = ffi.new("char **")
        n = ffi.new("size_t *")
        with self._use() as p:
            rc = lib.dev_py_uapi_get(p, out, n)
        try:
            check(rc, "ipc_get")
            text = str(ffi.unpack(out[0], n[0]).decode())
        finally:
            lib.dev_py_free_text(out[0])
        if text.endswith("errno=0\n\n"):
            text = text[: -len("errno=0\n\n")]
        return text

    def ipc_set(self, text: str) -> None:
        """Applies UAPI set lines (``key=value``, as after ``set=1``)."""
        lines = _check_ipc_lines(text)
        body = ("\n".join(lines) + "\n").encode() if lines else b""
        with self._use() as p:
            rc = lib.dev_py_uapi_set(p, body, len(body))
        if rc == -_errno.EADDRINUSE:
            raise AddressInUseError("ipc_set: listen_port is already in use; pick another or 0 for any", -rc)
        if rc < 0:
            raise ConfigError(
                f"ipc_set: the device rejected the request ({os.strerror(-rc)}); lines before the bad one were applied",
                -rc,
            )

    def add_peer(
        self,
        public_key: KeyLike,
        endpoint: Endpoint | None = None,
        allowed_ips: Iterable[Any] = (),
        persistent_keepalive: int | None = None,
        preshared_key: KeyLike | None = None,
    ) -> None:
        """Adds a peer, or updates it like ``wg set ... peer``: allowed_ips
        replaces the peer's list; other arguments left None are unchanged."""
        if isinstance(allowed_ips, (str, bytes)):
            allowed_ips = [allowed_ips]
        lines = [f"public_key={_key_bytes(public_key, 'public_key').hex()}"]
        if preshared_key is not None:
            lines.append(f"preshared_key={_key_bytes(preshared_key, 'preshared_key', PresharedKey).hex()}")
        if endpoint is not None:
            lines.append(f"endpoint={_endpoint_text(endpoint)}")
        if persistent_keepalive is not None:
            lines.append(f"persistent_keepalive_interval={_u16(persistent_keepalive, 'persistent_keepalive')}")
        lines.append("replace_allowed_ips=true")
        lines += [f"allowed_ip={_network(a)}" for a in allowed_ips]
        self.ipc_set("\n".join(lines))

    def advance_clock(self, seconds: float) -> None:
        """Moves this device's WireGuard clock forward (virtual time on top
        of real time) and runs the protocol timers now due: rekey after
        120 s, reject after 180 s, keepalive after 10 s, handshake retry
        after 5 s, keys zeroed after 540 s. Only this device's clock: in a
        scenario, advance both ends for one picture of time. Other timers
        (its DERP client's, lwIP's) keep real time."""
        ms = round(float(seconds) * 1000)
        if not 0 <= ms < 2**32:
            raise ConfigError(f"advance_clock: {seconds!r} s is outside 0..4294967 s")
        with self._use() as p:
            check(lib.dev_py_advance_clock(p, ms), "advance_clock")

    def rekey(self, public_key: KeyLike) -> None:
        """Forces a new handshake with the peer now (new session keys; what
        is in flight under the old ones still decrypts)."""
        raw = _key_bytes(public_key, "public_key")
        with self._use() as p:
            rc = lib.dev_py_rekey(p, raw)
        if rc == -_errno.ENOENT:
            raise ConfigError(f"rekey: {PublicKey(raw)} is not a peer of this device")
        check(rc, "rekey")

    def remove_peer(self, public_key: KeyLike) -> None:
        self.ipc_set(f"public_key={_key_bytes(public_key, 'public_key').hex()}\nremove=true")

    @property
    def peers(self) -> list[PeerInfo]:
        from spanza._peerinfo import PeerInfo

        return [PeerInfo(**p) for p in self._peer_fields()]

    def _peer_fields(self) -> list[dict[str, Any]]:
        """The peers as PeerInfo's fields in dicts (for counters)."""
        return uapi_fields(self.ipc_get())[1]

    def route(self, address: str) -> PublicKey | None:
        """The peer WireGuard sends a packet for `address` to (the longest
        allowed-IPs prefix that contains it: cryptokey routing), or None."""
        ip = ip_literal(address)
        if ip is None:
            raise ConfigError(f"route: {address!r} is not an IPv4 or IPv6 address")
        version, raw, _ = ip
        family = lib.WG_AF_INET if version == 4 else lib.WG_AF_INET6
        out = ffi.new("uint8_t[32]")
        with self._use() as p:
            found = check(lib.dev_py_route(p, family, raw, out), "route")
        return PublicKey(bytes(out)) if found else None

    @property
    def public_key(self) -> PublicKey | None:
        buf = ffi.new("uint8_t[32]")
        with self._use() as p:
            rc = lib.dev_py_public_key(p, buf)
        if rc == -_errno.ENOKEY:
            return None
        check(rc, "public_key")
        return PublicKey(bytes(buf))

    @property
    def listen_port(self) -> int:
        with self._use() as p:
            return check(lib.dev_py_listen_port(p), "listen_port")

    def set_under_load(self, mode: str = "force", threshold: int = 128) -> None:
        """The cookie mechanism: 'auto' (under load above `threshold`
        handshake messages per second), 'force' (always: every handshake
        needs a cookie first), 'never'."""
        if mode not in _LOAD_MODES:
            raise ConfigError(f"set_under_load: mode {mode!r} is not one of {sorted(_LOAD_MODES)}")
        with self._use() as p:
            check(lib.dev_py_set_under_load(p, _LOAD_MODES[mode], int(threshold)), "set_under_load")

    def set_keylog(self, path: str | os.PathLike[str] | None) -> None:
        """Append tshark key-log lines for every handshake to path (None stops)."""
        with self._use() as p:
            check(lib.dev_py_set_keylog(p, os.fsencode(os.fspath(path)) if path else ffi.NULL), f"keylog {path}")

    def stats(self) -> dict[str, Any]:
        """Counters: the core's (handshakes, packets, drops by reason) and the
        I/O layer's (UDP, read queue, UAPI)."""
        io = ffi.new("struct dev_stats *")
        core = ffi.new("struct wg_device_stats *")
        with self._use() as p:
            check(lib.dev_py_stats(p, io, core), "stats")
        out: dict[str, Any] = {}
        for name, _ in ffi.typeof("struct dev_stats").fields:
            out[name] = int(getattr(io, name))
        for name, _ in ffi.typeof("struct wg_device_stats").fields:
            if name != "drops":
                out[name] = int(getattr(core, name))
        out["drops"] = {
            ffi.string(lib.wg_drop_name(i)).decode(): int(core.drops[i]) for i in range(1, lib.WG_DROP__COUNT)
        }
        return out

    # -- packets --

    def write_packet(self, packet: bytes | bytearray | memoryview) -> None:
        """Sends one IPv4/IPv6 packet into the tunnel (the peer is chosen by
        allowed IPs; staged while a handshake runs). Raises ConfigError when
        no peer's allowed_ips contain the destination or that peer has no
        endpoint; other drops are counted in stats()['drops']."""
        data = bytes(packet) if not isinstance(packet, bytes) else packet
        _check_ip_packet(data)
        with self._use() as p:
            rc = lib.dev_py_write_packet(p, data, len(data))
        if rc == lib.WG_DROP_NO_PEER:
            raise ConfigError(f"write_packet: no peer's allowed_ips contain the destination {_destination(data)}")
        if rc == lib.WG_DROP_NO_ENDPOINT:
            raise ConfigError(
                f"write_packet: the peer for {_destination(data)} has no endpoint yet; "
                "give it one (add_peer(..., endpoint=...)) or let it connect first"
            )
        check(rc, "write_packet")

    def write_packets(self, packets: Iterable[bytes | bytearray | memoryview]) -> int:
        """Sends many packets in one trip to the loop (much faster than
        write_packet in a loop). Returns how many were accepted; raises
        ConfigError like write_packet if any had no route (after all were
        processed)."""
        pkts = [p if isinstance(p, bytes) else bytes(p) for p in packets]
        if not pkts:
            return 0
        for p in pkts:
            _check_ip_packet(p)
        blob = b"".join(pkts)
        lens = ffi.new("uint32_t[]", [len(p) for p in pkts])
        reasons = ffi.new("uint8_t[]", len(pkts))
        with self._use() as ptr:
            n = check(lib.dev_py_write_batch(ptr, blob, lens, len(pkts), reasons), "write_packets")
        for i, p in enumerate(pkts):
            if reasons[i] in (lib.WG_DROP_NO_PEER, lib.WG_DROP_NO_ENDPOINT):
                bad = sum(1 for k in range(len(pkts)) if reasons[k] == reasons[i])
                what = "no peer's allowed_ips contain" if reasons[i] == lib.WG_DROP_NO_PEER else "no endpoint yet for"
                raise ConfigError(
                    f"write_packets: {bad} of {len(pkts)} packets dropped: {what} "
                    f"the destination (first: {_destination(p)})"
                )
        return n

    def read_packet(self, timeout: float | None = None) -> bytes:
        """The next IP packet out of the tunnel. Raises TimeoutError after
        `timeout` seconds (None waits until the device is closed). Ctrl-C
        interrupts the wait (KeyboardInterrupt) and leaves the device as it was."""
        buf = getattr(self._tls, "buf", None)
        if buf is None:
            buf = self._tls.buf = ffi.new("uint8_t[]", MAX_PACKET)
        with self._use() as p:
            n = sliced(lambda ms: int(lib.dev_py_read_packet(p, buf, MAX_PACKET, ms)), timeout, what="read_packet")
        if n == -_errno.ETIMEDOUT:
            raise SpanzaTimeoutError(f"read_packet: no packet within {timeout} s")
        if n == -_errno.ESHUTDOWN:
            raise ClosedError(f"read_packet: {self._label} was closed")
        check(n, "read_packet")
        return bytes(ffi.buffer(buf, n))


__all__ = ["Device", "PeerInfo", "SpanzaError", "parse_uapi_get"]


# PeerInfo is a dataclass (dataclasses imports inspect, ~5 ms): loaded with
# the first `peers`, not with the device.
__getattr__, __dir__ = lazy_names(__name__, {"PeerInfo": "spanza._peerinfo", "parse_uapi_get": "spanza._peerinfo"})
