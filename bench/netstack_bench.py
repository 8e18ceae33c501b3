"""Netstack benchmark: prints figures, asserts nothing.

1. lwIP's raw TCP throughput between two hosts on a memory wire (lwIP's raw
   API in C, no sockets), at 0 / 1 / 10 ms one-way delay: bench/ns_bench.c,
   a C program with its own hosts, run as a subprocess.
2. The same through the socket bridges, from Python: bulk, small echoes,
   connection setup, ping.
3. iperf3 (Debian's) through a forward/expose pair:
   iperf3 -c -> forward on B -> lwIP -> memory wire -> lwIP -> expose on A -> iperf3 -s.
4. 1-3 again with the hosts on two WireGuard devices (spanza.Device over
   loopback UDP) instead of the memory wire.

MB/s is 10^6 bytes per second. "per CPU-s" divides by the process's CPU
time, which matters on shared machines where wall-clock time is noisy.

    .venv/bin/python bench/netstack_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import threading
import time

import spanza
from spanza.keys import PrivateKey
from spanza.netstack import DeviceLink, Host, wired_pair

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MiB = 1 << 20


def raw_tcp(link: str, runs: list[tuple[int, int]]) -> None:
    """lwIP bulk TCP b -> a in bench/ns_bench.c, its own process with its own
    hosts on `link`: one line per (one-way delay ms, bytes)."""
    subprocess.run(["make", "-s", "build/release/ns_bench"], cwd=ROOT, check=True)
    r = subprocess.run(
        [os.path.join(ROOT, "build/release/ns_bench"), link] + [f"{d}:{n}" for d, n in runs],
        check=False,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    print(r.stdout, end="")
    if r.returncode:
        print(f"     failed: {r.stderr.strip()}")


def socket_bulk(a, b, nbytes: int, port: int) -> tuple[float, float]:
    lst = a.listen(port)
    c = b.connect((a.address(4), port), timeout=10)
    s, _ = lst.accept()
    got = [0]

    def drain() -> None:
        buf = bytearray(MiB)
        while k := s.recv_into(buf):
            got[0] += k

    t = threading.Thread(target=drain)
    t.start()
    chunk = os.urandom(MiB)
    c0, t0 = time.process_time(), time.monotonic()
    for _ in range(nbytes // MiB):
        c.sendall(chunk)
    c.shutdown(socket.SHUT_WR)
    t.join()
    wall, cpu = time.monotonic() - t0, time.process_time() - c0
    assert got[0] == nbytes
    c.close()
    s.close()
    lst.close()
    return nbytes / wall / 1e6, nbytes / cpu / 1e6


def socket_echo_us(a, b, rounds: int, port: int) -> float:
    lst = a.listen(port)
    c = b.connect((a.address(4), port), timeout=10)
    s, _ = lst.accept()

    def echo() -> None:
        while d := s.recv(64):
            s.sendall(d)

    t = threading.Thread(target=echo)
    t.start()
    t0 = time.monotonic()
    for _ in range(rounds):
        c.sendall(b"x")
        c.recv(64)
    dt = time.monotonic() - t0
    c.close()
    t.join()
    s.close()
    lst.close()
    return dt / rounds * 1e6


def connect_rate(a, b, n: int, port: int) -> float:
    lst = a.listen(port, backlog=n)
    done = threading.Event()

    def acceptor() -> None:
        for _ in range(n):
            s, _ = lst.accept()
            s.close()
        done.set()

    t = threading.Thread(target=acceptor)
    t.start()
    t0 = time.monotonic()
    for _ in range(n):
        b.connect((a.address(4), port), timeout=10).close()
    done.wait(60)
    dt = time.monotonic() - t0
    t.join()
    lst.close()
    return n / dt


def iperf3(a, b, seconds: int, reverse: bool, udp: bool) -> str:
    exe = shutil.which("iperf3")
    if not exe:
        return "iperf3 not installed"
    with socket.socket() as tmp:
        tmp.bind(("127.0.0.1", 0))
        sport = tmp.getsockname()[1]
    srv = subprocess.Popen(
        [exe, "-s", "-1", "-B", "127.0.0.1", "-p", str(sport)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        time.sleep(0.3)
        with a.expose(5201, to=("127.0.0.1", sport)), a.expose(5201, to=("127.0.0.1", sport), proto="udp"):
            # iperf3 UDP needs the same OS port for its control (TCP) and data (UDP)
            with socket.socket() as tmp:
                tmp.bind(("127.0.0.1", 0))
                cport = tmp.getsockname()[1]
            with (
                b.forward(("127.0.0.1", cport), to=(a.address(4), 5201)),
                b.forward(("127.0.0.1", cport), to=(a.address(4), 5201), proto="udp"),
            ):
                args = [exe, "-c", "127.0.0.1", "-p", str(cport), "-t", str(seconds), "-J"]
                if reverse:
                    args.append("-R")
                if udp:
                    args += ["-u", "-b", "200M", "-l", "1300"]
                r = subprocess.run(args, capture_output=True, timeout=seconds + 30)
        res = json.loads(r.stdout or b"{}")
        if "error" in res or "end" not in res:
            return f"failed: {res.get('error', r.stderr.decode()[:200])}"
        end = res["end"]
        if udp:
            s = end["sum"]
            return f"{s['bits_per_second'] / 8e6:.0f} MB/s, {s['lost_percent']:.1f}% lost"
        snd = end["sum_sent"]["bits_per_second"] / 8e6
        rcv = end["sum_received"]["bits_per_second"] / 8e6
        retr = end["sum_sent"].get("retransmits", 0)
        return f"{rcv:.0f} MB/s received ({snd:.0f} sent, {retr} retransmits by iperf3's OS socket)"
    finally:
        if srv.poll() is None:
            srv.kill()
        srv.wait(10)


def device_pair():
    ka, kb = PrivateKey.generate(), PrivateKey.generate()
    da, db = spanza.Device(ka, listen_port=0), spanza.Device(kb, listen_port=0)
    da.add_peer(kb.public_key, endpoint=f"127.0.0.1:{db.listen_port}", allowed_ips=["10.44.0.2/32", "fd44::2/128"])
    db.add_peer(ka.public_key, endpoint=f"127.0.0.1:{da.listen_port}", allowed_ips=["10.44.0.1/32", "fd44::1/128"])
    a = Host(["10.44.0.1/24", "fd44::1/64"], DeviceLink(da))
    b = Host(["10.44.0.2/24", "fd44::2/64"], DeviceLink(db))
    b.ping(a.address(4), timeout=5)  # handshake

    def close() -> None:
        a.close()
        b.close()
        da.close()
        db.close()

    return a, b, close


def run(a, b, big: int, iperf_seconds: int, wire=None) -> None:
    print("   raw lwIP TCP, one connection (C, no sockets):")
    if wire:
        raw_tcp("wire", [(0, big), (1, big // 2), (10, 64 * MiB)])
    else:
        raw_tcp("device", [(0, big // 4)])
    print("   Python sockets through the bridges:")
    wall, per_cpu = socket_bulk(a, b, big // 4, 5100)
    print(f"     bulk {big // 4 // MiB} MiB: {wall:.0f} MB/s wall, {per_cpu:.0f} MB per CPU-s (all threads)")
    print(f"     1-byte echo round trip: {socket_echo_us(a, b, 2000, 5101):.0f} us")
    print(f"     connect+accept+close: {connect_rate(a, b, 500, 5102):.0f} per s")
    for af in (4, 6):
        rtts = sorted(b.ping(a.address(af), count=21))
        print(f"     ping IPv{af} (timed in C): median {rtts[10] * 1e6:.1f} us")
    print(f"   iperf3 through forward (B) -> tunnel -> expose (A), {iperf_seconds} s each:")
    print(f"     TCP client->server: {iperf3(a, b, iperf_seconds, False, False)}")
    print(f"     TCP server->client: {iperf3(a, b, iperf_seconds, True, False)}")
    print(f"     UDP 1300-byte datagrams, 200 Mbit/s offered: {iperf3(a, b, iperf_seconds, False, True)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller transfers")
    ap.add_argument("--iperf-seconds", type=int, default=5)
    ap.add_argument("--link", choices=["wire", "device", "both"], default="both")
    args = ap.parse_args()
    big = 256 * MiB if args.quick else 1024 * MiB
    print(
        "lwIP 2.1.3 (Debian source), TCP_WND = TCP_SND_BUF = 1 MiB, MSS 1380; "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    if args.link in ("wire", "both"):
        print("\nhosts on a memory wire")
        a, b, wire = wired_pair(["192.168.4.1/24", "fd00::1/64"], ["192.168.4.2/24", "fd00::2/64"])
        try:
            run(a, b, big, args.iperf_seconds, wire)
            st = wire.stats()
            print(f"   wire: {st['packets']} packets, {st['dropped']} dropped")
        finally:
            a.close()
            b.close()
            wire.close()
    if args.link in ("device", "both"):
        print("\nhosts on two WireGuard devices (loopback UDP, one runtime)")
        a, b, close = device_pair()
        try:
            run(a, b, big, args.iperf_seconds)
        finally:
            close()


if __name__ == "__main__":
    main()
