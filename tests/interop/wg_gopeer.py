"""Run inside a network namespace by test_wg_interop_wggo.py: a Tunnel on a
real UDP socket (127.0.0.1:51821) talks to Debian's wireguard-go (10.9.0.1,
UDP 51820). Prints one JSON line with what happened."""

from __future__ import annotations

import json
import select
import socket
import struct
import subprocess
import sys
import time

from spanza.keys import PrivateKey, PublicKey
from spanza.packets import checksum
from spanza.wireguard import Tunnel


def icmp_echo(src: str, dst: str, kind: int, ident: int, seq: int, payload: bytes) -> bytes:
    icmp = struct.pack("!BBHHH", kind, 0, 0, ident, seq) + payload
    icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
    total = 20 + len(icmp)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0, 64, 1, 0, socket.inet_aton(src), socket.inet_aton(dst))
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    return hdr + icmp


def main() -> int:
    priv = PrivateKey(sys.argv[1])
    go_pub = PublicKey(sys.argv[2])
    ifname = sys.argv[3]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 51821))
    t0 = time.monotonic()
    tun = Tunnel(priv, address="127.0.0.1:51821")
    tun.add_peer(go_pub, endpoint="127.0.0.1:51820", allowed_ips=["10.9.0.1/32"])
    result: dict = {"echo_reply": False, "answered_ping": False}

    def now() -> int:
        return int((time.monotonic() - t0) * 1000)

    def pump(until: float, stop) -> None:
        while time.monotonic() < until and not stop():
            tun.advance_to(max(tun.now, now()))
            for to, data in tun.outgoing():
                host, port = to.rsplit(":", 1)
                sock.sendto(data, (host, int(port)))
            for _, pkt in tun.delivered():
                handle(pkt)
            r, _, _ = select.select([sock], [], [], 0.02)
            if r:
                data, src = sock.recvfrom(65535)
                tun.advance_to(max(tun.now, now()))
                tun.receive(data, f"{src[0]}:{src[1]}")

    def handle(pkt: bytes) -> None:
        if pkt[9] != 1:
            return
        kind = pkt[20]
        if kind == 0:  # echo reply to ours
            result["echo_reply"] = pkt[12:16] == socket.inet_aton("10.9.0.1")
        elif kind == 8:  # wireguard-go's side pings us: answer
            ident, seq = struct.unpack("!HH", pkt[24:28])
            tun.send(icmp_echo("10.9.0.2", "10.9.0.1", 0, ident, seq, pkt[28:]))
            result["answered_ping"] = True

    # 1. wireguard-go initiates (we respond): its ping to us, answered.
    ping = subprocess.Popen(
        ["ping", "-c", "1", "-W", "8", "10.9.0.2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    pump(time.monotonic() + 10, lambda: ping.poll() is not None)
    result["ping_rc"] = ping.wait(5)
    result["handshakes_after_ping"] = tun.peer_stats(go_pub).handshakes_completed
    # 2. We initiate a new session, then ping through its TUN and kernel stack.
    tun.advance_to(max(tun.now, now()))
    tun.initiate(go_pub, force=True)
    tun.send(icmp_echo("10.9.0.2", "10.9.0.1", 8, 0x1234, 1, b"spanza-interop"))
    pump(time.monotonic() + 10, lambda: result["echo_reply"])
    st = tun.peer_stats(go_pub)
    result["handshakes"] = st.handshakes_completed
    result["drops"] = {k: v for k, v in tun.drops.items() if v}
    show = subprocess.run(["wg", "show", ifname, "dump"], capture_output=True, text=True).stdout
    result["go_rx_bytes"] = int(show.splitlines()[1].split("\t")[5])
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
