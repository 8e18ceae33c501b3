"""The netstack on a memory wire: two lwIP hosts in this process, every packet
between them crossing the wire (never a shortcut inside lwIP)."""

from __future__ import annotations

import _socket
import asyncio
import ipaddress
import os
import socket
import threading
import time

import pytest

import spanza
from spanza._ffi import ffi, lib
from spanza.netstack import MAX_HOSTS, Host, HTTPConnection, MemoryWire, wired_pair
from tests.integration.netstack_helpers import A4, A6, B4, B6, TCP_RST, icmp_echo, parse, tcp_syn
from tests.support import assert_closed_by_peer, body_handler, wait_for

_Hello = body_handler(lambda h: f"hello {h.path} to {h.client_address[0]}".encode())


# ---- TCP and HTTP ----


@pytest.mark.parametrize("server,client", [(A4, B4), (A6, B6)])
def test_http_client_gets_response_from_http_server(pair, server, client):
    a, b, wire = pair
    with a.serve_http(80, _Hello):
        conn = HTTPConnection(b, server, 80, timeout=5)
        conn.request("GET", "/x")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.read() == f"hello /x to {client}".encode()
        conn.close()
    st = wire.stats()
    assert st["packets"][0] > 0 and st["packets"][1] > 0  # both directions crossed the wire


def test_users_get_socket_module_sockets(pair):
    # Spanza's own HTTP takes the _socket module's (spanza._sock: socket.py
    # is not imported for `spanza demo`); users get socket.socket.
    a, b, _ = pair
    with a.listen(7001) as lst:
        c = b.connect((A6, 7001), timeout=5)
        s, peer = lst.accept()
        with c, s:
            assert type(c) is socket.socket and type(s) is socket.socket
            assert peer[0] == B6 and c.gettimeout() == 5 and c.family == socket.AF_UNIX
        c = b._connect((A4, 7001), 5, _socket.socket)
        s, peer = lst._accept(_socket.socket)
        try:
            assert type(c) is _socket.socket and type(s) is _socket.socket
            assert peer[0] == B4 and c.gettimeout() == 5
            c.sendall(b"x")
            assert s.recv(1) == b"x"
        finally:
            c.close()
            s.close()


def test_host_addresses_and_interfaces(pair):
    a, _, _ = pair
    assert a.addresses == [A4, A6] and a.address(6) == A6
    assert a.interfaces == [ipaddress.ip_interface(f"{A4}/24"), ipaddress.ip_interface(f"{A6}/64")]
    assert repr(a) == f"<Host {A4}/24 {A6}/64>"


@pytest.mark.parametrize("bad", ["192.168.4.300/24", "192.168.4.1/33", "fd00::1::2/64", "x"])
def test_bad_host_address_says_what_ipaddress_says(bad):
    with pytest.raises(ValueError) as want:
        ipaddress.ip_interface(bad)
    wire = MemoryWire()
    try:
        with pytest.raises(spanza.ConfigError) as got:
            Host(bad, wire.end(0))
    finally:
        wire.close()
    assert str(got.value) == f"address: {want.value} (want an interface like '192.168.4.1/24')"


def test_every_segment_crosses_the_wire(pair):
    a, b, wire = pair
    wire.capture(1000)
    lst = a.listen(7000)
    c = b.connect((A4, 7000), timeout=5)
    s, peer = lst.accept()
    assert peer[0] == B4
    c.sendall(b"ping")
    assert s.recv(10) == b"ping"
    s.sendall(b"pong")
    assert c.recv(10) == b"pong"
    c.close()
    assert s.recv(10) == b""
    s.close()
    lst.close()
    assert wait_for(lambda: a.stats()["tcp_open"] == 0 and b.stats()["tcp_open"] == 0)
    pkts = [(side, parse(p)) for side, p in wire.take()]
    tcp = [(side, p) for side, p in pkts if p.proto == 6]
    assert len(tcp) >= 7  # SYN, SYN-ACK, ACK, data both ways, FINs
    for side, p in tcp:  # each host sends only from its own address, to the other
        assert (p.src, p.dst) == ((A4, B4) if side == 0 else (B4, A4))
    lwip_tcp = ffi.new("uint64_t[4]")
    assert lib.ns_lwip_stats(b"tcp", lwip_tcp) == 0


