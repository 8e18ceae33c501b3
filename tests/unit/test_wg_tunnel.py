"""Two Tunnels wired together: handshake and traffic both ways."""

import pytest

from spanza.keys import PresharedKey, PrivateKey
from spanza.wireguard import Tunnel, pump
from tests.unit.wgutil import A_IP, B_IP, ipv4_udp, ipv6_udp, pair, run


@pytest.mark.parametrize("psk", [False, True])
def test_handshake_and_traffic_both_ways(psk):
    a, b = pair(psk=psk)
    p1 = ipv4_udp(A_IP, B_IP, b"ping")
    assert a.send(p1) is None
    # Nothing to send with yet: the packet is staged behind an initiation.
    [(to, init)] = a.outgoing()
    assert to == b.address and len(init) == 148 and init[0] == 1
    assert a.peer_stats(b.public_key).staged == 1
    assert b.receive(init, a.address) is None
    [(to, resp)] = b.outgoing()
    assert to == a.address and len(resp) == 92 and resp[0] == 2
    # The responder must not use the session before the initiator confirms it.
    st = b.peer_stats(a.public_key)
    assert st.has_next and not st.has_current
    assert a.receive(resp, b.address) is None
    [(to, data)] = a.outgoing()
    assert data[0] == 4 and len(data) == 32 + 32  # the 32-byte packet needs no padding
    assert b.receive(data, a.address) is None
    assert b.delivered() == [(a.public_key, p1)]
    st = b.peer_stats(a.public_key)
    assert st.has_current and not st.has_next and st.handshakes_completed == 1

    # Now traffic flows both ways, IPv4 and IPv6, many packets.
    for i in range(50):
        q = ipv4_udp(B_IP, A_IP, b"pong%d" % i)
        assert b.send(q) is None
        pump(a, b)
        assert a.delivered() == [(b.public_key, q)]
        r = ipv6_udp("fd00::1", "fd00::2", b"x" * i)
        assert a.send(r) is None
        pump(a, b)
        assert b.delivered() == [(a.public_key, r)]
    for t in (a, b):
        s = t.stats()
        assert not any(s["drops"].values()), s["drops"]
        assert s["handshakes_completed"] == 1
    sa = a.peer_stats(b.public_key)
    assert sa.tx_packets == 51 and sa.rx_packets == 50
    assert sa.tx_bytes > 0 and sa.rx_bytes > 0 and sa.last_handshake is not None


def test_psk_mismatch_never_completes():
    a, b = pair(psk=True)
    b.set_preshared_key(a.public_key, PresharedKey(bytes(32 * [7])))
    a.send(ipv4_udp(A_IP, B_IP))
    pump(a, b)
    # The initiation is fine (the PSK enters only at the response), the
    # response does not decrypt.
    assert a.drops["handshake_decrypt"] == 1
    assert a.peer_stats(b.public_key).handshakes_completed == 0
    assert b.delivered() == []


def test_wrong_responder_key_is_not_answered():
    a, b = pair()
    c = Tunnel(seed=99, address=b.address)  # same address, other identity
    c.add_peer(a.public_key, allowed_ips=["10.0.0.1/32"])
    a.send(ipv4_udp(A_IP, B_IP))
    [(_, init)] = a.outgoing()
    assert c.receive(init, a.address) == "bad_mac1"  # mac1 is keyed to b's public key
    assert c.outgoing() == []


def test_simultaneous_initiation_yields_one_session():
    a, b = pair()
    a.send(ipv4_udp(A_IP, B_IP, b"from a"))
    b.send(ipv4_udp(B_IP, A_IP, b"from b"))
    pump(a, b)
    # Each consumed the other's initiation, which replaced its own: both
    # responses are now stale, nothing is confirmed yet (as in the kernel).
    assert a.drops["unknown_index"] == 1 and b.drops["unknown_index"] == 1
    assert b.delivered() == [] and a.delivered() == []
    # The first retransmission (5 s + jitter) settles it.
    run(6000, a, b)
    assert [p for _, p in b.delivered()] == [ipv4_udp(A_IP, B_IP, b"from a")]
    assert [p for _, p in a.delivered()] == [ipv4_udp(B_IP, A_IP, b"from b")]
    sa, sb = a.peer_stats(b.public_key), b.peer_stats(a.public_key)
    assert sa.has_current and sb.has_current


def test_seeded_tunnels_are_reproducible():
    def run():
        a, b = pair(seed=5)
        a.send(ipv4_udp(A_IP, B_IP))
        return [d for _, d in a.outgoing()], str(a.public_key)

    assert run() == run()


def test_private_key_change_forces_new_handshake():
    a, b = pair()
    a.send(ipv4_udp(A_IP, B_IP))
    pump(a, b)
    b.delivered()
    new = PrivateKey.generate()
    a.private_key = new
    b.remove_peer(b.peers[0])  # the old identity
    b.add_peer(new.public_key, endpoint=a.address, allowed_ips=["10.0.0.1/32"])
    a.send(ipv4_udp(A_IP, B_IP, b"after"))
    out = a.outgoing()
    assert [len(d) for _, d in out] == [148]  # the old session no longer sends
    for _, d in out:
        b.receive(d, a.address)
    pump(a, b)
    assert [p for _, p in b.delivered()] == [ipv4_udp(A_IP, B_IP, b"after")]
