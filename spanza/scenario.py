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

import http.server
import ipaddress
import logging
import os
import warnings
from typing import Any, Literal

from spanza._handle import Handle
from spanza._renamed import renamed
from spanza.derp_bind import derp_endpoint
from spanza.device import Device
from spanza.errors import ConfigError
from spanza.gateway import Gateway
from spanza.keys import PrivateKey, PublicKey
from spanza.netstack import HTTPConnection
from spanza.runtime import Runtime

log = logging.getLogger("spanza.scenario")

Mode = Literal["gateway", "transport"]
MODES: tuple[Mode, ...] = ("gateway", "transport")


def _close_parts(parts: list[Any]) -> None:
    """A peer's release: its device, then its gateway (``parts`` is the
    peer's own list: spanza.network.restart_gateway swaps the gateway)."""
    for part in parts:
        if part is not None:
            part.close()


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
        self._gateway_args: dict[str, Any] = {"ca_file": ca_file, "insecure": insecure,
                                              "derp_options": derp_options, "runtime": runtime}
        addresses = [address] if isinstance(address, str) else list(address)
        if mode == "transport":
            self.device = Device(private_key=self.private_key, listen_port=None, address=addresses,
                                 derp_url=url, derp_ca_file=ca_file, derp_insecure=insecure,
                                 derp_options=derp_options, runtime=runtime)
        else:
            self.device = Device(private_key=self.private_key, listen_port=0, address=addresses, runtime=runtime)
            try:
                self.gateway = Gateway(url, self.gateway_key, ca_file=ca_file, insecure=insecure,
                                       wg_endpoint=("127.0.0.1", self.device.listen_port),
                                       derp_options=derp_options, runtime=runtime)
            except BaseException:
                self.device.close()
                raise
        self.interfaces = [ipaddress.ip_interface(a) for a in addresses]
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
            return self.gateway.public_key
        return self.device.derp_public_key

    @property
    def address(self) -> str:
        """The first tunnel address (without prefix)."""
        return str(self.interfaces[0].ip)

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
            allowed_ips=[f"{i.ip}/{i.ip.max_prefixlen}" for i in other.interfaces],
            persistent_keepalive=self.persistent_keepalive,
        )

    def wait_relay(self, timeout: float = 10.0) -> None:
        """Waits until this peer's DERP connection is up."""
        self._check_open()
        if self.gateway is not None:
            self.gateway.wait_connected(timeout)
        else:
            self.device.wait_derp_connected(timeout)

    # -- applications --

    def serve_http(self, port: int = 80, handler: type[http.server.BaseHTTPRequestHandler] | None = None,
                   *, body: bytes | None = None) -> Any:
        """Serves HTTP on the peer's tunnel address (a handler class, or a
        fixed ``body`` for GET). Closed with the peer."""
        if handler is None:
            handler = fixed_body_handler(body if body is not None else f"hello from {self.address}\n".encode())
        return self.device.serve_http(port, handler)

    def http_get(self, url: str, timeout: float = 10.0) -> tuple[int, bytes]:
        """GET through the tunnel; returns (status, body)."""
        return http_get(self.device, url, timeout)

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

    def stats(self) -> dict[str, Any]:
        """WireGuard counters, and the gateway's or DERP transport's."""
        out: dict[str, Any] = {"wireguard": self.device.stats(), "peers": self.device.peers}
        if self.gateway is not None:
            out["gateway"] = self.gateway.stats()
        else:
            out["derp"] = self.device.derp_stats()
        return out

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
    from urllib.parse import urlsplit

    u = urlsplit(url)
    if u.scheme != "http" or not u.hostname:
        raise ConfigError(f"url: {url!r} is not http://host[:port]/path")
    conn = HTTPConnection(device, u.hostname, u.port or 80, timeout=timeout)
    try:
        conn.request("GET", (u.path or "/") + (f"?{u.query}" if u.query else ""))
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def __getattr__(name: str) -> Any:
    # Network and its helpers live in spanza.network (which imports this module).
    if name in ("Network", "Relay", "TransferResult", "transfer"):
        from spanza import network

        return getattr(network, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