def test_connect_to_closed_port_is_refused_by_the_right_host(pair):
    a, b, wire = pair
    wire.capture(100)
    for addr in (A4, A6):
        with pytest.raises(ConnectionRefusedError):
            b.connect((addr, 9), timeout=5)
    rsts = [
        (side, parse(p)) for side, p in wire.take() if parse(p).tcp_flags is not None and parse(p).tcp_flags & TCP_RST
    ]
    assert {(side, p.src, p.dst) for side, p in rsts} == {(0, A4, B4), (0, A6, B6)}


def test_connect_timeout_and_unreachable_family(link_pair):
    a, b, wire = link_pair
    with pytest.raises(TimeoutError):
        b.connect(("192.168.4.77", 80), timeout=0.3)  # nobody owns .77: SYNs go unanswered
    v4only, other, w2 = wired_pair("10.9.0.1/24", "10.9.0.2/24")
    try:
        with pytest.raises(spanza.ConfigError, match="no IPv6 address"):
            v4only.connect((A6, 80), timeout=1)
    finally:
        v4only.close()
        other.close()
        w2.close()


def test_listener_backlog_refuses_excess_connections(pair):
    a, b, wire = pair
    lst = a.listen(7001, backlog=2)
    socks = [b.connect((A4, 7001), timeout=5) for _ in range(5)]
    assert wait_for(lambda: a.stats()["tcp_refused"] == 3)
    # the refused ones were reset after the handshake: their sockets see the end
    ends = 0
    for s in socks:
        s.settimeout(0.05)
        try:
            if s.recv(1) == b"":
                ends += 1
        except (TimeoutError, ConnectionResetError):
            pass
    assert ends == 3
    for _ in range(2):
        s, _ = lst.accept()
        s.close()
    for s in socks:
        s.close()
    lst.close()


def test_listener_port_in_use_and_ephemeral(pair):
    a, b, wire = pair
    with a.listen(0) as l1:
        assert l1.port >= 49152
        with pytest.raises(OSError, match="in use"):
            a.listen(l1.port)
        with b.listen(l1.port):  # another host may use the same port
            pass


def test_close_and_half_close_are_carried_across(link_pair):
    a, b, wire = link_pair
    with a.listen(7002) as lst:
        c = b.connect((A6, 7002), timeout=5)
        s, _ = lst.accept()
        c.sendall(b"request")
        c.shutdown(socket.SHUT_WR)  # FIN: the server reads to the end
        data = b""
        while chunk := s.recv(100):
            data += chunk
        assert data == b"request"
        s.sendall(b"response")  # the other direction still works
        s.close()
        assert c.recv(100) == b"response"
        assert c.recv(100) == b""
        c.close()
    assert wait_for(lambda: a.stats()["tcp_open"] == 0 and b.stats()["tcp_open"] == 0)


def test_abortive_close_sends_a_reset(pair):
    a, b, wire = pair
    wire.capture(1000)
    with a.listen(7003) as lst:
        c = b.connect((A4, 7003), timeout=5)
        s, _ = lst.accept()
        c.sendall(b"x" * 1000)
        assert wait_for(lambda: a.stats()["rx_bytes"] > 1000)
        time.sleep(0.05)
        s.close()  # closed with unread data: like Linux, a reset
        assert_closed_by_peer(c)
        c.close()
    rsts = [parse(p) for side, p in wire.take() if side == 0]
    assert any(p.tcp_flags is not None and p.tcp_flags & TCP_RST for p in rsts)
    assert wait_for(lambda: a.stats()["tcp_open"] == 0 and b.stats()["tcp_open"] == 0)


def test_host_close_resets_its_connections_and_spares_others():
    a, b, w1 = wired_pair("10.8.0.1/24", "10.8.0.2/24")
    c_, d, w2 = wired_pair("10.7.0.1/24", "10.7.0.2/24")
    try:
        la, lc = a.listen(80), c_.listen(80)
        x = b.connect(("10.8.0.1", 80), timeout=5)
        y = d.connect(("10.7.0.1", 80), timeout=5)
        sa, _ = la.accept()
        sc, _ = lc.accept()
        a.close()  # also closes its listener; the connection is reset
        with pytest.raises(spanza.ClosedError):
            a.listen(81)
        x.settimeout(5)
        try:
            assert x.recv(1) == b""
        except ConnectionResetError:
            pass
        y.sendall(b"still here")
        assert sc.recv(100) == b"still here"
        for s in (x, y, sa, sc):
            s.close()
        lc.close()
    finally:
        for h in (a, b, c_, d):
            h.close()
        w1.close()
        w2.close()


