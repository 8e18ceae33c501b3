"""Devices with I/O, in process: two Spanza devices over loopback UDP."""

from __future__ import annotations

import errno
import os
import socket
import time

import pytest

import spanza
from spanza import packets
from spanza.device import Device
from spanza.keys import PrivateKey, PublicKey
from tests.support import assert_close_wakes

A4, B4 = "10.77.0.1", "10.77.0.2"
A6, B6 = "fd77::1", "fd77::2"


def keypair() -> tuple[PrivateKey, PublicKey]:
    k = PrivateKey.generate()
    return k, k.public_key


def pair(psk_a: bytes | None = None, psk_b: bytes | None = None, v6_endpoints: bool = False):
    ka, pa = keypair()
    kb, pb = keypair()
    a = Device(private_key=ka)
    b = Device(private_key=kb)
    host = "::1" if v6_endpoints else "127.0.0.1"
    a.add_peer(pb, endpoint=(host, b.listen_port), allowed_ips=[f"{B4}/32", f"{B6}/128"], preshared_key=psk_a)
    b.add_peer(pa, endpoint=(host, a.listen_port), allowed_ips=[f"{A4}/32", f"{A6}/128"], preshared_key=psk_b)
    return a, b, pa, pb


@pytest.mark.parametrize("psk", [None, bytes(range(32))], ids=["no-psk", "psk"])
@pytest.mark.parametrize("v6_endpoints", [False, True], ids=["udp4", "udp6"])
def test_two_devices_exchange_ipv4_and_ipv6_both_ways(psk, v6_endpoints):
    a, b, pa, pb = pair(psk, psk, v6_endpoints)
    with a, b:
        # A -> B starts the handshake; the packet is staged, then delivered intact.
        req4 = packets.icmp_echo(A4, B4, 0x1234, 1, b"spanza-v4")
        a.write_packet(req4)
        assert b.read_packet(timeout=5) == req4
        # B -> A on the established session, IPv4 and IPv6, ICMP and UDP.
        rep4 = packets.echo_reply_for(req4)
        b.write_packet(rep4)
        assert a.read_packet(timeout=5) == rep4
        req6 = packets.icmp_echo(B6, A6, 7, 2, b"spanza-v6" * 50)
        b.write_packet(req6)
        assert a.read_packet(timeout=5) == req6
        u6 = packets.udp(A6, B6, 5000, 6000, b"x" * 1300)
        a.write_packet(u6)
        assert b.read_packet(timeout=5) == u6

        (peer_b,) = a.peers
        (peer_a,) = b.peers
        assert peer_b.public_key == pb and peer_a.public_key == pa
        assert peer_b.last_handshake is not None and peer_a.last_handshake is not None
        assert abs(peer_b.last_handshake.timestamp() - time.time()) < 30
        assert peer_b.has_preshared_key == (psk is not None)
        assert sorted(peer_b.allowed_ips) == sorted([f"{B4}/32", f"{B6}/128"])
        assert peer_b.endpoint == (f"[::1]:{b.listen_port}" if v6_endpoints else f"127.0.0.1:{b.listen_port}")
        # Each side sent and received handshake + data bytes.
        assert peer_b.tx_bytes >= 148 + len(req4) + 32 and peer_b.rx_bytes >= 92 + len(rep4) + 32
        assert peer_a.rx_bytes == peer_b.tx_bytes or peer_a.rx_bytes <= peer_b.tx_bytes

        sa, sb = a.stats(), b.stats()
        assert sa["handshakes_completed"] >= 1 and sb["handshakes_completed"] >= 1
        assert sa["tx_packets"] == 2 and sa["rx_packets"] == 2
        assert sb["queue_read"] == 2 and sb["queue_dropped"] == 0
        assert sa["udp_rx_datagrams"] >= 3 and sa["udp_tx_datagrams"] >= 3


def test_mismatched_preshared_keys_never_deliver():
    a, b, _, _ = pair(bytes(32 * [1]), bytes(32 * [2]))
    with a, b:
        a.write_packet(packets.icmp_echo(A4, B4, 1, 1))
        with pytest.raises(TimeoutError):
            b.read_packet(timeout=1.0)
        # The responder accepted the initiation, the initiator could not
        # open the response: no session, nothing delivered anywhere.
        assert a.stats()["drops"]["handshake_decrypt"] >= 1
        assert a.stats()["handshakes_completed"] == 0
        assert a.peers[0].last_handshake is None


