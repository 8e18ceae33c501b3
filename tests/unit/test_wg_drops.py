"""Hostile and broken datagrams: each dropped under the right counter,
nothing sent, nothing delivered, no crash."""

import random

import pytest

from spanza.wireguard import DROP_REASONS, Tunnel
from tests.unit.wgutil import A_IP, B_IP, handshake, ipv4_udp, ipv6_udp, pair, pump


def fresh():
    a, b = pair()
    handshake(a, b)
    pump(a, b)
    return a, b


def answer(t, msg, src):
    """What tunnel t sends in reply to msg from src (exactly one datagram)."""
    t.receive(msg, src)
    [(_, reply)] = t.outgoing()
    return reply


def captured():
    """One of each message from a real exchange."""
    a, b = pair()
    a.send(ipv4_udp(A_IP, B_IP))
    [(_, init)] = a.outgoing()
    resp = answer(b, init, a.address)
    a.receive(resp, b.address)
    [(_, data)] = a.outgoing()
    b.receive(data, a.address)
    b.delivered()
    return a, b, init, resp, data


def only_drop(t, reason, before):
    after = t.drops
    diff = {k: after[k] - before[k] for k in after if after[k] != before[k]}
    assert diff == {reason: 1}, diff


@pytest.mark.parametrize(
    "mangle,reason",
    [
        (lambda m: b"", "truncated"),
        (lambda m: b"\x01\x00", "truncated"),
        (lambda m: m["init"][:147], "truncated"),
        (lambda m: m["init"] + b"\0", "oversized"),
        (lambda m: m["resp"][:91], "truncated"),
        (lambda m: m["resp"] + b"\0", "oversized"),
        (lambda m: bytes([3, 0, 0, 0]) + bytes(59), "truncated"),
        (lambda m: bytes([3, 0, 0, 0]) + bytes(61), "oversized"),
        (lambda m: m["data"][:31], "truncated"),
        (lambda m: bytes([4, 0, 0, 0]) + bytes(65600), "oversized"),
        (lambda m: bytes([5, 0, 0, 0]) + bytes(40), "bad_type"),
        (lambda m: bytes([0, 0, 0, 0]) + bytes(144), "bad_type"),
        (lambda m: m["init"][:1] + b"\x01" + m["init"][2:], "bad_type"),  # reserved byte set
        (lambda m: m["data"][:3] + b"\x80" + m["data"][4:], "bad_type"),
        (lambda m: m["init"][:60] + bytes([m["init"][60] ^ 1]) + m["init"][61:], "bad_mac1"),
        (lambda m: m["init"][:120] + bytes(16) + m["init"][136:], "bad_mac1"),
        (lambda m: m["data"][:4] + b"\xde\xad\xbe\xef" + m["data"][8:], "unknown_index"),
        (lambda m: m["data"][:-1] + bytes([m["data"][-1] ^ 1]), "data_decrypt"),
        (lambda m: m["data"][:20] + bytes([m["data"][20] ^ 1]) + m["data"][21:], "data_decrypt"),
        (lambda m: m["data"][:8] + (5).to_bytes(8, "little") + m["data"][16:], "data_decrypt"),
        (lambda m: m["data"], "replay"),
        (lambda m: m["init"], "stale_timestamp"),
    ],
)
def test_bad_datagram_at_responder(mangle, reason):
    a, b, init, resp, data = captured()
    msgs = {"init": init, "resp": resp, "data": data}
    before = b.drops
    b.advance(1000)
    assert b.receive(mangle(msgs), a.address) == reason
    only_drop(b, reason, before)
    assert b.outgoing() == [] and b.delivered() == []


def test_response_replay_and_mangling_at_initiator():
    a, b, init, resp, data = captured()
    before = a.drops
    assert a.receive(resp, b.address) == "unknown_index"  # handshake already used
    only_drop(a, "unknown_index", before)
    bad = bytearray(resp)
    bad[50] ^= 1
    before = a.drops
    assert a.receive(bytes(bad), b.address) == "bad_mac1"
    only_drop(a, "bad_mac1", before)


def test_response_with_bad_tag():
    a, b = pair()
    a.send(ipv4_udp(A_IP, B_IP))
    [(_, init)] = a.outgoing()
    resp = answer(b, init, a.address)
    # Flip the encrypted-nothing and fix mac1 so only the AEAD can catch it.
    from spanza._ffi import ffi, lib

    bad = bytearray(resp)
    bad[44] ^= 1
    key = ffi.new("uint8_t[32]")
    lib.spz_blake2s256(key, b"mac1----" + a.public_key.raw, 40)
    mac = ffi.new("uint8_t[16]")
    lib.spz_blake2s_mac16(mac, key, 32, bytes(bad[:60]), 60)
    bad[60:76] = bytes(mac)
    assert a.receive(bytes(bad), b.address) == "handshake_decrypt"
    assert a.receive(resp, b.address) is None  # the real one still works