def test_asyncio_uses_tunnel_sockets(link_pair):
    a, b, wire = link_pair

    async def main() -> bytes:
        lst = a.listen(7004)
        loop = asyncio.get_running_loop()

        def serve() -> None:
            s, _ = lst.accept()
            s.sendall(s.recv(100).upper())
            s.close()

        t = loop.run_in_executor(None, serve)
        reader, writer = await asyncio.open_connection(sock=b.connect((A4, 7004), timeout=5))
        writer.write(b"asyncio")
        await writer.drain()
        data = await reader.read(100)
        writer.close()
        await t
        lst.close()
        return data

    assert asyncio.run(main()) == b"ASYNCIO"


# ---- ICMP ----


@pytest.mark.parametrize("af", [4, 6])
def test_ping_both_ways(link_pair, af):
    a, b, wire = link_pair
    rtts = b.ping(a.address(af), count=3, timeout=2)
    assert len(rtts) == 3 and all(0 < r < 2 for r in rtts)
    assert len(a.ping(b.address(af), count=2, timeout=2)) == 2
    assert len(a.ping(b.address(af), size=4000, timeout=2)) == 1  # fragmented both ways


def test_ping_unowned_address_times_out(pair):
    a, b, wire = pair
    with pytest.raises(TimeoutError, match="no echo reply"):
        b.ping("192.168.4.77", timeout=0.2)
    with pytest.raises(TimeoutError):
        b.ping("fd00::77", timeout=0.2)


# ---- isolation: packets not for the host ----


@pytest.mark.parametrize("unowned,src", [("192.168.4.77", B4), ("fd00::4d", B6)])
def test_packet_for_unowned_address_is_dropped_and_counted(pair, unowned, src):
    a, b, wire = pair
    before_a, before_w = a.stats(), wire.stats()
    assert not a.inject(icmp_echo(src, unowned))
    assert not a.inject(tcp_syn(src, unowned, 40000, 80))
    # a packet for the other host arriving here is not ours either
    assert not a.inject(icmp_echo(src, b.address(4 if ":" not in unowned else 6)))
    a.runtime.sync()
    after_a = a.stats()
    assert after_a["drop_not_ours"] == before_a["drop_not_ours"] + 3
    assert after_a["tx_packets"] == before_a["tx_packets"]  # never answered
    assert wire.stats()["packets"] == before_w["packets"]


def test_crafted_packet_for_the_host_is_answered(pair):
    a, b, wire = pair
    wire.capture(10)
    before = a.stats()["tx_packets"]
    assert a.inject(icmp_echo("192.168.4.99", A4, ident=7, seq=9))
    assert wait_for(lambda: a.stats()["tx_packets"] == before + 1)
    ((side, reply),) = wire.take()
    p = parse(reply)
    assert side == 0 and (p.src, p.dst, p.payload[0]) == (A4, "192.168.4.99", 0)  # echo reply out A's link


@pytest.mark.parametrize(
    "packet",
    [
        b"",
        b"\x45",
        b"\x45" + b"\0" * 10,  # short IPv4 header
        b"\x4f" + b"\0" * 19,  # IHL beyond the packet
        b"\x60" + b"\0" * 20,  # short IPv6 header
        b"\x70" + b"\0" * 60,  # version 7
        bytes.fromhex("45000100") + b"\0" * 30,  # total length beyond the packet
        # IPv6 with a hop-by-hop header that claims more than there is
        bytes.fromhex("6000000000020040")
        + bytes.fromhex("fd000000000000000000000000000002")
        + bytes.fromhex("fd000000000000000000000000000001")
        + b"\x3a\x05",
    ],
)
def test_malformed_packets_are_dropped_and_counted(pair, packet):
    a, b, wire = pair
    before = a.stats()
    assert not a.inject(packet)
    after = a.stats()
    assert after["drop_malformed"] == before["drop_malformed"] + 1
    assert after["tx_packets"] == before["tx_packets"]


