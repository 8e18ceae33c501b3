"""The `spanza` command."""

from __future__ import annotations

import sys

import spanza

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    import logging
    from typing import Any

# Subcommands that live in their own modules: (module, function that adds
# the subparser). `spanza demo` imports only spanza.demo's tree, not the
# others' (cold start, bench/cold_start.py); --help and unknown words get all.
_MODULE_COMMANDS: dict[str, tuple[str, str]] = {
    "derper": ("spanza._derper_cli", "add_derper_parser"),
    "demo": ("spanza.demo", "add_demo_command"),
    "up": ("spanza.up", "add_up_command"),
    "scenario": ("spanza._scenario_cli", "add_scenario_command"),
}
_GATEWAY_COMMANDS = ("gateway", "keygen", "genpsk", "pubkey")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with a known command word, only that subcommand's."""
    import argparse
    import importlib

    p = argparse.ArgumentParser(prog="spanza", description=spanza.__doc__)
    p.add_argument("--version", action="version", version=f"spanza {spanza.__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    only = command if command in _MODULE_COMMANDS or command in _GATEWAY_COMMANDS else None
    for name, (module, func) in _MODULE_COMMANDS.items():
        if only is None or only == name:
            getattr(importlib.import_module(module), func)(sub)
        if name == "derper" and (only is None or only in _GATEWAY_COMMANDS):
            add_gateway_commands(sub)
    return p


def _command_word(argv: list[str]) -> str | None:
    """The subcommand's word: the first argument that is not an option."""
    for a in argv:
        if not a.startswith("-"):
            return a
        if a in ("-h", "--help", "--version"):
            return None
    return None


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in == ["demo"]:  # the main job, as `make demo` runs it: no parser needed
        from spanza.demo import main_bare

        return main_bare()
    word = _command_word(args_in)
    if word == "derper" or word not in _MODULE_COMMANDS:
        from spanza._derper_cli import go_style_args

        args_in = go_style_args(args_in)
    parser = build_parser(word)
    args = parser.parse_args(args_in)
    if args.command is None:
        parser.print_help()
        return 2
    if hasattr(args, "func"):
        return int(args.func(args))
    return 0


# ---- gateway, keygen, pubkey ------------------------------------------------------


def add_gateway_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    g = sub.add_parser(
        "gateway",
        help="relay a local WireGuard's UDP through a DERP server",
        description=(
            "Relays a local WireGuard's UDP through a DERP server. Each --remote-peer gets "
            "its own UDP socket: the first on --listen, the next ones on the following "
            "ports (or on any free port when --listen's port is 0), unless given as "
            "KEY@HOST:PORT. Configure the local WireGuard with that socket's address as the "
            "remote peer's endpoint. The key file holds the gateway's DERP identity "
            '(derper\'s format, {"PrivateKey": "privkey:<hex>"}; a plain privkey:<hex> or '
            "WireGuard base64 line is read too); it is created with a new key when missing. "
            "Runs until SIGINT/SIGTERM."
        ),
    )
    g.add_argument("--derp-url", metavar="URL", help="DERP server, http(s)://host[:port]/derp")
    g.add_argument("--key-file", metavar="FILE", required=True, help="the gateway's private key (created if missing)")
    g.add_argument(
        "--remote-peer",
        metavar="KEY[@HOST:PORT]",
        action="append",
        default=[],
        help="a remote peer's DERP public key (nodekey:<hex>, or base64); repeatable",
    )
    g.add_argument(
        "--wg-endpoint",
        metavar="HOST:PORT",
        help="the local WireGuard's UDP address (default: learn it from what it sends)",
    )
    g.add_argument(
        "--listen",
        metavar="[HOST]:PORT",
        default="127.0.0.1:0",
        help="UDP address of the first remote peer's socket (default 127.0.0.1:0; ':PORT' = all addresses)",
    )
    g.add_argument("--ca-file", metavar="FILE", help="PEM CA bundle for the DERP server's certificate")
    g.add_argument("--insecure", action="store_true", help="do not verify the DERP server's certificate")
    g.add_argument(
        "--show-pubkey",
        action="store_true",
        help="print the gateway's public key (nodekey:...) and exit (creates the key file if missing)",
    )
    g.add_argument(
        "--stats-interval",
        metavar="SECONDS",
        type=float,
        default=0.0,
        help="log the counters every SECONDS (with --verbose; 0: at exit only)",
    )
    g.add_argument(
        "-v", "--verbose", action="count", default=0, help="log connection changes and peers (-vv: also debug records)"
    )
    g.set_defaults(func=cmd_gateway)

    k = sub.add_parser("keygen", help="print a new private key (like `wg genkey`)")
    k.add_argument(
        "--tailscale", action="store_true", help="Tailscale's privkey:<hex> form (default: WireGuard base64)"
    )
    k.set_defaults(func=cmd_keygen)

    ps = sub.add_parser("genpsk", help="print a new preshared key (like `wg genpsk`)")
    ps.set_defaults(func=cmd_genpsk)

    pk = sub.add_parser("pubkey", help="read a private key on stdin, print its public key (like `wg pubkey`)")
    pk.add_argument(
        "--tailscale",
        action="store_true",
        help="print nodekey:<hex> (default: the input's form: base64 for base64, nodekey: for privkey:)",
    )
    pk.set_defaults(func=cmd_pubkey)


def setup_logging(verbose: int) -> None:
    """The long-running commands' logging: -v INFO, -vv DEBUG (C records too),
    one line format for Python's and C's records."""
    import logging

    from spanza import _log

    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _log.set_level(level)


def _fail(msg: str) -> int:
    print(f"spanza: {msg}", file=sys.stderr)
    return 1


def cmd_keygen(args: argparse.Namespace) -> int:
    from spanza.keys import PrivateKey

    key = PrivateKey.generate()
    print(key.tailscale if args.tailscale else key.base64)
    return 0


def cmd_genpsk(args: argparse.Namespace) -> int:
    from spanza.keys import PresharedKey

    print(PresharedKey.generate().base64)
    return 0


def cmd_pubkey(args: argparse.Namespace) -> int:
    from spanza.errors import ConfigError
    from spanza.keys import PrivateKey, private_key_bytes

    text = sys.stdin.readline().strip()
    try:
        pub = PrivateKey(private_key_bytes(text)).public_key
    except ConfigError as e:
        return _fail(f"pubkey: {e}")
    tailscale = args.tailscale or text.startswith("privkey:")
    print(pub.tailscale if tailscale else pub.base64)
    return 0


def cmd_gateway(args: argparse.Namespace) -> int:
    import signal
    import threading

    from spanza import _log
    from spanza._diagnose import REFUSED
    from spanza.errors import ConfigError, SpanzaError
    from spanza.gateway import Gateway, format_address, parse_address
    from spanza.keys import PublicKey, load_key_file, public_key_bytes

    setup_logging(args.verbose)
    log = _log.get_logger("spanza.gateway")
    try:
        priv = load_key_file(args.key_file, create=True)
    except (ConfigError, OSError) as e:
        return _fail(f"gateway: {e}")
    if args.show_pubkey:
        print(priv.public_key.tailscale)
        return 0
    if not args.derp_url:
        return _fail("gateway: --derp-url is required")
    if not args.remote_peer:
        return _fail("gateway: give at least one --remote-peer KEY")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        peers = []
        for spec in args.remote_peer:
            key, _, where = spec.partition("@")
            peers.append((key, parse_address(where, "--remote-peer") if where else None))
        gw = Gateway(
            args.derp_url,
            priv,
            listen=args.listen,
            wg_endpoint=args.wg_endpoint,
            ca_file=args.ca_file,
            insecure=args.insecure,
        )
    except (ConfigError, SpanzaError) as e:
        return _fail(f"gateway: {e}")
    with gw:
        try:
            for key, where in peers:
                addr = gw.add_remote_peer(key, listen=where)
                print(
                    f"remote peer {PublicKey(public_key_bytes(key, 'remote peer')).tailscale}: "
                    f"endpoint {format_address(addr)}",
                    flush=True,
                )
        except (ConfigError, SpanzaError) as e:
            return _fail(f"gateway: {e}")
        print(f"gateway {priv.public_key.tailscale} relaying via {args.derp_url}", flush=True)
        next_stats = args.stats_interval
        waited = 0.0
        reported = ""
        while not stop.wait(0.25):
            _log.drain()
            waited += 0.25
            if not gw.connected:  # say why, once per distinct reason
                why = gw.last_error()
                if gw.stats()["derp"]["state"] == REFUSED:
                    _log.drain()
                    return _fail(
                        f"gateway: {args.derp_url} refused this gateway's key "
                        f"{priv.public_key.tailscale} (its allowlist?): {why}"
                    )
                if why and why != reported:
                    log.warning("not connected to %s: %s (retrying)", args.derp_url, why)
                    reported = why
            else:
                reported = ""
            if args.stats_interval > 0 and waited >= next_stats:
                next_stats += args.stats_interval
                _log_stats(log, gw.stats())
        _log.drain()
        _log_stats(log, gw.stats())
    return 0


def _log_stats(log: logging.Logger, st: dict[str, Any]) -> None:
    """The gateway's counters in one line (nonzero ones, nested as stats())."""
    import json

    from spanza._stats import readable

    log.info("counters %s", json.dumps(readable(st), separators=(",", ":")))


if __name__ == "__main__":
    sys.exit(main())