def test_write_packet_errors_say_what_to_fix():
    a, b, _, _ = pair()
    with a, b:
        with pytest.raises(spanza.ConfigError, match="no peer's allowed_ips contain the destination 10.9.9.9"):
            a.write_packet(packets.icmp_echo(A4, "10.9.9.9", 1, 1))
        with pytest.raises(spanza.ConfigError, match="not an IPv4 or IPv6 packet"):
            a.write_packet(b"\x00" * 40)
        with pytest.raises(spanza.ConfigError, match="shorter than an IPv4 header"):
            a.write_packet(b"\x45\x00")
        with pytest.raises(spanza.ConfigError, match="total length"):
            a.write_packet(packets.icmp_echo(A4, B4, 1, 1)[:-4])
        _, pc = keypair()
        a.add_peer(pc, allowed_ips=["10.5.0.0/16"])
        with pytest.raises(spanza.ConfigError, match="has no endpoint"):
            a.write_packet(packets.icmp_echo(A4, "10.5.0.9", 1, 1))


def test_config_errors_say_what_to_fix():
    with Device(private_key=os.urandom(32)) as d:
        _, pub = keypair()
        with pytest.raises(spanza.ConfigError, match=r"allowed_ips: '10.0.0.300/32' is not an IP network"):
            d.add_peer(pub, allowed_ips=["10.0.0.300/32"])
        with pytest.raises(spanza.ConfigError, match="endpoint: port 70000 is not in 1..65535"):
            d.add_peer(pub, endpoint="127.0.0.1:70000")
        with pytest.raises(spanza.ConfigError, match="not 'host:port'"):
            d.add_peer(pub, endpoint="127.0.0.1")
        with pytest.raises(spanza.ConfigError, match="public_key: 'not-a-key' is not a public key: wrong length"):
            d.add_peer("not-a-key")
        with pytest.raises(spanza.ConfigError, match="public_key: .* is not a public key: wrong length: 5 bytes"):
            d.add_peer(b"short")
        with pytest.raises(spanza.ConfigError, match="persistent_keepalive: 70000 is not in 0..65535"):
            d.add_peer(pub, persistent_keepalive=70000)
        with pytest.raises(spanza.ConfigError, match="line 1: unknown key 'bogus'"):
            d.ipc_set("bogus=1")
        assert d.peers == []  # nothing half-applied by the rejected calls
        with pytest.raises(spanza.AddressInUseError, match="is already in use") as ei:
            Device(listen_port=d.listen_port)
        assert isinstance(ei.value, OSError) and ei.value.errno == errno.EADDRINUSE  # as bind() raises
        with pytest.raises(spanza.ConfigError, match="not an interface name"):
            Device(name="bad/name", uapi_dir="/tmp")


def test_ipc_roundtrip_and_remove_peer():
    with Device(private_key=os.urandom(32)) as d:
        _, pub = keypair()
        d.add_peer(pub, endpoint="[::1]:51999", allowed_ips=["10.1.2.3/24", "fd00::/64"], persistent_keepalive=0)
        text = d.ipc_get()
        assert f"listen_port={d.listen_port}\n" in text
        assert f"public_key={pub.hex()}\n" in text
        assert "allowed_ip=10.1.2.0/24\n" in text and "allowed_ip=fd00::/64\n" in text
        assert "endpoint=[::1]:51999\n" in text
        assert "errno" not in text
        (p,) = d.peers
        assert p.endpoint == "[::1]:51999" and p.last_handshake is None and p.rx_bytes == 0
        d.remove_peer(pub)
        assert d.peers == []


def test_listen_port_rebind_through_ipc_keeps_tunnel_working():
    a, b, _, pb = pair()
    with a, b:
        a.write_packet(packets.icmp_echo(A4, B4, 1, 1))
        b.read_packet(timeout=5)
        old = b.listen_port
        b.ipc_set("listen_port=0")
        new = b.listen_port
        assert new != old and new > 0
        # The old port is closed; A reaches B on the new one.
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.bind(("127.0.0.1", old))  # free again: the old socket is gone
        finally:
            probe.close()
        a.add_peer(pb, endpoint=("127.0.0.1", new), allowed_ips=[f"{B4}/32", f"{B6}/128"])
        pkt = packets.icmp_echo(A4, B4, 1, 2)
        a.write_packet(pkt)
        assert b.read_packet(timeout=5) == pkt


def test_read_packet_timeout_and_close_wakes_reader():
    d = Device(private_key=os.urandom(32))
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        d.read_packet(timeout=0.2)
    assert time.monotonic() - t0 >= 0.19
    assert_close_wakes(lambda: d.read_packet(timeout=None), d.close)
    with pytest.raises(spanza.ClosedError):
        d.read_packet(timeout=0)
    d.close()  # idempotent


