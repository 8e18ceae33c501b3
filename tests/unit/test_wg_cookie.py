"""The cookie mechanism under load (spec section 4)."""

from tests.unit.wgutil import A_IP, B_IP, ipv4_udp, pair, simulate

REKEY_TIMEOUT = 5000
JITTER = 334
A, B = 0, 1


def events(ev):
    return [(t, w, k) for t, w, k, _ in ev]


def cookied_pair():
    """a and b where b is under load and a holds the cookie b sent in reply
    to a's first initiation."""
    a, b = pair()
    b.set_under_load("force")
    a.initiate(b.public_key)
    b.receive(a.outgoing()[0][1], a.address)
    a.receive(b.outgoing()[0][1], b.address)
    return a, b


def test_forced_under_load_answers_with_cookie_then_retry_succeeds():
    a, b = pair()
    b.set_under_load("force")
    assert a.send(ipv4_udp(A_IP, B_IP, b"through cookies")) is None
    [(_, init1)] = a.outgoing()
    assert init1[132:148] == bytes(16)  # no cookie yet: mac2 is zero
    assert b.receive(init1, a.address) == "cookie_needed"
    [(to, reply)] = b.outgoing()
    assert to == a.address and len(reply) == 64 and reply[0] == 3
    assert reply[4:8] == init1[4:8]  # addressed to the initiation's sender index
    assert b.stats()["cookies_sent"] == 1
    assert b.peer_stats(a.public_key).handshake_state == "zeroed"  # nothing processed
    assert a.receive(reply, b.address) is None
    assert a.stats()["cookies_received"] == 1
    assert a.outgoing() == []  # no immediate retransmission
    # The retry (5 s + jitter) carries mac2 and goes through.
    ev = simulate(REKEY_TIMEOUT + JITTER, a, b)
    assert [k for _, _, k in events(ev)] == ["init", "resp", "data"]
    assert [p for _, p in b.delivered()] == [ipv4_udp(A_IP, B_IP, b"through cookies")]
    assert b.drops["cookie_needed"] == 1
    # Cookie replies never move endpoints or count as authenticated traffic.
    assert a.peer_stats(b.public_key).endpoint == b.address


def test_retry_carries_mac2():
    a, b = pair()
    b.set_under_load("force")
    a.send(ipv4_udp(A_IP, B_IP))
    b.receive(a.outgoing()[0][1], a.address)
    a.receive(b.outgoing()[0][1], b.address)
    a.advance(REKEY_TIMEOUT + JITTER)
    [(_, init2)] = a.outgoing()
    assert init2[132:148] != bytes(16)
    assert b.receive(init2, a.address) is None


def test_cookie_reply_is_used_once_and_must_authenticate():
    a, b = pair()
    b.set_under_load("force")
    a.initiate(b.public_key)
    [(_, init)] = a.outgoing()
    b.receive(init, a.address)
    [(_, reply)] = b.outgoing()
    bad = bytearray(reply)
    bad[40] ^= 1
    assert a.receive(bytes(bad), b.address) == "bad_cookie"
    assert a.receive(reply, b.address) is None
    assert a.receive(reply, b.address) == "bad_cookie"  # answers one mac1, once
    unknown = bytearray(reply)
    unknown[4:8] = b"\xff\xff\xff\xff"
    assert a.receive(bytes(unknown), b.address) == "unknown_index"
    assert a.stats()["cookies_received"] == 1


def test_response_under_load_gets_a_cookie_too():
    a, b = pair()
    a.set_under_load("force")  # the initiator is the busy one
    a.send(ipv4_udp(A_IP, B_IP))
    ev = simulate(2 * (REKEY_TIMEOUT + JITTER), a, b)
    kinds = [(w, k) for _, w, k in events(ev)]
    assert kinds[:3] == [(A, "init"), (B, "resp"), (A, "cookie")]
    assert (B, "resp") in kinds[3:] and kinds[-1] == (A, "data")
    assert [p for _, p in b.delivered()] == [ipv4_udp(A_IP, B_IP)]


def test_cookie_secret_rotates_every_two_minutes():
    a, b = cookied_pair()  # b's cookie secret made at t=0
    a.advance(REKEY_TIMEOUT)
    b.advance(REKEY_TIMEOUT)
    a.initiate(b.public_key)
    [(_, init)] = a.outgoing()
    assert b.receive(init, a.address) is None  # valid mac2
    b.outgoing()
    # Replaying that initiation passes the cookie gate as long as the
    # secret lives (and then fails on its timestamp)...
    b.advance(120_000 - b.now - 1)
    assert b.receive(init, a.address) == "stale_timestamp"
    # ... but once the secret is 120 s old it is replaced: mac2 no longer
    # verifies and a fresh cookie is offered.
    b.advance(1)
    assert b.receive(init, a.address) == "cookie_needed"
    [(_, reply)] = b.outgoing()
    assert reply[0] == 3


def test_cookie_expires_at_the_sender():
    a, b = cookied_pair()
    a.advance(115_000 - 1)
    a.initiate(b.public_key)
    assert a.outgoing()[0][1][132:148] != bytes(16)  # still used at 114.999 s
    a.advance(REKEY_TIMEOUT + 1)
    a.initiate(b.public_key)
    assert a.outgoing()[0][1][132:148] == bytes(16)  # forgotten after 115 s


def test_under_load_rate_limit_per_source():
    a, b = cookied_pair()
    inits = []
    for _ in range(8):
        a.initiate(b.public_key, force=True)
        inits += [d for _, d in a.outgoing()]
    results = [b.receive(d, a.address) for d in inits]
    # Burst of 5 passes the bucket (whatever happens next), then limited.
    assert results[5:] == ["rate_limited"] * 3
    assert all(r != "rate_limited" for r in results[:5])
    # Another source has its own bucket; 20 per second refill.
    b.advance(50)
    assert b.receive(inits[-1], a.address) != "rate_limited"


def test_auto_under_load_threshold():
    a, b = pair()
    b.set_under_load("auto", threshold=10)
    junk = bytes([1, 0, 0, 0]) + bytes(144)  # bad mac1, but it is load
    for _ in range(10):
        assert b.receive(junk, a.address) == "bad_mac1"
    assert not b.stats()["under_load"]
    a.initiate(b.public_key)
    [(_, init)] = a.outgoing()
    assert b.receive(init, a.address) == "cookie_needed"  # the 11th message in 1 s
    assert b.stats()["under_load"]
    b.outgoing()
    # Calm for more than a second: back to normal.
    b.advance(2001)
    a.advance(REKEY_TIMEOUT)
    a.initiate(b.public_key)
    assert b.receive(a.outgoing()[0][1], a.address) is None
