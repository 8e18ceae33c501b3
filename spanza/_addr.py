"""Socket addresses as users write them: ``"host:port"``, ``"[v6]:port"``,
``":port"`` (all addresses) or a ``(host, port)`` tuple. One parser for the
device's endpoints and the gateway's addresses, so both accept the same
forms and say the same things about the ones they refuse."""

from __future__ import annotations

import ipaddress
import socket

from spanza.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Union

    AddressLike = Union[str, tuple[str, int], int]


def _split(value: AddressLike, what: str, any_host: bool) -> tuple[str, object]:
    if isinstance(value, tuple) and len(value) in (2, 4):  # (host, port[, flowinfo, scope_id])
        return str(value[0]), value[1]
    if isinstance(value, int) and not isinstance(value, bool):
        return "", value
    if not isinstance(value, str):
        raise ConfigError(f"{what}: {value!r} is not 'host:port' or a (host, port) tuple")
    text = value.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ConfigError(f"{what}: {value!r} is not '[IPv6]:port'")
        return host, port
    host, sep, port = text.rpartition(":")
    if not sep:
        forms = "IPv6: '[addr]:port', all addresses: ':port'" if any_host else "IPv6: '[addr]:port'"
        raise ConfigError(f"{what}: {value!r} is not 'host:port' ({forms})")
    if ":" in host:
        raise ConfigError(f"{what}: put an IPv6 address in brackets: '[{host}]:{port}'")
    return host, port


def parse_address(
    value: AddressLike, what: str, *, allow_port_zero: bool = True, allow_any_host: bool = True
) -> tuple[str, int]:
    """(host, port): host numeric, "" for all addresses (``":port"`` or a
    bare port, if allow_any_host), an IPv6 zone kept as ``%zone``. Names are
    resolved once, here (like wg(8)). ConfigError names `what` and the
    problem."""
    host, port = _split(value, what, allow_any_host)
    try:
        port_n = int(port)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: port {port!r} is not a number") from None
    low = 0 if allow_port_zero else 1
    if not low <= port_n <= 65535:
        raise ConfigError(f"{what}: port {port_n} is not in {low}..65535")
    if host == "":
        if not allow_any_host:
            raise ConfigError(f"{what}: {value!r} has no host; give 'host:port'")
        return "", port_n
    name, _, zone = host.partition("%")
    try:
        addr = ipaddress.ip_address(name)
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port_n, type=socket.SOCK_DGRAM)
        except socket.gaierror as e:
            raise ConfigError(f"{what}: cannot resolve {host!r}: {e.strerror}") from None
        return str(infos[0][4][0]), port_n
    if zone:
        if addr.version != 6:
            raise ConfigError(f"{what}: only an IPv6 address takes a zone (%{zone})")
        if not zone.isdigit():
            try:
                socket.if_nametoindex(zone)
            except OSError:
                raise ConfigError(f"{what}: no network interface {zone!r} (the zone after %)") from None
        return f"{addr}%{zone}", port_n
    return str(addr), port_n


def scope_id(host: str) -> int:
    """The interface index of a ``%zone`` (0 for none)."""
    zone = host.partition("%")[2]
    if not zone:
        return 0
    return int(zone) if zone.isdigit() else socket.if_nametoindex(zone)


def format_address(addr: tuple[str, int]) -> str:
    """``host:port`` (``[v6]:port``), as WireGuard configurations write it."""
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
