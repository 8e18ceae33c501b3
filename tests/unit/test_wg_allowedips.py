"""Cryptokey routing (spec section 7) and endpoint roaming (section 6)."""

import ipaddress
import random

import pytest

from spanza import ConfigError
from spanza.keys import PrivateKey
from spanza.wireguard import Tunnel
from tests.unit.wgutil import A_IP, B_IP, handshake, ipv4_udp, pair, pump


def peers(t, n):
    return [t.add_peer(PrivateKey(bytes([i + 1] * 32)).public_key) for i in range(n)]


def test_longest_prefix_v4_v6():
    t = Tunnel(seed=1)
    p1, p2, p3, p4 = peers(t, 4)
    t.add_allowed_ip(p1, "0.0.0.0/0")
    t.add_allowed_ip(p2, "10.0.0.0/8")
    t.add_allowed_ip(p3, "10.1.0.0/16")
    t.add_allowed_ip(p4, "10.1.2.3/32")
    t.add_allowed_ip(p2, "::/0")
    t.add_allowed_ip(p3, "2001:db8::/32")
    t.add_allowed_ip(p4, "2001:db8:1::/48")
    assert t.route("10.1.2.3") == p4
    assert t.route("10.1.2.4") == p3
    assert t.route("10.2.0.1") == p2
    assert t.route("11.0.0.1") == p1
    assert t.route("2001:db8:1::5") == p4
    assert t.route("2001:db8:2::5") == p3
    assert t.route("fe80::1") == p2
    t.remove_peer(p2)
    assert t.route("10.2.0.1") == p1 and t.route("fe80::1") is None


def test_host_bits_masked_and_listing_order():
    t = Tunnel(seed=1)
    [p] = peers(t, 1)
    t.add_allowed_ip(p, "10.0.0.5/24")
    t.add_allowed_ip(p, "fd00::1:2/64")
    t.add_allowed_ip(p, "192.168.1.1/32")
    assert t.allowed_ips(p) == ["10.0.0.0/24", "fd00::/64", "192.168.1.1/32"]


def test_prefix_moves_to_last_claimant():
    t = Tunnel(seed=1)
    p1, p2 = peers(t, 2)
    t.add_allowed_ip(p1, "10.0.0.0/24")
    t.add_allowed_ip(p1, "10.0.1.0/24")
    t.add_allowed_ip(p2, "10.0.0.0/24")
    assert t.route("10.0.0.7") == p2
    assert t.allowed_ips(p1) == ["10.0.1.0/24"]
    assert t.allowed_ips(p2) == ["10.0.0.0/24"]
    # Removing a prefix only works for its owner.
    assert not t.remove_allowed_ip(p1, "10.0.0.0/24")
    assert t.route("10.0.0.7") == p2
    assert t.remove_allowed_ip(p2, "10.0.0.0/24")
    assert t.route("10.0.0.7") is None


def test_bad_prefixes_raise():
    t = Tunnel(seed=1)
    [p] = peers(t, 1)
    for bad in ("10.0.0.0/33", "nonsense", "fd00::/129", "10.0.0.0/-1"):
        with pytest.raises(ConfigError):
            t.add_allowed_ip(p, bad)


def naive_lookup(table, addr):
    best = None
    for net, owner in table.items():
        if addr.version == net.version and addr in net:
            if best is None or net.prefixlen > best[0].prefixlen:
                best = (net, owner)
    return best[1] if best else None


