"""`spanza demo`: the main job, stage by stage with timings.

Two userspace WireGuard peers, 192.168.4.1 and 192.168.4.2, each behind a
Spanza gateway, talk through a DERP relay (the embedded one, or any given
with ``--derp-url``); peer 1 serves HTTP and peer 2 GETs it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from contextlib import ExitStack

from spanza._derp_server import DerpServer
from spanza.errors import SpanzaError
from spanza.scenario import MODES, Peer, connect

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any, TextIO

BODY = b"hello from 192.168.4.1 through WireGuard over DERP\n"


class _Stages:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.t0 = time.perf_counter()
        self.last = self.t0

    def __call__(self, what: str) -> None:
        now = time.perf_counter()
        self.out.write(f"  [{(now - self.t0) * 1000:8.1f} ms] (+{(now - self.last) * 1000:6.1f}) {what}\n")
        self.out.flush()
        self.last = now


def run(
    derp_url: str | None = None,
    *,
    mode: str = "gateway",
    mode_b: str | None = None,
    insecure: bool = False,
    ca_file: str | None = None,
    timeout: float = 10.0,
    out: TextIO = sys.stdout,
    capture: Any = None,
) -> dict[str, Any]:
    """Runs the scenario; returns the response and the counters. Raises
    SpanzaError/OSError/TimeoutError with what failed. capture: a running
    `spanza.trace.Capture` that is told the names of relay and peers."""
    stage = _Stages(out)
    with ExitStack() as stack:
        relay: DerpServer | None = None
        if derp_url is None:
            relay = stack.enter_context(DerpServer())
            derp_url = relay.url
            stage(f"embedded DERP relay listening at {derp_url}")
        else:
            stage(f"using DERP relay {derp_url}")
        opts: dict[str, Any] = {"insecure": insecure, "ca_file": ca_file}
        p1 = stack.enter_context(Peer(derp_url, "192.168.4.1/24", mode=mode, **opts))  # type: ignore[arg-type]
        stage(f"peer 1 192.168.4.1 up ({_describe(p1)})")
        p2 = stack.enter_context(Peer(derp_url, "192.168.4.2/24", mode=mode_b or mode, **opts))  # type: ignore[arg-type]
        stage(f"peer 2 192.168.4.2 up ({_describe(p2)})")
        if capture is not None:
            capture.follow(*[x for x in (relay, p1, p2) if x is not None])
        connect(p1, p2, timeout)
        stage("peers configured, DERP connections up")
        p1.serve_http(80, body=BODY)
        stage("HTTP server on 192.168.4.1:80")
        status, body = p2.http_get("http://192.168.4.1/", timeout=timeout)
        stage(f"GET http://192.168.4.1/ from 192.168.4.2 -> {status}, {len(body)} bytes")
        if status != 200 or body != BODY:
            raise SpanzaError(f"unexpected response: {status} {body[:200]!r}")
        out.write(f"\nresponse: {body.decode(errors='replace')}")
        result = {
            "status": status,
            "body": body,
            "seconds": time.perf_counter() - stage.t0,
            "peer1": p1.stats(),
            "peer2": p2.stats(),
            "relay": relay.stats() if relay is not None else None,
        }
        _print_counters(out, result)
        return result


def _describe(p: Peer) -> str:
    if p.gateway is not None:
        return f"UDP :{p.device.listen_port} -> gateway {p.gateway.public_key.tailscale[:20]}..."
    return f"DERP transport {p.derp_key.tailscale[:20]}..."


def _print_counters(out: TextIO, r: dict[str, Any]) -> None:
    w: Callable[[str], int] = out.write
    if r["relay"] is not None:
        s = r["relay"]
        w(
            f"relay:     {s['clients']} clients, {s['packets_recv']} packets / {s['bytes_recv']} bytes relayed, "
            f"drops {sum(v for k, v in s.items() if k.startswith('drop_'))}\n"
        )
    for name in ("peer1", "peer2"):
        st = r[name]
        (peer,) = st["peers"].values()
        hs = peer["last_handshake"][11:19] if peer.get("last_handshake") else "never"
        w(
            f"{name}:     wireguard rx {peer.get('rx', {}).get('bytes', 0)} B "
            f"tx {peer.get('tx', {}).get('bytes', 0)} B, "
            f"handshake at {hs}, drops {sum(st['device'].get('drops', {}).values())}\n"
        )
        if "gateway" in st:
            g = st["gateway"]
            w(
                f"           gateway: {g['derp'].get('tx_packets', 0)} datagrams to DERP, "
                f"{g['wg'].get('tx_datagrams', 0)} to WireGuard\n"
            )
        else:
            d = st["derp"]
            w(f"           DERP transport: {d['tx'].get('packets', 0)} sent, {d['rx'].get('packets', 0)} received\n")


# The options' defaults: the parser's, and those of a bare `spanza demo`,
# which skips argparse (main_bare: importing it and building the parser,
# which imports shutil and locale and looks up gettext catalogs, ~8 ms of
# the cold start).
DEFAULTS: dict[str, Any] = {
    "derp_url": None,
    "mode": "gateway",
    "insecure": False,
    "ca_file": None,
    "timeout": 10.0,
    "pcapng": None,
}


def main_bare() -> int:
    """`spanza demo` without arguments: what the parser would give."""
    from types import SimpleNamespace

    return _demo_main(SimpleNamespace(command="demo", func=_demo_main, **DEFAULTS))  # type: ignore[arg-type]


def add_demo_command(sub: Any) -> None:
    import argparse

    p = sub.add_parser(
        "demo",
        help="run the main scenario: two peers, HTTP through WireGuard over DERP",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--derp-url", help="use this relay (http(s)://host:port/derp) instead of the embedded one")
    p.add_argument("--mode", choices=MODES, help="how the peers reach the relay (default: gateway)")
    p.add_argument("--insecure", action="store_true", help="accept the relay's self-signed certificate")
    p.add_argument("--ca-file", help="trust this CA for the relay")
    p.add_argument("--timeout", type=float, help="seconds for each step (default 10)")
    p.add_argument(
        "--pcapng",
        metavar="PATH",
        help="trace every hop and write a pcapng that Wireshark decrypts (with the DERP dissector "
        "of spanza.trace.wireshark_plugin())",
    )
    p.set_defaults(func=_demo_main, **DEFAULTS)


def _demo_main(args: argparse.Namespace) -> int:
    print(f"spanza demo: two userspace WireGuard peers over DERP ({args.mode} mode)")
    cap = None
    if args.pcapng:
        from spanza import trace

        cap = trace.capture(snaplen=0)
    try:
        r = run(
            args.derp_url,
            mode=args.mode,
            insecure=args.insecure,
            ca_file=args.ca_file,
            timeout=args.timeout,
            capture=cap,
        )
    except (SpanzaError, OSError, TimeoutError) as e:
        print(f"\nspanza demo FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        if cap is not None:
            _write_trace(cap, args.pcapng)
    print(f"\nok: response in {r['seconds'] * 1000:.1f} ms from start")
    return 0


def _write_trace(cap: Any, path: str) -> None:
    from spanza import trace

    cap.stop()
    cap.write_pcapng(path)
    js = cap.journeys()
    print(
        f"\ntrace: {len(cap.records())} records, {len(js)} packet journeys "
        f"({sum(j.status != 'delivered' for j in js)} did not arrive) -> {path}\n"
        f"  {' '.join(trace.tshark_command(path))}"
    )
