"""Hosts on real WireGuard devices: two spanza Devices on loopback UDP, one
lwIP host on each; everything between the hosts is encrypted by one device
and decrypted by the other."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from collections.abc import Iterator

import pytest

import spanza
from spanza.keys import PrivateKey
from spanza.netstack import DeviceLink, Host, HTTPConnection
from spanza.scenario import fixed_body_handler
from tests.support import wait_for

A4, B4, A6, B6 = "10.44.0.1", "10.44.0.2", "fd44::1", "fd44::2"


@pytest.fixture
def devhosts() -> Iterator[tuple[Host, Host, spanza.Device, spanza.Device]]:
    ka, kb = PrivateKey.generate(), PrivateKey.generate()
    da = spanza.Device(ka, listen_port=0)
    db = spanza.Device(kb, listen_port=0)
    hosts: list[Host] = []
    try:
        da.add_peer(kb.public_key, endpoint=f"127.0.0.1:{db.listen_port}", allowed_ips=[f"{B4}/32", f"{B6}/128"])
        db.add_peer(ka.public_key, endpoint=f"127.0.0.1:{da.listen_port}", allowed_ips=[f"{A4}/32", f"{A6}/128"])
        hosts.append(Host([f"{A4}/24", f"{A6}/64"], DeviceLink(da), runtime=da.runtime))
        hosts.append(Host([f"{B4}/24", f"{B6}/64"], DeviceLink(db), runtime=db.runtime))
        yield hosts[0], hosts[1], da, db
    finally:
        for h in hosts:  # hosts before their devices
            h.close()
        da.close()
        db.close()


def test_ping_and_http_through_wireguard(devhosts):
    a, b, da, db = devhosts
    assert len(b.ping(A4, count=2, timeout=5)) == 2  # the first one waits for the handshake
    assert len(a.ping(B6, count=2, timeout=5)) == 2

    with a.serve_http(80, fixed_body_handler(b"over wireguard")):
        for addr in (A4, A6):
            conn = HTTPConnection(b, addr, 80, timeout=10)
            conn.request("GET", "/")
            assert conn.getresponse().read() == b"over wireguard"
            conn.close()

    # Every packet between the hosts was encrypted by one device and
    # delivered by the other to its host. The connections' last segments
    # may still be on their way while the counters are read one after the
    # other: read until they agree (bounded).
    def counts() -> list[tuple[int, int]]:
        sa, sb = da.stats(), db.stats()
        return [
            (sa["tx_packets"], a.stats()["tx_packets"]),
            (sb["tx_packets"], b.stats()["tx_packets"]),
            (sa["sink_packets"], a.stats()["rx_packets"]),
            (sb["sink_packets"], b.stats()["rx_packets"]),
        ]

    wait_for(lambda: all(x == y for x, y in counts()), what="the devices' and hosts' packet counters to agree")
    assert da.stats()["handshakes_completed"] + db.stats()["handshakes_completed"] >= 1


def test_bulk_and_udp_through_wireguard(devhosts):
    a, b, da, db = devhosts
    total = 16 << 20
    lst = a.listen(5000)
    c = b.connect((A4, 5000), timeout=10)
    s, peer = lst.accept()
    assert peer[0] == B4
    data = os.urandom(1 << 20)
    result = {}

    def drain() -> None:
        h, n = hashlib.sha256(), 0
        while chunk := s.recv(1 << 20):
            h.update(chunk)
            n += len(chunk)
        result["got"] = (n, h.hexdigest())

    t = threading.Thread(target=drain)
    t.start()
    for _ in range(total >> 20):
        c.sendall(data)
    c.shutdown(socket.SHUT_WR)
    t.join(60)
    assert result["got"] == (total, hashlib.sha256(data * (total >> 20)).hexdigest())
    c.close()
    s.close()
    lst.close()

    with a.udp_socket(53) as srv, b.udp_socket() as cli:
        srv.settimeout(5)
        cli.settimeout(5)
        cli.sendto(b"query", (A6, 53))
        msg, frm = srv.recvfrom(100)
        assert (msg, frm[0]) == (b"query", B6)
        srv.sendto(b"answer", frm)
        assert cli.recvfrom(100) == (b"answer", (A6, 53))


def test_no_peer_for_destination_is_dropped_by_the_device(devhosts):
    a, b, da, db = devhosts
    with pytest.raises(TimeoutError):
        a.ping("10.44.0.99", timeout=0.3)  # no allowed IPs cover it: WireGuard drops it
    assert sum(da.stats()["drops"].values()) > 0


def test_host_needs_the_device_runtime(devhosts):
    a, b, da, db = devhosts
    with spanza.Runtime("elsewhere") as rt:
        dc = spanza.Device(PrivateKey.generate(), listen_port=0, runtime=rt)
        try:
            with pytest.raises(spanza.SpanzaError, match="runtime"):
                Host("10.45.0.1/24", DeviceLink(dc), runtime=rt)
        finally:
            dc.close()


# ---- the points over Device(address=...) ----


@pytest.fixture
def devpair() -> Iterator[tuple[spanza.Device, spanza.Device, PrivateKey, PrivateKey]]:
    ka, kb = PrivateKey.generate(), PrivateKey.generate()
    with (
        spanza.Device(ka, address=[f"{A4}/24", f"{A6}/64"]) as da,
        spanza.Device(kb, address=[f"{B4}/24", f"{B6}/64"]) as db,
    ):
        da.add_peer(kb.public_key, endpoint=("127.0.0.1", db.listen_port), allowed_ips=[f"{B4}/32", f"{B6}/128"])
        db.add_peer(ka.public_key, endpoint=("127.0.0.1", da.listen_port), allowed_ips=[f"{A4}/32", f"{A6}/128"])
        yield da, db, ka, kb


@pytest.mark.parametrize("server_ip", [A4, A6])
def test_http_bytes_all_cross_wireguard_and_cut_link_fails(devpair, server_ip):
    """http.client on .2 gets http.server's response on .1; the devices'
    counters carry at least every byte; with the UDP link cut, it fails."""
    da, db, ka, kb = devpair
    body = os.urandom(256 * 1024)

    with da.serve_http(8080, fixed_body_handler(body)):
        rx_before = db.peers[0].rx_bytes
        conn = HTTPConnection(db, server_ip, 8080, timeout=10)
        conn.request("GET", "/")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == body
        conn.close()
        # WireGuard's transport adds 32 bytes of header and tag per packet.
        assert db.peers[0].rx_bytes - rx_before >= len(body)
        assert da.peers[0].tx_bytes >= len(body)
        # Cut the link: each side's peer now points at a port nobody serves.
        dead = ("127.0.0.1", 9)
        da.add_peer(kb.public_key, endpoint=dead, allowed_ips=[f"{B4}/32", f"{B6}/128"])
        db.add_peer(ka.public_key, endpoint=dead, allowed_ips=[f"{A4}/32", f"{A6}/128"])
        with pytest.raises((OSError, TimeoutError)):
            conn = HTTPConnection(db, server_ip, 8080, timeout=1.5)
            conn.request("GET", "/")
            conn.getresponse().read()
        conn.close()


def test_closed_port_refused_and_unowned_dropped_over_wireguard(devpair):
    da, db, ka, kb = devpair
    with pytest.raises(ConnectionRefusedError):
        db.connect((A4, 9999), timeout=5)
    # A packet for an address in the peer's allowed IPs that no host owns:
    # WireGuard delivers it, the host drops and counts it, nothing answers.
    da.add_peer(
        kb.public_key, endpoint=("127.0.0.1", db.listen_port), allowed_ips=[f"{B4}/32", f"{B6}/128", "192.168.4.77/32"]
    )
    before = db.host.stats()["drop_not_ours"]
    with pytest.raises(TimeoutError):
        da.ping("192.168.4.77", count=1, timeout=0.5)
    assert db.host.stats()["drop_not_ours"] == before + 1


def test_closing_the_device_stops_its_server_threads():
    with spanza.Device(PrivateKey.generate(), address=f"{A4}/24") as d:
        server = d.serve_http(80)
        thread = server._thread
        assert thread.is_alive()
    thread.join(5)
    assert not thread.is_alive()


def test_route_is_cryptokey_routing(devhosts):
    _, _, da, db = devhosts
    assert da.route(B4) == db.public_key and da.route(B6) == db.public_key
    assert db.route(A6) == da.public_key
    assert da.route(A4) is None and da.route("10.44.0.3") is None and da.route("fd44::3") is None
    # the longest prefix wins: a second peer owning the /24 does not take B4
    other = PrivateKey.generate().public_key
    da.add_peer(other, allowed_ips=["10.44.0.0/24"])
    assert da.route("10.44.0.9") == other and da.route(B4) == db.public_key
    da.remove_peer(other)
    assert da.route("10.44.0.9") is None
    for bad in ("10.44.0", "example.com", "", "fd44::1%eth0"):
        with pytest.raises(spanza.ConfigError, match="not an IPv4 or IPv6 address"):
            da.route(bad)
