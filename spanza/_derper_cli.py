"""`spanza derper`: a DERP server with cmd/derper's flags where they apply."""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import re
import resource
import signal
import sys
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("spanza.derper")

DEFAULT_CONFIG = "/var/lib/derper/derper.key"  # cmd/derper's -c when run as root

# Long flags that Go's flag package also accepts with a single dash.
_GO_LONG_FLAGS = {
    "dev",
    "hostname",
    "certmode",
    "certdir",
    "mesh-psk-file",
    "mesh-with",
    "stun",
    "stun-port",
    "http-port",
    "rate-config",
    "tcp-write-timeout",
    "verify-clients",
    "verify-client-url",
    "derp",
    "allowlist",
    "rate-limit",
    "rate-burst",
    "version",
    "home",
}


def _gobool(text: str) -> bool:
    t = text.lower()
    if t in ("1", "t", "true"):
        return True
    if t in ("0", "f", "false"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {text!r}")


def _duration_ms(text: str) -> int:
    """A Go duration ("2s", "500ms", "1m30s", "0") in milliseconds."""
    if text.strip() == "0":
        return 0
    units = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (want e.g. 2s, 500ms)")
    return int(sum(float(n) * units[u] for n, u in parts))


def add_derper_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "derper",
        help="run a DERP relay server (Tailscale's protocol)",
        description="A DERP server with cmd/derper's flags where they apply. Serves until SIGINT or SIGTERM.",
    )
    b: dict[str, Any] = dict(type=_gobool, nargs="?", const=True, metavar="BOOL")
    p.add_argument(
        "--dev",
        default=False,
        help="dev mode: 127.0.0.1:3340, plain HTTP, fresh key, mesh key from $TAILSCALE_DERPER_MESH_KEY",
        **b,
    )
    p.add_argument(
        "-a",
        dest="addr",
        default=":443",
        metavar="ADDR",
        help="listen address (default :443); TLS on port 443 or with --certmode manual",
    )
    p.add_argument(
        "-c",
        dest="config",
        default="",
        metavar="FILE",
        help=f"config file with the server key, created with its directory when missing "
        f"(default as root: {DEFAULT_CONFIG})",
    )
    p.add_argument("--hostname", default="derp.tailscale.com", help="TLS host name (an IP gets a self-signed cert)")
    p.add_argument(
        "--certmode",
        default="letsencrypt",
        choices=["letsencrypt", "manual", "gcp"],
        help="only 'manual' is supported here",
    )
    p.add_argument(
        "--certdir",
        default=str(Path.home() / ".cache" / "tailscale" / "derper-certs"),
        help="manual mode: <hostname>.crt and <hostname>.key",
    )
    p.add_argument("--mesh-psk-file", default=None, metavar="FILE", help="mesh key file (64 hex digits)")
    p.add_argument(
        "--mesh-with",
        default="",
        metavar="HOSTS",
        help="comma list of mesh peers: host[:port], host/dialhost, or http(s)://host:port/derp",
    )
    p.add_argument("--stun", default=True, help="accepted and ignored (no STUN server here)", **b)
    p.add_argument("--stun-port", default=3478, type=int, help="ignored")
    p.add_argument("--http-port", default=80, type=int, help="ignored (no port-80 listener here)")
    p.add_argument("--derp", default=True, help="must be true", **b)
    p.add_argument("--verify-clients", default=False, help="unsupported (use --allowlist)", **b)
    p.add_argument(
        "--rate-config",
        default="",
        metavar="FILE",
        help='JSON {"PerClientRateLimitBytesPerSec": N, "PerClientRateBurstBytes": M}',
    )
    p.add_argument(
        "--tcp-write-timeout",
        default="2s",
        type=_duration_ms,
        metavar="DURATION",
        help="per-frame write deadline for non-mesh clients (0: none)",
    )
    p.add_argument(
        "--allowlist",
        default=None,
        metavar="FILE",
        help="admit only these node keys (one per line; mesh-key holders always)",
    )
    p.add_argument(
        "--rate-limit",
        default=None,
        type=int,
        metavar="BYTES_PER_S",
        help="per-client receive rate limit, by backpressure (nothing is dropped)",
    )
    p.add_argument("--rate-burst", default=None, type=int, metavar="BYTES", help="burst for --rate-limit")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.set_defaults(func=run_derper)


def go_style_args(argv: list[str]) -> list[str]:
    """Go's flag package takes -name as well as --name: map the former."""
    out = []
    for a in argv:
        if len(a) > 3 and a[:3] in ("-a=", "-c="):
            out += [a[:2], a[3:]]
            continue
        name = a[1:].split("=", 1)[0]
        if a.startswith("-") and not a.startswith("--") and name in _GO_LONG_FLAGS:
            a = "-" + a
        out.append(a)
    return out


def _split_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep:
        raise SystemExit(f"derper: -a {addr!r}: want [host]:port")
    host = host.strip("[]")
    try:
        return host, int(port) if port not in ("https",) else 443
    except ValueError:
        raise SystemExit(f"derper: -a {addr!r}: bad port") from None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _mesh_key(args: argparse.Namespace) -> bytes | None:
    from spanza.derp import load_mesh_key

    if args.dev:
        env = os.environ.get("TAILSCALE_DERPER_MESH_KEY", "").strip()
        return bytes.fromhex(env) if env else None
    path = args.mesh_psk_file
    if path is None:
        for cand in ("/home/derp/keys/derp-mesh.key", str(Path.home() / "keys" / "derp-mesh.key")):
            if os.path.exists(cand):
                path = cand
                break
    return load_mesh_key(path) if path else None


