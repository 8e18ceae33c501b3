"""Socket addresses as users write them: ``"host:port"``, ``"[v6]:port"``,
``":port"`` (all addresses) or a ``(host, port)`` tuple. One parser for the
device's endpoints and the gateway's addresses, so both accept the same
forms and say the same things about the ones they refuse.

And IP addresses without the ipaddress module (~3 ms to import, of a cold
start of ~40, see bench/cold_start.py): a plain literal is parsed by
inet_pton, anything else (a zone, a netmask, an int, an ipaddress object)
by ipaddress, so results and errors are ipaddress's
(tests/unit/test_addr_ip.py compares them)."""

from __future__ import annotations

from _socket import AF_INET, AF_INET6, inet_ntop, inet_pton

from spanza.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Union

    AddressLike = Union[str, tuple[str, int], int]

# (version, packed, str(ip)) of an ipaddress.ip_address; equal tuples are
# equal addresses (the text holds an IPv6 zone).
IP = tuple[int, bytes, str]
# (IP of .ip, prefix length, str()) of an ipaddress.ip_interface
Interface = tuple[IP, int, str]


def ip_text(packed: bytes) -> str:
    """``str(ipaddress.ip_address(packed))``."""
    if len(packed) == 4:
        return inet_ntop(AF_INET, packed)
    if not any(packed[:10]):
        # inet_ntop writes ::a.b.c.d and ::ffff:a.b.c.d where ipaddress does
        # not (or, for the second, does since Python 3.13).
        import ipaddress

        return str(ipaddress.IPv6Address(packed))
    return inet_ntop(AF_INET6, packed)


def ip_literal(text: str) -> IP | None:
    """`IP` of a plain IPv4 or IPv6 literal (no zone, no prefix), else None."""
    for family, version in ((AF_INET, 4), (AF_INET6, 6)):
        try:
            packed = inet_pton(family, text)
        except (OSError, ValueError):  # ValueError: a NUL in the text
            continue
        return version, packed, ip_text(packed)
    return None


def ip_address(value: Any) -> IP:
    """`IP` of ``ipaddress.ip_address(value)``; ValueError as it."""
    if isinstance(value, str):
        ip = ip_literal(value)
        if ip is not None:
            return ip
    import ipaddress

    a = ipaddress.ip_address(value)
    return a.version, a.packed, str(a)


def _prefixed(value: Any) -> Interface | None:
    # "literal[/prefix length]" (what ipaddress also reads, and no more)
    if not isinstance(value, str):
        return None
    text, slash, length = value.partition("/")
    ip = ip_literal(text)
    if ip is None:
        return None
    bits = 32 if ip[0] == 4 else 128
    if slash and not (length.isascii() and length.isdigit() and int(length) <= bits):
        return None
    n = int(length) if slash else bits
    return ip, n, f"{ip[2]}/{n}"


def ip_interface(value: Any) -> Interface:
    """`Interface` of ``ipaddress.ip_interface(value)``; its ValueError or
    TypeError."""
    got = _prefixed(value)
    if got is not None:
        return got
    import ipaddress

    i = ipaddress.ip_interface(value)
    return (i.version, i.ip.packed, str(i.ip)), i.network.prefixlen, str(i)


def ip_network(value: Any) -> str:
    """``str(ipaddress.ip_network(value, strict=False))`` (host bits masked
    off); its ValueError or TypeError."""
    got = _prefixed(value)
    if got is None:
        import ipaddress

        return str(ipaddress.ip_network(value, strict=False))
    (_, packed, _), length, _ = got
    bits = len(packed) * 8
    n = int.from_bytes(packed, "big") >> (bits - length) << (bits - length)
    return f"{ip_text(n.to_bytes(len(packed), 'big'))}/{length}"


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
        version, _, addr = ip_address(name)
    except ValueError:
        import socket

        try:
            infos = socket.getaddrinfo(host, port_n, type=socket.SOCK_DGRAM)
        except socket.gaierror as e:
            raise ConfigError(f"{what}: cannot resolve {host!r}: {e.strerror}") from None
        return str(infos[0][4][0]), port_n
    if zone:
        if version != 6:
            raise ConfigError(f"{what}: only an IPv6 address takes a zone (%{zone})")
        if not zone.isdigit():
            import socket

            try:
                socket.if_nametoindex(zone)
            except OSError:
                raise ConfigError(f"{what}: no network interface {zone!r} (the zone after %)") from None
        return f"{addr}%{zone}", port_n
    return addr, port_n


def scope_id(host: str) -> int:
    """The interface index of a ``%zone`` (0 for none)."""
    zone = host.partition("%")[2]
    if not zone:
        return 0
    import socket

    return int(zone) if zone.isdigit() else socket.if_nametoindex(zone)


def format_address(addr: tuple[str, int]) -> str:
    """``host:port`` (``[v6]:port``), as WireGuard configurations write it."""
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
