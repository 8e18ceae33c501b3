"""wg-quick configuration files: read them into a `Device`, write them back.

    dev = spanza.Device.from_config("wg0.conf")     # or the file's text
    print(dev.to_config())

The INI format of wg-quick(8): an ``[Interface]`` section (PrivateKey,
Address, ListenPort, MTU; DNS, Table, FwMark, SaveConfig and the Pre/Post
Up/Down hooks belong to wg-quick's handling of a kernel interface and are
ignored, each with a note) and ``[Peer]`` sections (PublicKey, PresharedKey,
AllowedIPs, Endpoint, PersistentKeepalive). Keys are case-insensitive;
list values are comma-separated and may repeat; ``#`` starts a comment.
Every error names the line.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from spanza.errors import ConfigError
from spanza.keys import PresharedKey, PrivateKey, PublicKey, as_key

log = logging.getLogger("spanza.wgquick")

__all__ = ["InterfaceConfig", "PeerConfig", "WgQuickConfig", "dump", "load", "parse"]

# wg-quick's own keys: they configure the kernel interface, routes and
# hooks; a userspace peer has none of those.
_IGNORED = {
    "dns",
    "table",
    "fwmark",
    "saveconfig",
    "preup",
    "postup",
    "predown",
    "postdown",
}


@dataclass
class PeerConfig:
    """One ``[Peer]`` section."""

    public_key: PublicKey
    preshared_key: PresharedKey | None = None
    allowed_ips: list[str] = field(default_factory=list)
    endpoint: str | None = None
    persistent_keepalive: int | None = None


@dataclass
class InterfaceConfig:
    """The ``[Interface]`` section."""

    private_key: PrivateKey
    addresses: list[str] = field(default_factory=list)
    listen_port: int | None = None
    mtu: int | None = None
    dns: list[str] = field(default_factory=list)


@dataclass
class WgQuickConfig:
    """A parsed file: the interface, its peers, and notes on what was ignored."""

    interface: InterfaceConfig
    peers: list[PeerConfig] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _items(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _int(value: str, what: str, lo: int, hi: int) -> int:
    try:
        n = int(value)
    except ValueError:
        raise ConfigError(f"{what}: {value!r} is not a number") from None
    if not lo <= n <= hi:
        raise ConfigError(f"{what}: {n} is not in {lo}..{hi}")
    return n


def _interface_address(value: str, what: str) -> str:
    try:
        return str(ipaddress.ip_interface(value))
    except ValueError:
        raise ConfigError(f"{what}: {value!r} is not an address with a prefix, like 10.0.0.1/24") from None


def _allowed_ip(value: str, what: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise ConfigError(f"{what}: {value!r} is not a network, like 10.0.0.2/32") from None


def parse(text: str, source: str = "<config>") -> WgQuickConfig:
    """A wg-quick file's text as a `WgQuickConfig` (ConfigError names the line)."""
    section: str | None = None
    iface: dict[str, Any] = {}
    peers: list[dict[str, Any]] = []
    notes: list[str] = []
    for no, raw in enumerate(text.splitlines(), 1):
        where = f"{source}:{no}"
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip().lower()
            if section == "interface":
                if iface.get("_seen"):
                    raise ConfigError(f"{where}: a second [Interface] section")
                iface["_seen"] = True
            elif section == "peer":
                peers.append({"_line": where})
            else:
                raise ConfigError(f"{where}: unknown section [{line[1:-1]}] (wg-quick has [Interface] and [Peer])")
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or not key:
            raise ConfigError(f"{where}: expected 'Key = Value', got {raw.strip()!r}")
        if section is None:
            raise ConfigError(f"{where}: {key} before any [Interface] or [Peer] section")
        what = f"{where}: {key}"
        if section == "interface":
            if key == "privatekey":
                iface["private_key"] = as_key(PrivateKey, value, what)
            elif key == "address":
                iface.setdefault("addresses", []).extend(_interface_address(v, what) for v in _items(value))
            elif key == "listenport":
                iface["listen_port"] = _int(value, what, 0, 65535)
            elif key == "mtu":
                iface["mtu"] = _int(value, what, 576, 65535)
            elif key in _IGNORED:
                if key == "dns":
                    iface.setdefault("dns", []).extend(_items(value))
                notes.append(
                    f"{where}: {key} ignored: a userspace peer has no system resolver, routes or hooks to configure"
                )
            else:
                raise ConfigError(f"{where}: unknown [Interface] key {key!r}")
        else:
            peer = peers[-1]
            if key == "publickey":
                peer["public_key"] = as_key(PublicKey, value, what)
            elif key == "presharedkey":
                peer["preshared_key"] = as_key(PresharedKey, value, what)
            elif key == "allowedips":
                peer.setdefault("allowed_ips", []).extend(_allowed_ip(v, what) for v in _items(value))
            elif key == "endpoint":
                peer["endpoint"] = value
            elif key == "persistentkeepalive":
                peer["persistent_keepalive"] = 0 if value.lower() == "off" else _int(value, what, 0, 65535)
            else:
                raise ConfigError(f"{where}: unknown [Peer] key {key!r}")
    if not iface.get("_seen"):
        raise ConfigError(f"{source}: no [Interface] section")
    if "private_key" not in iface:
        raise ConfigError(f"{source}: [Interface] has no PrivateKey")
    out = []
    for p in peers:
        if "public_key" not in p:
            raise ConfigError(f"{p['_line']}: [Peer] has no PublicKey")
        out.append(PeerConfig(**{k: v for k, v in p.items() if not k.startswith("_")}))
    iface.pop("_seen")
    return WgQuickConfig(InterfaceConfig(**iface), out, notes)