def server_options(args: argparse.Namespace) -> dict[str, Any]:
    """DerpServer keyword arguments from derper's flags (SystemExit on misuse)."""
    if not args.derp:
        raise SystemExit("derper: --derp=false (STUN/bootstrap only) is not supported")
    if args.verify_clients:
        raise SystemExit("derper: --verify-clients is not supported; use --allowlist FILE")
    # --dev serves on loopback only (what it prints), as a development relay should.
    host, port = _split_addr("127.0.0.1:3340" if args.dev else args.addr)
    tls = args.certmode == "manual" or (port == 443 and not args.dev)
    opts: dict[str, Any] = {"host": host or "0.0.0.0", "port": port, "tls": tls}
    if tls:
        if args.certmode != "manual":
            raise SystemExit(
                f"derper: --certmode {args.certmode} (ACME) is not supported; "
                "use --certmode manual with --certdir, or a port other than 443"
            )
        name = re.sub(r"[^A-Za-z0-9.-]", "", args.hostname)
        crt, key = Path(args.certdir) / f"{name}.crt", Path(args.certdir) / f"{name}.key"
        opts["hostname"] = args.hostname
        if crt.exists() and key.exists():
            opts.update(cert_file=str(crt), key_file=str(key), require_sni=not _is_ip(args.hostname))
        elif not _is_ip(args.hostname):
            raise SystemExit(
                f"derper: --certmode manual: {crt} and {key} are missing "
                f"(a self-signed certificate is made only for an IP --hostname)"
            )
    if args.dev:
        pass  # a fresh key every start
    elif args.config:
        opts["key_file_config"] = args.config
    elif os.geteuid() == 0:
        opts["key_file_config"] = DEFAULT_CONFIG
    else:
        raise SystemExit(f"derper: -c <file> not specified (as root the default is {DEFAULT_CONFIG})")

    mk = _mesh_key(args)
    if mk is not None:
        opts["mesh_key"] = mk
    if args.mesh_with:
        if mk is None:
            raise SystemExit("derper: --mesh-with requires --mesh-psk-file")
        opts["mesh_with"] = [m for m in args.mesh_with.split(",") if m.strip()]
    if args.rate_config:
        with open(args.rate_config, encoding="utf-8") as f:
            rc = {k.lower(): v for k, v in json.load(f).items()}
        if rc.get("perclientratelimitbytespersec"):
            opts["rate_limit"] = int(rc["perclientratelimitbytespersec"])
            opts["rate_burst"] = int(rc.get("perclientrateburstbytes") or 0) or None
    if args.rate_limit is not None:
        opts["rate_limit"] = args.rate_limit
    if args.rate_burst is not None:
        opts["rate_burst"] = args.rate_burst
    if args.allowlist:
        opts["allowlist_file"] = args.allowlist
    if args.tcp_write_timeout == 0:
        opts["write_timeout_ms"] = 0xFFFFFFFF  # "none": about 49 days
    elif args.tcp_write_timeout != 2000:
        opts["write_timeout_ms"] = args.tcp_write_timeout
    return opts


def _make_config_dir(path: str) -> None:
    """derper creates the config file's directory when it writes a new key."""
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, mode=0o755, exist_ok=True)
    except OSError as e:
        raise SystemExit(f"derper: -c {path}: cannot create {parent}: {e.strerror}") from None


def raise_nofile_limit() -> int:
    """Raises this process's soft RLIMIT_NOFILE to its hard limit, as servers
    commonly do (Go's runtime does it for derper): each DERP client holds one
    file descriptor, and the usual soft limit of 1024 would cap a relay at
    about a thousand clients. Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft >= hard:
        return soft
    target = hard
    if hard == resource.RLIM_INFINITY:
        target = 1 << 20  # the kernel's default fs.nr_open; "unlimited" is refused above it
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as e:
        log.warning("cannot raise the open-files limit from %d to %d: %s", soft, target, e)
        return soft
    return target


def run_derper(args: argparse.Namespace) -> int:
    from spanza import _log
    from spanza.derp import DerpServer
    from spanza.errors import SpanzaError

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.verbose:
        _log.set_level(logging.DEBUG)
    opts = server_options(args)
    if "key_file_config" in opts:
        _make_config_dir(opts["key_file_config"])
    nofile = raise_nofile_limit()
    log.info("open-files limit %d: up to about %d clients", nofile, max(nofile - 64, 0))
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            server = DerpServer(**opts)
        except (SpanzaError, OSError, ValueError) as e:
            print(f"derper: {e}", file=sys.stderr)
            return 1
        with server:
            log.info("serving DERP on %s, server key %s", server.url, server.node_key)
            if server.cert_name:
                node = {
                    "Name": "1",
                    "RegionID": 900,
                    "HostName": opts.get("hostname", ""),
                    "CertName": server.cert_name,
                    "DERPPort": server.port,
                }
                log.info("DERPNode: %s", json.dumps(node))
            sys.stdout.flush()
            while not stop.wait(0.5):
                _log.drain()
            log.info("shutting down")
        _log.drain()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return 0