def test_hostile_datagrams_are_counted_and_harmless():
    a, b, _, _ = pair()
    with a, b:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            junk = [
                b"",
                b"\x01",
                b"\x01\x00\x00\x00" + b"\x00" * 144,
                b"\x04" + b"\xff" * 40,
                b"\x05\x00\x00\x00" * 10,
                b"\x01\x01\x00\x00" + b"\x00" * 144,
                os.urandom(65507),
            ]
            for j in junk:
                s.sendto(j, ("127.0.0.1", b.listen_port))
        finally:
            s.close()
        pkt = packets.icmp_echo(A4, B4, 9, 9)
        a.write_packet(pkt)
        assert b.read_packet(timeout=5) == pkt
        drops = b.stats()["drops"]
        assert sum(drops.values()) >= len(junk) - 1  # the empty datagram may count as truncated too
        assert drops["bad_mac1"] >= 1 and drops["bad_type"] >= 1


def test_read_queue_overflow_drops_and_counts():
    a, b, _, _ = pair()
    with a, b:
        pkt = packets.udp(A4, B4, 1, 2, b"q" * 1400)
        a.write_packet(pkt)
        b.read_packet(timeout=5)
        n = 4000  # > 4 MiB of 1.4 kB packets: the queue must overflow
        for _ in range(n):
            a.write_packet(pkt)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            s = b.stats()
            if s["rx_packets"] - 1 == s["queue_packets"] - 1 + s["queue_dropped"] and s["udp_rx_datagrams"] >= n:
                break
            time.sleep(0.05)
        s = b.stats()
        assert s["queue_dropped"] > 0
        assert s["queue_packets"] + s["queue_dropped"] == s["rx_packets"]
        assert s["queue_length"] == s["queue_packets"] - s["queue_read"]
        # What was kept is intact and in order, and reading frees room again.
        got = 0
        while True:
            try:
                assert b.read_packet(timeout=0) == pkt
                got += 1
            except TimeoutError:
                break
        assert got == s["queue_length"]
        a.write_packet(pkt)
        assert b.read_packet(timeout=5) == pkt


def test_under_load_needs_a_cookie_first():
    """Both sides Spanza: a forced-under-load responder answers the first
    initiation with a cookie reply; the retransmission (5 s later, with
    mac2) gets through."""
    a, b, _, _ = pair()
    with a, b:
        b.set_under_load("force")
        pkt = packets.icmp_echo(A4, B4, 1, 1)
        a.write_packet(pkt)
        with pytest.raises(TimeoutError):
            b.read_packet(timeout=1.0)
        assert b.stats()["cookies_sent"] >= 1
        assert a.stats()["cookies_received"] >= 1
        assert b.read_packet(timeout=8) == pkt
        assert b.stats()["drops"]["cookie_needed"] >= 1


test_under_load_needs_a_cookie_first = pytest.mark.slow(test_under_load_needs_a_cookie_first)


def test_write_packets_batch_in_order_and_reports_unroutable():
    a, b, _, _ = pair()
    with a, b:
        batch = [packets.udp(A4, B4, 1000, 2000 + i, bytes([i]) * (20 + i)) for i in range(200)]
        # Before the handshake the core stages 128 packets per peer, dropping the oldest.
        assert a.write_packets(batch) == 200
        got = [b.read_packet(timeout=5) for _ in range(128)]
        assert got == batch[72:]
        assert a.stats()["drops"]["staged_overflow"] == 72
        # With a session, all go out, in order.
        assert a.write_packets(batch) == 200
        assert [b.read_packet(timeout=5) for _ in range(200)] == batch
        mixed = [batch[0], packets.icmp_echo(A4, "10.66.0.1", 1, 1), batch[1]]
        with pytest.raises(
            spanza.ConfigError,
            match=r"1 of 3 packets dropped: no peer's allowed_ips contain "
            r"the destination \(first: 10.66.0.1\)",
        ):
            a.write_packets(mixed)
        assert [b.read_packet(timeout=5) for _ in range(2)] == [batch[0], batch[1]]
        assert a.write_packets([]) == 0


def test_device_outliving_its_runtime_fails_cleanly(tmp_path):
    rt = spanza.Runtime("short-lived")
    d = Device(private_key=PrivateKey.generate(), runtime=rt, name="spzrt0", uapi_dir=str(tmp_path))
    rt.close()
    with pytest.raises(spanza.ClosedError, match="runtime 'short-lived' is closed"):
        d.write_packet(packets.icmp_echo(A4, B4, 1, 1))
    d.close()  # no crash; the socket file is removed even so
    assert not (tmp_path / "spzrt0.sock").exists()