def load(path_or_text: str | os.PathLike[str]) -> WgQuickConfig:
    """`parse` of a file (a path) or of the text itself (anything with a newline or '[')."""
    if isinstance(path_or_text, str) and ("\n" in path_or_text or path_or_text.lstrip().startswith("[")):
        return parse(path_or_text)
    path = os.fspath(path_or_text)
    try:
        with open(path, encoding="utf-8") as f:
            return parse(f.read(), path)
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror}") from None


def dump(cfg: WgQuickConfig) -> str:
    """The wg-quick text of `cfg`."""
    i = cfg.interface
    lines = ["[Interface]"]
    lines += _keys(PrivateKey=i.private_key.base64, Address=", ".join(i.addresses), ListenPort=i.listen_port, MTU=i.mtu)
    for p in cfg.peers:
        lines += ["", "[Peer]"]
        lines += _keys(
            PublicKey=p.public_key.base64,
            PresharedKey=p.preshared_key.base64 if p.preshared_key is not None else None,
            AllowedIPs=", ".join(p.allowed_ips),
            Endpoint=p.endpoint,
            PersistentKeepalive=p.persistent_keepalive,
        )
    return "\n".join(lines) + "\n"


def _keys(**values: object) -> list[str]:
    """``Key = value`` lines, in order, for the values that are set (not
    None, empty or 0: wg-quick's defaults)."""
    return [f"{k} = {v}" for k, v in values.items() if v]


def resolve_endpoint(endpoint: str, what: str = "Endpoint") -> str:
    """An Endpoint with a host name resolved (as wg(8) does when it reads it)."""
    if endpoint.startswith(("derp:", "[")):
        return endpoint
    host, sep, port = endpoint.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"{what}: {endpoint!r} is not host:port")
    try:
        ipaddress.ip_address(host)
        return endpoint
    except ValueError:
        pass
    try:
        info = socket.getaddrinfo(host, int(port), type=socket.SOCK_DGRAM)
    except socket.gaierror as e:
        raise ConfigError(f"{what}: cannot resolve {host!r}: {e.strerror}") from None
    family, _, _, _, addr = info[0]
    ip, num = str(addr[0]), int(port)
    return f"[{ip}]:{num}" if family == socket.AF_INET6 else f"{ip}:{num}"


def device_from_config(cls: Any, path_or_text: str | os.PathLike[str], **kwargs: Any) -> Any:
    """`Device.from_config`: a device (with its TCP/IP host when Address is
    given) configured from a wg-quick file. `kwargs` go to the Device."""
    cfg = load(path_or_text)
    for note in cfg.notes:
        log.info("%s", note)
    i = cfg.interface
    kwargs.setdefault("listen_port", i.listen_port or 0)
    if i.addresses:
        kwargs.setdefault("address", i.addresses)
    if i.mtu:
        kwargs.setdefault("mtu", i.mtu)
    dev = cls(private_key=i.private_key, **kwargs)
    try:
        for p in cfg.peers:
            dev.add_peer(
                p.public_key,
                endpoint=resolve_endpoint(p.endpoint) if p.endpoint else None,
                allowed_ips=p.allowed_ips,
                persistent_keepalive=p.persistent_keepalive,
                preshared_key=p.preshared_key,
            )
    except BaseException:
        dev.close()
        raise
    return dev


def device_to_config(dev: Any) -> str:
    """`Device.to_config`: the device's keys, addresses and peers as wg-quick text."""
    from spanza._peerinfo import parse_uapi_get

    text = dev.ipc_get()
    top, infos = parse_uapi_get(text)
    if "private_key" not in top:
        raise ConfigError("to_config: the device has no private key")
    psks: dict[str, str] = {}
    cur = None
    for line in text.splitlines():  # parse_uapi_get keeps only whether a PSK is set
        k, _, v = line.partition("=")
        if k == "public_key":
            cur = v
        elif k == "preshared_key" and cur and v.strip("0"):
            psks[cur] = v
    host = getattr(dev, "_host", None)
    iface = InterfaceConfig(
        private_key=PrivateKey(bytes.fromhex(top["private_key"])),
        addresses=[str(a) for a in host.interfaces] if host is not None else [],
        listen_port=int(top["listen_port"]) if top.get("listen_port", "0") != "0" else None,
        mtu=host.mtu if host is not None and host.mtu != 1420 else None,
    )
    peers = [
        PeerConfig(
            public_key=p.public_key,
            preshared_key=PresharedKey(bytes.fromhex(psks[p.public_key.hex()])) if p.public_key.hex() in psks else None,
            allowed_ips=list(p.allowed_ips),
            endpoint=p.endpoint,
            persistent_keepalive=p.persistent_keepalive or None,
        )
        for p in infos
    ]
    return dump(WgQuickConfig(iface, peers))