@pytest.mark.parametrize("version", [4, 6])
def test_random_against_naive_lpm(version):
    rnd = random.Random(version)
    t = Tunnel(seed=2)
    ps = peers(t, 8)
    bits = 32 if version == 4 else 128
    table = {}
    # Clustered prefixes so they nest and share branches.
    bases = [rnd.getrandbits(bits) for _ in range(4)]

    def addr():
        b = rnd.choice(bases)
        flip = rnd.getrandbits(rnd.randint(0, bits))
        return ipaddress.ip_address(b ^ flip if version == 6 else (b ^ flip) & 0xFFFFFFFF)

    for step in range(600):
        net = ipaddress.ip_network(f"{addr()}/{rnd.randint(0, bits)}", strict=False)
        owner = rnd.choice(ps)
        if rnd.random() < 0.25 and table:
            net = rnd.choice(list(table))
            owner = table[net]
            assert t.remove_allowed_ip(owner, str(net))
            del table[net]
        else:
            t.add_allowed_ip(owner, str(net))
            table[net] = owner
        if step % 50 == 0:
            victim = rnd.choice(ps)
            t.remove_peer(victim)
            t.add_peer(victim)
            table = {n: o for n, o in table.items() if o != victim}
        for _ in range(5):
            a = addr()
            assert t.route(str(a)) == naive_lookup(table, a), (a, step)
    for p in ps:
        assert sorted(t.allowed_ips(p)) == sorted(str(n) for n, o in table.items() if o == p)


def test_source_check_on_receive():
    a, b = pair()
    handshake(a, b)
    # a's packet from an address b does not allow for a is dropped.
    a.add_allowed_ip(b.public_key, "10.99.0.0/16")
    a.send(ipv4_udp("10.0.0.1", "10.99.0.1"))
    pump(a, b)
    assert [p for _, p in b.delivered()] == [ipv4_udp("10.0.0.1", "10.99.0.1")]  # src ok
    a.send(ipv4_udp("10.0.0.9", "10.99.0.1"))  # src not a's
    pump(a, b)
    assert b.delivered() == [] and b.drops["source_not_allowed"] == 1
    # Moving a's address to another peer at b moves the source check too.
    c = b.add_peer(PrivateKey(bytes([9] * 32)).public_key)
    b.add_allowed_ip(c, "10.0.0.1/32")
    a.send(ipv4_udp("10.0.0.1", "10.99.0.1"))
    pump(a, b)
    assert b.delivered() == [] and b.drops["source_not_allowed"] == 2


def test_roaming_follows_authenticated_packets_only():
    a, b = pair()
    handshake(a, b)
    pump(a, b)
    assert b.peer_stats(a.public_key).endpoint == a.address
    # a moves: its next authenticated packet updates b's endpoint.
    a.send(ipv4_udp(A_IP, B_IP, b"from new place"))
    [(_, d)] = a.outgoing()
    assert b.receive(d, "[2001:db8::7]:40000") is None
    assert b.peer_stats(a.public_key).endpoint == "[2001:db8::7]:40000"
    b.send(ipv4_udp(B_IP, A_IP))
    [(to, _)] = b.outgoing()
    assert to == "[2001:db8::7]:40000"
    # A replay from elsewhere does not move it; nor does garbage.
    assert b.receive(d, "198.51.100.1:1") == "replay"
    bad = bytearray(d)
    bad[-1] ^= 1
    assert b.receive(bytes(bad), "198.51.100.2:2") == "data_decrypt"
    assert b.peer_stats(a.public_key).endpoint == "[2001:db8::7]:40000"
    # A handshake from a new address moves it too.
    a.advance(6000)
    b.advance(6000)
    a.initiate(b.public_key)
    [(_, init)] = a.outgoing()
    assert b.receive(init, "203.0.113.5:5555") is None
    assert b.peer_stats(a.public_key).endpoint == "203.0.113.5:5555"
    [(to, _)] = b.outgoing()
    assert to == "203.0.113.5:5555"


def test_cookie_reply_does_not_move_endpoint():
    a, b = pair()
    b.set_under_load("force")
    a.initiate(b.public_key)
    b.receive(a.outgoing()[0][1], a.address)
    [(_, reply)] = b.outgoing()
    assert a.receive(reply, "198.51.100.9:9") is None
    assert a.peer_stats(b.public_key).endpoint == b.address


def test_derp_endpoints():
    a, b = pair()
    key = "derp:" + "ab" * 32
    a.set_endpoint(b.public_key, key)
    a.send(ipv4_udp(A_IP, B_IP))
    [(to, _)] = a.outgoing()
    assert to == key
    assert f"endpoint={key}" in a.ipc_get()
