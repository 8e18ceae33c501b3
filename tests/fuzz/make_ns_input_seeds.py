"""Writes seeds for the ns_input fuzzer: real packets host B sent to host A
over a memory wire (TCP handshake, data, FIN, RST; UDP; ICMP and ICMPv6 echo;
fragments), framed as ns_input.c reads them. Run from the source tree:

    .venv/bin/python tests/fuzz/make_ns_input_seeds.py
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading

from spanza.netstack import wired_pair

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "ns_input")


def frame(packets: list[bytes], flags: int = 0) -> bytes:
    return bytes([flags]) + b"".join(struct.pack(">H", len(p)) + p for p in packets)


def main() -> None:
    a, b, wire = wired_pair(["192.168.4.1/24", "fd00::1/64"], ["192.168.4.2/24", "fd00::2/64"])
    wire.capture(10000)
    srv = a.listen(80)

    def serve() -> None:
        for _ in range(2):
            s, _addr = srv.accept()
            s.sendall(s.recv(100))
            s.close()

    t = threading.Thread(target=serve)
    t.start()
    for ip in ("192.168.4.1", "fd00::1"):
        c = b.connect((ip, 80), timeout=5)
        c.sendall(b"GET / HTTP/1.0\r\n\r\n")
        c.recv(100)
        c.close()
    t.join()
    for ip in ("192.168.4.1", "fd00::1"):
        try:
            b.connect((ip, 81), timeout=5)
        except ConnectionRefusedError:
            pass
        b.ping(ip, size=56)
        b.ping(ip, size=3000)  # fragmented
    u = a.udp_socket(53)
    ub = b.udp_socket()
    ub.sendto(b"q" * 20, ("192.168.4.1", 53))
    ub.sendto(b"q" * 20, ("fd00::1", 53))
    u.recvfrom(100)
    u.recvfrom(100)
    packets = [p for side, p in wire.take() if side == 1]
    u.close()
    ub.close()
    srv.close()
    a.close()
    b.close()
    wire.close()
    os.makedirs(OUT, exist_ok=True)
    seeds = [frame([p]) for p in packets] + [frame(packets[i : i + 8], 3) for i in range(0, len(packets), 8)]
    for s in seeds:
        with open(os.path.join(OUT, hashlib.sha1(s).hexdigest()), "wb") as f:
            f.write(s)
    print(f"{len(seeds)} seeds from {len(packets)} packets in {OUT}")


if __name__ == "__main__":
    main()
