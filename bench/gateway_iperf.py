"""The Spanza scenario at full speed: two Debian wireguard-go peers, each in
a network namespace this script creates, each talking to its own Spanza
gateway (in this process) over a veth link; the gateways relay through a
DERP server (ours, or Tailscale's derper). iperf3 TCP through the tunnel
both ways, and ping round trips. Prints figures; asserts nothing. Needs
root; removes its namespaces on exit.

    .venv/bin/python bench/gateway_iperf.py [--seconds 5] [--relay ours|derper|both]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from contextlib import ExitStack

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from spanza import DerpServer, Gateway, Runtime
from spanza.keys import PrivateKey
from tests.interop.netns import NetNS, Veth, WgPeer, WireGuardGo, genkey, kill_tree

A4, B4 = "10.97.0.1", "10.97.0.2"


def side(stack: ExitStack, relay_url: str, name: str, tls_ca: str | None):
    ns = stack.enter_context(NetNS())
    link = stack.enter_context(Veth(ns))
    go = stack.enter_context(WireGuardGo(ns))
    rt = stack.enter_context(Runtime(f"gw-{name}"))
    gw_key = PrivateKey.generate()
    gw = stack.enter_context(Gateway(relay_url, gw_key, listen=(link.host_v4, 0), runtime=rt, ca_file=tls_ca))
    priv, pub = genkey()
    return {"ns": ns, "link": link, "go": go, "gw": gw, "gw_key": gw_key, "priv": priv, "pub": pub}


def pair(stack: ExitStack, relay_url: str, tls_ca: str | None):
    """Two sides (A4 and B4) that are each other's WireGuard peer through
    their gateways and the relay, connected."""
    a = side(stack, relay_url, "a", tls_ca)
    b = side(stack, relay_url, "b", tls_ca)
    for me, other, addr, oaddr in ((a, b, A4, B4), (b, a, B4, A4)):
        ep = me["gw"].add_remote_peer(other["gw_key"].public_key)
        me["go"].configure(
            me["priv"], 0, addresses=[f"{addr}/24"], peers=[WgPeer(other["pub"], [f"{oaddr}/32"], f"{ep[0]}:{ep[1]}")]
        )
        me["gw"].wg_endpoint = (me["link"].ns_v4, me["go"].listen_port)
    for s in (a, b):
        s["gw"].wait_connected(10)
    return a, b


def run(relay_name: str, seconds: float) -> None:
    with ExitStack() as stack:
        if relay_name == "ours":
            relay = stack.enter_context(DerpServer())
            url, ca = relay.url, None
        else:
            from tests.interop.gohelpers import Derper

            relay = stack.enter_context(Derper())
            url, ca = relay.url, None
        a, b = pair(stack, url, ca)
        r = a["ns"].run("ping", "-c", "3", "-W", "5", B4, check=False, timeout=30)
        if r.returncode != 0:
            raise SystemExit(f"no connectivity: {r.stdout}{r.stderr}")
        r = a["ns"].run("ping", "-c", "50", "-i", "0.02", "-q", B4, check=False, timeout=30)
        m = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms", r.stdout)
        print(
            f"[{relay_name}] ping through wg-go -> gateway -> DERP -> gateway -> wg-go: "
            f"min/avg/max {m.group(1)}/{m.group(2)}/{m.group(3)} ms (50 pings)"
            if m
            else r.stdout
        )
        server = b["ns"].popen("iperf3", "-s", "-B", B4)
        time.sleep(0.5)
        try:
            for label, extra in (("A->B", []), ("B->A", ["-R"])):
                out = a["ns"].run(
                    "iperf3", "-c", B4, "-t", str(seconds), "-J", *extra, check=False, timeout=seconds + 30
                )
                if out.returncode != 0:
                    print(f"[{relay_name}] iperf3 {label} failed: {out.stdout[-500:]}{out.stderr[-500:]}")
                    continue
                res = json.loads(out.stdout)["end"]
                rx = res["sum_received"]["bits_per_second"] / 1e6
                retr = res["sum_sent"].get("retransmits", 0)
                print(f"[{relay_name}] iperf3 TCP {label}: {rx:.0f} Mbit/s ({seconds:g} s, {retr} retransmits)")
        finally:
            kill_tree(server)
        for n, s in (("A", a), ("B", b)):
            st = s["gw"].stats()
            print(
                f"[{relay_name}] gateway {n}: wg->derp {st['derp_tx_packets']} pkts, derp->wg "
                f"{st['wg_tx_datagrams']} pkts, pauses {st['pauses']}, drops: queue full "
                f"{st['drops_queue_full']}, send errors {st['drops_send_error']}, oversize {st['drops_oversize']}, "
                f"UDP overflow {st['drops_udp_overflow']}"
            )
        if relay_name == "ours":
            rs = relay.stats()
            print(f"[{relay_name}] relay drops: queue head {rs['drop_queue_head']}, tail {rs['drop_queue_tail']}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--relay", choices=["ours", "derper", "both"], default="both")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces, TUN devices)")
    for name in ["ours", "derper"] if args.relay == "both" else [args.relay]:
        run(name, args.seconds)


if __name__ == "__main__":
    main()