def test_inner_packet_checks():
    a, b = fresh()
    before = b.drops
    # a routes 10.9.9.9 to b, but b allows only 10.0.0.1 as a's source.
    a.add_allowed_ip(b.public_key, "10.9.9.9/32")
    spoof = ipv4_udp("10.6.6.6", "10.9.9.9")
    assert a.send(spoof) is None
    pump(a, b)
    assert b.delivered() == []
    only_drop(b, "source_not_allowed", before)
    # A packet that lies about its length (IPv4 total length > payload).
    bad = bytearray(ipv4_udp(A_IP, B_IP))
    bad[2:4] = (200).to_bytes(2, "big")
    before = b.drops
    a.send(bytes(bad))
    pump(a, b)
    only_drop(b, "bad_ip", before)
    assert b.delivered() == []


def test_send_side_drops():
    a, b = fresh()
    assert a.send(ipv4_udp(A_IP, "10.7.7.7")) == "no_peer"
    assert a.send(b"\x00" * 40) == "bad_ip"
    assert a.send(b"") == "bad_ip"
    assert a.send(b"\x45" + bytes(10)) == "bad_ip"
    assert a.send(bytes(70000)) == "oversized"
    c = Tunnel(seed=50)
    c.add_peer(b.public_key, allowed_ips=["10.0.0.2/32"])  # no endpoint
    assert c.send(ipv4_udp(A_IP, B_IP)) == "no_endpoint"
    assert c.outgoing() == []
    assert a.drops["no_peer"] == 1 and a.drops["bad_ip"] == 3 and a.drops["oversized"] == 1


def test_no_private_key():
    a, b, init, resp, data = captured()
    b.private_key = None
    assert b.public_key is None
    assert b.receive(init, a.address) == "no_private_key"
    # Existing sessions still receive; sending on them stops.
    a.send(ipv4_udp(A_IP, B_IP, b"after"))
    [(_, d)] = a.outgoing()
    assert b.receive(d, a.address) is None
    assert b.delivered() == [(a.public_key, ipv4_udp(A_IP, B_IP, b"after"))]
    assert b.send(ipv4_udp(B_IP, A_IP)) is None  # staged: no identity to handshake with
    assert b.outgoing() == []


def test_staged_queue_is_bounded():
    a = Tunnel(seed=70)
    b = Tunnel(seed=71)
    a.add_peer(b.public_key, endpoint=b.address, allowed_ips=["10.0.0.0/8"])
    for i in range(200):
        assert a.send(ipv4_udp(A_IP, B_IP, b"%d" % i)) is None
    assert a.peer_stats(b.public_key).staged == 128
    assert a.drops["staged_overflow"] == 72
    b.add_peer(a.public_key, endpoint=a.address, allowed_ips=["10.0.0.1/32"])
    pump(a, b)
    got = [p for _, p in b.delivered()]
    # The oldest were dropped: the newest 128 arrive, in order.
    assert got == [ipv4_udp(A_IP, B_IP, b"%d" % i) for i in range(72, 200)]


def test_random_garbage_never_crashes():
    a, b, init, resp, data = captured()
    rnd = random.Random(1234)
    seeds = [init, resp, data, bytes(64)]
    for _ in range(3000):
        m = bytearray(rnd.choice(seeds))
        for _ in range(rnd.randint(1, 4)):
            op = rnd.randint(0, 2)
            if op == 0 and m:
                m[rnd.randrange(len(m))] ^= 1 << rnd.randrange(8)
            elif op == 1:
                del m[rnd.randrange(len(m) + 1) :]
            else:
                m += bytes(rnd.randrange(4) for _ in range(rnd.randint(1, 40)))
        r = b.receive(bytes(m), a.address)
        assert r is None or r in DROP_REASONS
    assert b.delivered() == []
    # Still healthy afterwards.
    a.advance(5000)
    b.advance(5000)
    a.send(ipv4_udp(A_IP, B_IP, b"still fine"))
    pump(a, b)
    assert ipv4_udp(A_IP, B_IP, b"still fine") in [p for _, p in b.delivered()]


def test_ipv6_inner_checks():
    a, b = fresh()
    p = ipv6_udp("fd00::1", "fd00::2")
    a.send(p)
    pump(a, b)
    assert b.delivered() == [(a.public_key, p)]
    bad = bytearray(p)
    bad[4:6] = (500).to_bytes(2, "big")
    a.send(bytes(bad))
    pump(a, b)
    assert b.delivered() == [] and b.drops["bad_ip"] == 1