def test_garbage_does_not_harm_live_connections(link_pair):
    a, b, wire = link_pair
    with a.listen(7005) as lst:
        c = b.connect((A4, 7005), timeout=5)
        s, _ = lst.accept()
        rnd = os.urandom(200_000)
        for i in range(0, len(rnd), 97):
            a.inject(rnd[i : i + 97])
            a.inject(b"\x45" + rnd[i : i + 60])
            a.inject(b"\x60" + rnd[i : i + 90])
        c.sendall(b"alive")
        assert s.recv(10) == b"alive"
        s.close()
        c.close()


# ---- UDP ----


@pytest.mark.parametrize("af", [4, 6])
def test_udp_echo_both_ways(link_pair, af):
    a, b, wire = link_pair
    for srv_host, cli_host in ((a, b), (b, a)):
        srv = srv_host.udp_socket(7)
        cli = cli_host.udp_socket()
        srv.settimeout(5)
        cli.settimeout(5)

        def echo(srv=srv) -> None:
            for _ in range(3):
                data, peer = srv.recvfrom(65535)
                srv.sendto(data, peer)

        t = threading.Thread(target=echo)
        t.start()
        for payload in (b"hello", b"", os.urandom(9000)):  # 9000: fragmented
            cli.sendto(payload, (srv_host.address(af), 7))
            data, peer = cli.recvfrom(65535)
            assert data == payload
            assert peer == (srv_host.address(af), 7)
        t.join(5)
        assert cli.getsockname()[1] == cli.port
        srv.close()
        cli.close()


def test_udp_to_closed_port_and_full_socket(pair):
    a, b, wire = pair
    with b.udp_socket() as cli, a.udp_socket(5000) as srv:
        cli.sendto(b"nobody", (A4, 5001))  # ICMP port unreachable comes back, ignored
        for _ in range(2000):  # nobody reads srv: its socket fills, the rest is dropped and counted
            cli.sendto(b"x" * 1000, (A4, 5000))
        assert wait_for(lambda: a.stats()["udp_drops"] > 0)
        srv.settimeout(1)
        assert srv.recvfrom(2000)[0] == b"x" * 1000


# ---- hosts ----


class _NullLink:
    """A link that drops what hosts send (for hosts that never talk)."""

    def __init__(self) -> None:
        self.wire = MemoryWire()

    def output(self):
        return ffi.addressof(lib, "ns_wire_output"), lib.ns_wire_end(self.wire.ptr, 0)

    def attach(self, host: Host) -> None:
        pass

    def detach(self, host: Host) -> None:
        pass


def test_host_cap_has_a_clear_error():
    link = _NullLink()
    hosts = []
    try:
        n = MAX_HOSTS - lib.ns_host_count()
        for i in range(n):
            hosts.append(Host(f"10.{100 + i // 250}.{i % 250}.1/24", link))
        with pytest.raises(spanza.SpanzaError, match=f"at most {MAX_HOSTS}"):
            Host("10.99.0.1/24", link)
        hosts.pop().close()
        hosts.append(Host("10.99.0.1/24", link))  # room again
    finally:
        for h in hosts:
            h.close()
        link.wire.close()


def test_bad_host_configurations_are_refused(pair):
    a, b, wire = pair
    link = _NullLink()
    try:
        with pytest.raises(spanza.AddressInUseError, match="already has"):
            Host(f"{A4}/24", link)
        for bad in (["127.0.0.1/8"], ["ff02::1/64"], ["fe80::1/64"], ["10.0.0.1/24", "10.0.0.2/24"], [], ["nope"]):
            with pytest.raises(spanza.ConfigError):
                Host(bad, link)
        with pytest.raises(spanza.ConfigError, match="MTU"):
            Host("10.0.0.1/24", link, mtu=100)
        with spanza.Runtime("other") as rt:
            with pytest.raises(spanza.SpanzaError, match="another runtime"):
                Host("10.0.0.1/24", link, runtime=rt)
    finally:
        link.wire.close()


def test_hosts_are_freed_with_their_objects(pair):
    a, b, wire = pair
    lst = a.listen(7006)
    udp = a.udp_socket(7006)
    fwd = a.expose(7007, ("127.0.0.1", 9))
    c = b.connect((A4, 7006), timeout=5)
    s, _ = lst.accept()
    assert a.stats()["tcp_open"] == 1
    count = lib.ns_host_count()
    a.close()
    assert lst.closed and udp.closed and fwd.closed
    assert lib.ns_host_count() == count - 1
    s.close()
    c.close()
