"""Peers over a relay: the Spanza scenario as building blocks.

A `Peer` is a userspace WireGuard device with a TCP/IP host, whose datagrams
cross a DERP relay, either

- through a *gateway* (``mode="gateway"``): the device speaks plain UDP to a
  local `Gateway`, the sidecar any WireGuard can use, which relays to DERP; or
- on the *DERP transport* (``mode="transport"``): the device sends its
  datagrams straight into its own DERP client.

Both modes interoperate. `connect(a, b)` makes two peers each other's
WireGuard peer::

    with DerpServer() as relay, Peer(relay.url, "192.168.4.1/24") as a, \\
            Peer(relay.url, "192.168.4.2/24") as b:
        connect(a, b)
        a.serve_http(80, body=b"hello")
        status, body = b.http_get("http://192.168.4.1/")
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Mapping

from spanza import _sock, web
from spanza._addr import ip_address
from spanza._diagnose import CONNECTED, relay_failure, state
from spanza._handle import Handle
from spanza._log import get_logger
from spanza._renamed import renamed
from spanza._stats import Stats, html_table, readable
from spanza.derp_bind import derp_endpoint
from spanza.device import Device
from spanza.errors import ConfigError, NoRouteError
from spanza.gateway import Gateway
from spanza.keys import PrivateKey, PublicKey
from spanza.netstack import Forward, Listener, UDPSocket
from spanza.runtime import Runtime
from spanza.web import split_url

TYPE_CHECKING = False
if TYPE_CHECKING:
    import http.client
    import http.server
    import ipaddress
    import socket
    from typing import Any, Literal

    from spanza._response import Response

    Mode = Literal["gateway", "transport"]

log = get_logger("spanza.scenario")

MODES: tuple[Mode, ...] = ("gateway", "transport")


def _close_parts(parts: list[Any]) -> None:
    """A peer's release: its device, then its gateway (``parts`` is the
    peer's own list: spanza.network.restart_gateway swaps the gateway)."""
    for part in parts:
        if part is not None:
            part.close()


def _host_routes(peer: Any) -> list[str]:
    """A peer's tunnel addresses as /32 and /128 allowed IPs. A Peer's
    without ipaddress (cold start); anything else with `interfaces` too."""
    if isinstance(peer, Peer):
        return [f"{text}/{32 if v == 4 else 128}" for (v, _, text), _, _ in peer._ifaces]
    return [f"{i.ip}/{i.ip.max_prefixlen}" for i in peer.interfaces]


