"""A SOCKS5 proxy into the tunnel: any program reaches tunnel addresses.

    with Socks5Proxy(device, ("127.0.0.1", 1080)) as proxy:
        # curl --socks5 127.0.0.1:1080 http://10.0.0.2/
        ...

RFC 1928, CONNECT only, no authentication (method 0); the destination is an
IPv4 or IPv6 address, or a domain that is an IP literal (what ``socks5h://``
clients send): tunnel hosts have no DNS. Python speaks the short handshake
on a thread per client (bounded in number and time); then the netstack
bridges the client's socket straight to the tunnel connection in C
(`ns_tcp_splice`), writing the success reply itself once the connection is
up, so no Python runs per byte and nothing the server says first can
overtake the reply.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import socket
import struct
import threading
from typing import Any

from spanza._addr import format_address
from spanza._ffi import ffi, lib
from spanza.errors import ConfigError

log = logging.getLogger("spanza.socks")

__all__ = ["Socks5Proxy"]

VERSION = 5
NO_AUTH = 0
NO_ACCEPTABLE = 0xFF
CMD_CONNECT = 1
ATYP_V4, ATYP_DOMAIN, ATYP_V6 = 1, 3, 4
# Reply codes (RFC 1928 §6).
OK, FAILURE, NOT_ALLOWED, NET_UNREACHABLE, HOST_UNREACHABLE, REFUSED = 0, 1, 2, 3, 4, 5
CMD_UNSUPPORTED, ATYP_UNSUPPORTED = 7, 8
_ERRNO_REPLY = {
    errno.ECONNREFUSED: REFUSED,
    errno.ETIMEDOUT: HOST_UNREACHABLE,
    errno.EHOSTUNREACH: HOST_UNREACHABLE,
    errno.ENETUNREACH: NET_UNREACHABLE,
}

HANDSHAKE_TIMEOUT_S = 10.0  # a client that stalls mid-handshake is dropped
CONNECT_TIMEOUT_S = 15.0  # the tunnel connection (WireGuard handshake included)
MAX_HANDSHAKES = 64  # clients in the handshake at once; more are closed


def _reply(code: int) -> bytes:
    """A reply with BND.ADDR 0.0.0.0:0 (clients ignore it for CONNECT)."""
    return bytes([VERSION, code, 0, ATYP_V4]) + bytes(6)


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("client closed during the SOCKS5 handshake")
        buf += chunk
    return buf


class _Refuse(Exception):
    def __init__(self, code: int, why: str) -> None:
        super().__init__(why)
        self.code = code


def read_request(s: socket.socket) -> tuple[str, int]:
    """The greeting and CONNECT request: the destination (ip, port). Answers
    the greeting; raises _Refuse with a reply code for what it cannot serve."""
    ver, nmethods = _recv_exact(s, 2)
    if ver != VERSION:
        raise ConnectionError(f"not SOCKS5 (version byte {ver})")
    methods = _recv_exact(s, nmethods)
    if NO_AUTH not in methods:
        s.sendall(bytes([VERSION, NO_ACCEPTABLE]))
        raise ConnectionError("the client offers no method without authentication")
    s.sendall(bytes([VERSION, NO_AUTH]))
    ver, cmd, _, atyp = _recv_exact(s, 4)
    if ver != VERSION:
        raise ConnectionError(f"bad request version {ver}")
    if atyp == ATYP_V4:
        host = str(ipaddress.IPv4Address(_recv_exact(s, 4)))
    elif atyp == ATYP_V6:
        host = str(ipaddress.IPv6Address(_recv_exact(s, 16)))
    elif atyp == ATYP_DOMAIN:
        (n,) = _recv_exact(s, 1)
        host = _recv_exact(s, n).decode("ascii", errors="replace").strip("[]")
    else:
        raise _Refuse(ATYP_UNSUPPORTED, f"address type {atyp}")
    (port,) = struct.unpack("!H", _recv_exact(s, 2))
    if cmd != CMD_CONNECT:
        raise _Refuse(CMD_UNSUPPORTED, f"command {cmd} (only CONNECT is served)")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise _Refuse(
            HOST_UNREACHABLE,
            f"{host!r} is not an IP address (tunnel hosts have no DNS)",
        ) from None
    return host, port


class Socks5Proxy:
    """A SOCKS5 server on the OS address `listen` whose CONNECTs go into
    `device`'s tunnel (from its TCP/IP host). ``address`` is where it
    listens; ``close()`` stops it (spliced connections stay up)."""

    def __init__(self, device: Any, listen: tuple[str, int] = ("127.0.0.1", 1080)) -> None:
        self.device = device
        host = device.host  # ConfigError when the device has no address
        self._host_ptr = host.ptr
        family = socket.AF_INET6 if ":" in listen[0] else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.bind(listen)
            self._sock.listen(128)
        except OSError as e:
            self._sock.close()
            raise ConfigError(f"socks5: cannot listen on {format_address(listen)}: {e.strerror}") from None
        self.address: tuple[str, int] = self._sock.getsockname()[:2]
        self._slots = threading.BoundedSemaphore(MAX_HANDSHAKES)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="spanza-socks5", daemon=True)
        self._thread.start()
        log.info("SOCKS5 proxy on %s into the tunnel", format_address(self.address))

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._sock.accept()
            except OSError:
                return  # closed
            if not self._slots.acquire(blocking=False):
                client.close()  # too many clients stuck in the handshake
                continue
            threading.Thread(
                target=self._serve,
                args=(client,),
                name="spanza-socks5-client",
                daemon=True,
            ).start()

    def _routed(self, ip: str) -> bool:
        addr = ipaddress.ip_address(ip)
        return any(addr in ipaddress.ip_network(a, strict=False) for p in self.device.peers for a in p.allowed_ips)

    def _serve(self, client: socket.socket) -> None:
        try:
            client.settimeout(HANDSHAKE_TIMEOUT_S)
            try:
                ip, port = read_request(client)
                if not self._routed(ip):
                    raise _Refuse(NET_UNREACHABLE, f"no peer's allowed IPs contain {ip}")
                code = self._splice(client, ip, port)
            except _Refuse as r:
                log.info("SOCKS5: refused: %s", r)
                code = r.code
            except (OSError, ValueError) as e:
                log.debug("SOCKS5: dropped a client: %s", e)
                return
            if code != OK:
                client.sendall(_reply(code))
        except OSError:
            pass
        finally:
            client.close()  # after a splice the netstack holds its own copy
            self._slots.release()

    def _splice(self, client: socket.socket, ip: str, port: int) -> int:
        """Hands a copy of the client's socket to the netstack, which
        connects to (ip, port), greets the client with the success reply
        and bridges the two. The reply code (OK when spliced)."""
        from spanza.netstack import _ns_addr

        out = ffi.new("ns_op_t **")
        hello = _reply(OK)
        rc = lib.ns_tcp_splice(
            self._host_ptr,
            _ns_addr(ip, port),
            os.dup(client.fileno()),
            hello,
            len(hello),
            out,
        )
        if rc < 0:
            return _ERRNO_REPLY.get(-rc, FAILURE)
        op = out[0]
        try:
            rc = lib.ns_op_wait(op, int(CONNECT_TIMEOUT_S * 1000))
        finally:
            lib.ns_op_free(op)  # cancels a pending connect (and closes the copy)
        if rc == -errno.EINPROGRESS:
            return HOST_UNREACHABLE
        if rc < 0:
            return _ERRNO_REPLY.get(-rc, FAILURE)
        log.debug("SOCKS5: %s:%d spliced", ip, port)
        return OK

    def close(self) -> None:
        """Stops accepting (idempotent)."""
        if self._closed.is_set():
            return
        self._closed.set()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Socks5Proxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Socks5Proxy {format_address(self.address)}{' closed' if self._closed.is_set() else ''}>"
