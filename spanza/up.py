"""`spanza up wg0.conf`: a userspace WireGuard peer from a wg-quick file.

No root, no interface: the peer's TCP/IP host lives in this process, and
programs reach the tunnel through ``--forward`` (an OS port into the
tunnel, like wireproxy's TCPClientTunnel), ``--expose`` (a tunnel port to
an OS address, like TCPServerTunnel) and ``--socks5`` (a SOCKS5 proxy into
the tunnel). Runs until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any

log = logging.getLogger("spanza.up")


def _hostport(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{what}: {text!r}: want HOST:PORT")
    return host.strip("[]"), int(port)


def parse_forward(text: str) -> tuple[tuple[str, int], tuple[str, int]]:
    """``[BIND_HOST:]BIND_PORT:TUNNEL_IP:PORT`` (ssh -L style) -> (bind, to)."""
    left, sep, right = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"--forward {text!r}: want [BIND_HOST:]PORT:TUNNEL_IP:PORT")
    if left.isdigit():  # PORT:IP:PORT
        return ("127.0.0.1", int(left)), _hostport(right, "--forward")
    # HOST:PORT:IP:PORT (IPv6 hosts in brackets)
    if text.startswith("["):
        bind_host, _, rest = text[1:].partition("]:")
    else:
        bind_host, rest = left, right
    port, sep, to = rest.partition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"--forward {text!r}: want [BIND_HOST:]PORT:TUNNEL_IP:PORT")
    return (bind_host, int(port)), _hostport(to, "--forward")


def parse_expose(text: str) -> tuple[int, tuple[str, int]]:
    """``TUNNEL_PORT:HOST:PORT`` (ssh -R style) -> (tunnel port, OS address)."""
    port, sep, to = text.partition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"--expose {text!r}: want TUNNEL_PORT:HOST:PORT")
    return int(port), _hostport(to, "--expose")


def add_up_command(sub: Any) -> None:
    p = sub.add_parser(
        "up",
        help="run a userspace WireGuard peer from a wg-quick file",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "config",
        help="wg-quick file (wg0.conf); needs Address for forwards and the proxy",
    )
    p.add_argument(
        "--forward",
        "-L",
        metavar="[BIND_HOST:]PORT:TUNNEL_IP:PORT",
        action="append",
        default=[],
        type=parse_forward,
        help="an OS port whose connections go to TUNNEL_IP:PORT (repeatable)",
    )
    p.add_argument(
        "--expose",
        "-R",
        metavar="TUNNEL_PORT:HOST:PORT",
        action="append",
        default=[],
        type=parse_expose,
        help="the peer's TUNNEL_PORT relayed to the OS HOST:PORT (repeatable)",
    )
    p.add_argument(
        "--socks5",
        metavar="HOST:PORT",
        type=lambda t: _hostport(t, "--socks5"),
        help="a SOCKS5 proxy (CONNECT, no auth) into the tunnel, e.g. 127.0.0.1:1080",
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")
    p.set_defaults(func=cmd_up)


def cmd_up(args: argparse.Namespace) -> int:
    from spanza import _log
    from spanza._addr import format_address
    from spanza.cli import setup_logging
    from spanza.device import Device
    from spanza.errors import SpanzaError
    from spanza.socks import Socks5Proxy

    setup_logging(args.verbose)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    closers: list[Any] = []
    try:
        dev = Device.from_config(args.config)
        closers.append(dev)
        print(
            f"peer {dev.public_key} up: {', '.join(dev.addresses) or 'no address'}, "
            f"UDP port {dev.listen_port}, {len(dev.peers)} peer(s)",
            flush=True,
        )
        for bind, to in args.forward:
            fw = dev.forward(bind, to)
            closers.append(fw)
            print(
                f"forward {format_address(tuple(fw))} -> {format_address(to)}",
                flush=True,
            )
        for port, to in args.expose:
            ex = dev.expose(port, to)
            closers.append(ex)
            print(f"expose tunnel port {port} -> {format_address(to)}", flush=True)
        if args.socks5:
            proxy = Socks5Proxy(dev, args.socks5)
            closers.append(proxy)
            print(f"socks5 {format_address(proxy.address)}", flush=True)
    except (SpanzaError, OSError) as e:
        for c in reversed(closers):
            c.close()
        print(f"spanza up: {e}", file=sys.stderr)
        return 1
    try:
        while not stop.wait(0.25):
            _log.drain()
    finally:
        for c in reversed(closers):
            c.close()
        _log.drain()
    return 0