class Peer(Handle):
    """A userspace WireGuard peer with a TCP/IP host, reachable over a relay.

    url: the DERP relay (``http(s)://host:port/derp``; ``relay_url`` is its
    old, deprecated name). address: the
    peer's tunnel interface, e.g. ``"192.168.4.1/24"`` (or a list with an
    IPv6 one). TLS to the relay: ``ca_file`` or ``insecure=True`` for a
    self-signed test relay. ``derp_options``: DERP client options (e.g.
    ``backoff_max_ms``) for the gateway or the DERP transport.
    """

    def __init__(
        self,
        url: str | None = None,
        address: str | list[str] | None = None,
        *,
        relay_url: str | None = None,
        mode: Mode = "transport",
        private_key: PrivateKey | None = None,
        ca_file: str | os.PathLike[str] | None = None,
        insecure: bool = False,
        persistent_keepalive: int | None = None,
        derp_options: dict[str, int] | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        url = renamed("Peer", "url", url, "relay_url", relay_url)
        if url is None or address is None:
            raise TypeError("Peer() needs url (the relay) and address (like '192.168.4.1/24')")
        if mode not in MODES:
            raise ConfigError(f"mode: {mode!r} is not one of {', '.join(MODES)}")
        self.mode: Mode = mode
        self.url = url
        self.private_key = private_key or PrivateKey.generate()
        self.persistent_keepalive = persistent_keepalive
        self.gateway: Gateway | None = None
        # what a gateway restart needs (spanza.network.restart_gateway)
        self.gateway_key = PrivateKey.generate()
        self._gateway_args: dict[str, Any] = {
            "ca_file": ca_file,
            "insecure": insecure,
            "derp_options": derp_options,
            "runtime": runtime,
        }
        addresses = [address] if isinstance(address, str) else list(address)
        if mode == "transport":
            self.device = Device(
                private_key=self.private_key,
                listen_port=None,
                address=addresses,
                derp_url=url,
                derp_ca_file=ca_file,
                derp_insecure=insecure,
                derp_options=derp_options,
                runtime=runtime,
            )
        else:
            self.device = Device(private_key=self.private_key, listen_port=0, address=addresses, runtime=runtime)
            # The gateway on its device's loop thread: every packet crosses
            # between them, and on one thread that hop costs no wake-up
            # (a ping through derper: 0.22-0.30 ms against 0.37 ms with a
            # thread each). A standalone Gateway gets a thread of its own.
            self._gateway_args["runtime"] = self.device.runtime
            try:
                wg_endpoint = ("127.0.0.1", self.device.listen_port)
                self.gateway = Gateway(url, self.gateway_key, wg_endpoint=wg_endpoint, **self._gateway_args)
            except BaseException:
                self.device.close()
                raise
        self._host = self.device.host
        self._ifaces = self._host._ifaces
        parts: list[Any] = [self.device, self.gateway]
        self._parts = parts
        self._handle_open(lambda: _close_parts(parts), f"Peer {self.address}")

    @property
    def relay_url(self) -> str:
        """Deprecated: the relay's URL is `url`."""
        warnings.warn("Peer.relay_url is deprecated: use url", DeprecationWarning, stacklevel=2)
        return self.url

    # -- identity --

    @property
    def public_key(self) -> PublicKey:
        """The WireGuard public key."""
        return self.private_key.public_key

    @property
    def derp_key(self) -> PublicKey:
        """The DERP key other peers' datagrams for this one are sent to."""
        if self.gateway is not None:
            key: PublicKey = self.gateway.public_key
            return key
        return self.device.derp_public_key

    @functools.cached_property
    def interfaces(self) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
        """The tunnel addresses as ipaddress interfaces (its host's)."""
        return self._host.interfaces

    @property
    def address(self) -> str:
        """The first tunnel address (without prefix)."""
        return self._ifaces[0][0][2]

    # -- wiring --

    def add_peer(self, other: Peer) -> None:
        """Makes `other` this peer's WireGuard peer, reached over the relay."""
        if self.gateway is not None:
            try:
                endpoint: Any = self.gateway.address_for(other.derp_key)  # re-added: same socket
            except ConfigError:
                endpoint = self.gateway.add_remote_peer(other.derp_key)
        else:
            endpoint = derp_endpoint(other.derp_key)
        self.device.add_peer(
            other.public_key,
            endpoint=endpoint,
            allowed_ips=_host_routes(other),
            persistent_keepalive=self.persistent_keepalive,
        )

    def wait_relay(self, timeout: float = 10.0) -> None:
        """Waits until this peer's DERP connection is up."""
        self._check_open()
        if self.gateway is not None:
            self.gateway.wait_connected(timeout)
        else:
            self.device.wait_derp_connected(timeout)

    # -- the tunnel, from this peer's TCP/IP host --
    # Each checks first that a WireGuard peer routes the destination and
    # that the relay is (or can get) connected, so a missing connect() or a
    # dead relay is said at once instead of after the timeout.

    def ping(self, address: str, count: int = 1, timeout: float = 1.0, size: int = 56) -> list[float]:
        """ICMP/ICMPv6 echo to a tunnel address; the round-trip times in seconds."""
        self.check_route(address, timeout)
        return self.device.ping(address, count, timeout, size)

    def connect(self, address: tuple[str, int], timeout: float | None = 10.0) -> socket.socket:
        """A TCP connection into the tunnel, as a real (OS) socket."""
        self.check_route(address[0], timeout)
        try:
            return self.device.connect(address, timeout)
        except TimeoutError as e:
            raise TimeoutError(f"{e}: {self.why_silent(address[0])}") from None

    def listen(self, port: int = 0, backlog: int = 128) -> Listener:
        """A TCP listener on this peer's tunnel address; ``accept()`` gives real sockets."""
        return self.device.listen(port, backlog)

    def udp_socket(self, port: int = 0) -> UDPSocket:
        """A UDP socket on this peer's tunnel address (sendto/recvfrom tunnel addresses)."""
        return self.device.udp_socket(port)

    def forward(
        self, listen: tuple[str, int] = ("127.0.0.1", 0), to: tuple[str, int] | None = None, *, proto: str = "tcp"
    ) -> Forward:
        """An OS socket on `listen` whose connections (or datagrams) enter
        the tunnel to `to` (like ``ssh -L``); the result is the (host, port)
        it listens on, and closes the forward when closed."""
        if to is not None:
            self.check_route(to[0], None)
        return self.device.forward(listen, to, proto=proto)

    def expose(self, port: int, to: tuple[str, int], *, proto: str = "tcp") -> Forward:
        """This peer's tunnel `port`, relayed to the OS address `to` (like ``ssh -R``)."""
        return self.device.expose(port, to, proto=proto)

    def serve_http(
        self,
        port: int = 80,
        handler: type[http.server.BaseHTTPRequestHandler] | None = None,
        *,
        body: bytes | str | None = None,
    ) -> Any:
        """Serves HTTP on the peer's tunnel address: a handler class
        (http.server's), or one ``body`` for every GET and HEAD (default:
        "hello from <address>"), answered by Spanza's HTTP/1.1 server.
        Closed with the peer."""
        if handler is None:
            if body is None:
                body = f"hello from {self.address}\n".encode()
            return self.device.serve_http(port, body=body)
        return self.device.serve_http(port, handler)

    def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | str | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = 10.0,
    ) -> Response:
        """An HTTP request through the tunnel (``http://<tunnel ip>[:port]/path``);
        returns a `spanza.web.Response` (status, reason, headers, body; ``.json()``,
        ``.text``). ``json=`` sends a JSON body."""
        from spanza._response import Headers, Response

        data, hdrs = web.encode_body(body, json, headers)
        status, reason, fields, got = self._exchange(method, url, data, hdrs, timeout)
        return Response(status, reason, Headers(fields), got)

    def _exchange(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str] | None, timeout: float | None
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        host, _, _ = split_url(url)
        self.check_route(host, timeout)
        try:
            connect = functools.partial(self.device.host._connect, cls=_sock.socket)
            return web._exchange(connect, method, url, body, headers, timeout)
        except TimeoutError as e:
            raise TimeoutError(f"{e}: {self.why_silent(host)}") from None

    def http_connection(self, url: str, timeout: float | None = 10.0) -> http.client.HTTPConnection:
        """An ``http.client.HTTPConnection`` to the URL's host through the
        tunnel (keep-alive, streaming); close it when done."""
        host, _, _ = split_url(url)
        self.check_route(host, timeout)
        return web.connection(self.device, url, timeout)

    def http_get(self, url: str, timeout: float = 10.0) -> tuple[int, bytes]:
        """GET through the tunnel; returns (status, body)."""
        status, _, _, body = self._exchange("GET", url, None, None, timeout)
        return status, body

    def check_route(self, address: str, timeout: float | None = 10.0) -> None:
        """Raises NoRouteError unless a WireGuard peer's allowed IPs contain
        `address`, and RelayError if the relay is unreachable or refused this
        peer; waits up to `timeout` for a first relay connection in progress."""
        try:
            addr = ip_address(address)
        except ValueError:
            raise ConfigError(
                f"{address!r} is not an IP address: tunnel hosts have no DNS, use the peer's tunnel address"
            ) from None
        ip = addr[2]
        if any(addr == own for own, _, _ in self._ifaces):
            raise NoRouteError(
                f"{ip} is this peer's own address: there is no loopback in the tunnel; use another peer's address"
            )
        if self.device.route(ip) is None:
            raise NoRouteError(
                f"no peer's allowed IPs contain {ip}: did you call connect()? "
                f"(this peer has {len(self.device.peers)} peer(s))"
            )
        client, last_error = self._relay_client()
        err = relay_failure(self.url, client, last_error)
        if err is not None:
            raise err
        # Waits only for a first connection: once the relay was up, packets
        # queue in the DERP client while it reconnects.
        if state(client) != CONNECTED and not client.get("connects", 0):
            self.wait_relay(10.0 if timeout is None else timeout)

    def why_silent(self, address: str) -> str:
        """What this side knows about a tunnel address that does not answer:
        no WireGuard handshake with its peer yet (and whether the relay said
        that peer is not there), or a handshake but nothing on the port."""
        key = self.device.route(address)
        p = next((p for p in self.device.peers if p.public_key == key), None)
        if p is None:
            return f"no peer's allowed IPs contain {address}"
        if p.last_handshake is not None:
            return (
                f"WireGuard with {p.public_key} is up (last handshake {p.last_handshake:%H:%M:%S} UTC): "
                "is a server listening on that port?"
            )
        gone = self._peer_gone()
        return (
            f"no WireGuard handshake with {p.public_key} yet: is that peer running, with this peer's "
            f"public key {self.public_key}, on the same relay?"
            + (" (the relay said a peer of ours is not connected to it)" if gone else "")
        )

    def _peer_gone(self) -> int:
        """How often the relay said a peer is gone or not there."""
        if self.gateway is not None:
            return int(sum(p["peer_gone"] for p in self.gateway.stats()["peers"].values()))
        return int(self.device.derp_stats()["peer_gone"])

    # -- scenarios: impair the relay link, break parts (spanza.network) --

    def impair(self, **settings: Any) -> Any:
        """Impairs this peer's relay link (the gateway's or the DERP
        transport's connection); see `spanza.impair`."""
        return (self.gateway if self.gateway is not None else self.device).impair(hop="derp", **settings)

    def clear_impairments(self) -> None:
        """Lifts every impairment on the device and the gateway."""
        self.device.clear_impairments()
        if self.gateway is not None:
            self.gateway.clear_impairments()

    def _relay_client(self) -> tuple[dict[str, Any], str]:
        """The relay connection's counters and its last error."""
        if self.gateway is not None:
            return self.gateway.stats()["derp"], self.gateway.last_error()
        return self.device.derp_stats()["client"], self.device.derp_last_error()

    def stats(self, all: bool = False) -> Stats:
        """Counters by component: ``device`` (WireGuard and its UDP),
        ``peers`` (by public key: endpoint, handshake, bytes), ``gateway`` or
        ``derp`` (the DERP transport), and ``relay`` (the DERP connection).
        Zeros are left out unless ``all=True``; the result is JSON-ready
        (``.to_pandas()``, and a table in a notebook)."""
        raw: dict[str, Any] = {"device": self.device.stats()}
        raw["peers"] = {
            p["public_key"].base64[:8]: {k: v for k, v in readable(p, True).items() if k != "public_key"}
            for p in self.device._peer_fields()
        }
        if self.gateway is not None:
            g = self.gateway.stats()
            raw["relay"] = g.pop("derp")
            g["peers"] = {k.removeprefix("nodekey:")[:8]: v for k, v in g.pop("peers").items()}
            raw["gateway"] = g
        else:
            d = self.device.derp_stats()
            raw["relay"] = d.pop("client")
            raw["derp"] = d
        return readable(raw, all)

    def _repr_html_(self) -> str:
        head = {
            "address": ", ".join(text for _, _, text in self._ifaces),
            "mode": self.mode,
            "public key": self.public_key.base64,
            "relay": self.url,
        }
        return html_table({**head, **self.stats().flat()}, title="spanza Peer")

    def close(self) -> None:
        """Closes the peer's device (and its host) and gateway. Idempotent."""
        super().close()

    def __repr__(self) -> str:
        return f"<Peer {self.address} {self.mode} {self.public_key}>"


def connect(a: Peer, b: Peer, timeout: float = 10.0) -> None:
    """Makes a and b each other's peer and waits for both relay connections."""
    a.add_peer(b)
    b.add_peer(a)
    a.wait_relay(timeout)
    b.wait_relay(timeout)


def fixed_body_handler(body: bytes, content_type: str = "text/plain") -> type[http.server.BaseHTTPRequestHandler]:
    """A request handler class that answers every GET with `body`."""

    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http %s: " + format, self.client_address[0], *args)

    return Handler


def http_get(device: Any, url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """GET `url` from a device's host (anything with ``connect``)."""
    status, _, _, body = web.exchange(device, "GET", url, timeout=timeout)
    return status, body


def __getattr__(name: str) -> Any:
    # Network and its helpers live in spanza.network (which imports this module).
    if name in ("Network", "Relay", "TransferResult", "transfer"):
        from spanza import network

        return getattr(network, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
