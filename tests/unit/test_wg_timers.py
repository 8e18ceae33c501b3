"""Every timer rule of the spec (section 5), on the virtual clock.

`simulate` runs two tunnels on one clock, delivering each datagram at once
and recording (time, sender, kind, lost); a = 0 (the initiator), b = 1."""

from spanza.wireguard import Tunnel
from tests.unit.wgutil import A_IP, B_IP, handshake, ipv4_udp, pair, simulate

REKEY_TIMEOUT = 5000
KEEPALIVE = 10000
REKEY_AFTER_TIME = 120_000
REJECT_AFTER_TIME = 180_000
JITTER = 334
REKEY_AFTER_MESSAGES = 2**60
REJECT_AFTER_MESSAGES = 2**64 - 2**13 - 1
A, B = 0, 1


def times(events, who, k):
    return [t for t, w, kk, _ in events if w == who and kk == k]


def session():
    """A pair with a session made at t=0 (a initiated) and settled: b's
    passive keepalive went out at 10 s. Clocks at 10 s."""
    a, b = pair()
    handshake(a, b)
    ev = simulate(KEEPALIVE, a, b)
    assert times(ev, B, "k") == [KEEPALIVE]
    return a, b


# ---- handshake_initiated / retransmit_handshake ----
def test_retries_with_jitter_then_give_up():
    a = Tunnel(seed=3)
    b = Tunnel(seed=4)  # never answers
    a.add_peer(b.public_key, endpoint=b.address, allowed_ips=["10.0.0.2/32"])
    assert a.send(ipv4_udp(A_IP, B_IP)) is None
    sent = [d for _, d in a.outgoing()]
    ev = simulate(300_000, a, lose=lambda *_: True)
    inits = [0] + times(ev, A, "init")
    assert [k for _, _, k, _ in ev] == ["init"] * 19  # nothing else, ever
    # 1 initiation + 19 retries: MAX_TIMER_HANDSHAKES = 90 / 5 = 18, "> 18" gives up.
    assert len(inits) == 20
    gaps = [y - x for x, y in zip(inits, inits[1:], strict=False)]
    assert all(REKEY_TIMEOUT <= g < REKEY_TIMEOUT + JITTER for g in gaps), gaps
    assert len(set(gaps)) > 5  # the jitter really varies
    # Gave up at the 20th expiry: the staged packet is dropped.
    assert a.drops["handshake_gave_up"] == 1
    assert a.peer_stats(b.public_key).staged == 0
    # New traffic starts a fresh cycle at once.
    assert a.send(ipv4_udp(A_IP, B_IP)) is None
    assert [d[0] for _, d in a.outgoing()] == [1]
    assert sent and sent[0][0] == 1


def test_retries_are_new_handshakes():
    a = Tunnel(seed=3)
    b = Tunnel(seed=4)
    a.add_peer(b.public_key, endpoint=b.address, allowed_ips=["10.0.0.2/32"])
    a.send(ipv4_udp(A_IP, B_IP))
    inits = [a.outgoing()[0][1]]
    for _ in range(3):
        a.advance(REKEY_TIMEOUT + JITTER)
        inits += [d for _, d in a.outgoing()]
    assert len(inits) == 4
    assert len({d[4:8] for d in inits}) == 4  # new sender index
    assert len({d[8:40] for d in inits}) == 4  # new ephemeral
    assert len({d[88:116] for d in inits}) == 4  # new timestamp


def test_retransmit_until_answered_then_stop():
    a, b = pair()
    a.send(ipv4_udp(A_IP, B_IP))
    # The first two initiations are lost.
    ev = simulate(60_000, a, b, lose=lambda t, w, k: w == A and k == "init" and t < 2 * REKEY_TIMEOUT)
    inits = times(ev, A, "init")
    assert len(inits) == 3, ev
    assert [p for _, p in b.delivered()] == [ipv4_udp(A_IP, B_IP)]
    st = a.peer_stats(b.public_key)
    assert st.handshake_attempts == 0 and st.handshakes_completed == 1
    assert st.last_handshake_ms == inits[-1]
    assert abs(st.last_handshake - (1_700_000_000 + inits[-1] / 1000)) < 0.001


# ---- initiation rate limits ----
def test_initiation_send_rate_limit():
    a, b = pair()
    a.initiate(b.public_key)
    assert len(a.outgoing()) == 1
    a.advance(REKEY_TIMEOUT - 1)
    a.initiate(b.public_key)
    a.send(ipv4_udp(A_IP, B_IP))
    assert a.outgoing() == []
    a.advance(1)
    a.initiate(b.public_key)
    assert [d[0] for _, d in a.outgoing()] == [1]


def test_responder_does_not_initiate_while_confirming():
    a, b = pair()
    a.initiate(b.public_key)
    [(_, init)] = a.outgoing()
    b.receive(init, a.address)
    b.outgoing()  # the response (lost)
    b.advance(REKEY_TIMEOUT - 1)
    assert b.send(ipv4_udp(B_IP, A_IP)) is None
    assert b.outgoing() == []  # staged: the response set the 5 s mark
    b.advance(1)
    assert b.send(ipv4_udp(B_IP, A_IP)) is None
    assert [d[0] for _, d in b.outgoing()] == [1]


def test_initiation_consume_flood_limit():
    a, b = pair()
    a.set_flags(whiten_timestamps=False)  # timestamps then differ by the ms
    a.initiate(b.public_key, force=True)
    a.advance(10)
    a.initiate(b.public_key, force=True)
    a.advance(10)
    a.initiate(b.public_key, force=True)
    i1, i2, i3 = [d for _, d in a.outgoing()]
    assert b.receive(i1, a.address) is None
    b.advance(10)
    assert b.receive(i2, a.address) == "initiation_flood"  # 10 ms after the last one
    b.advance(10)
    assert b.receive(i3, a.address) is None  # 20 ms: allowed again
    # A replayed (older) initiation is stale, whatever the time.
    b.advance(1000)
    assert b.receive(i2, a.address) == "stale_timestamp"


# ---- data_sent / new_handshake, any_authenticated_packet_received ----
def test_new_handshake_when_data_gets_no_answer():
    a, b = session()
    a.send(ipv4_udp(A_IP, B_IP, b"unanswered"))
    t0 = a.now
    ev = simulate(30_000, a, b, lose=lambda t, w, k: w == B)
    first = times(ev, A, "init")[0]
    assert t0 + KEEPALIVE + REKEY_TIMEOUT <= first < t0 + KEEPALIVE + REKEY_TIMEOUT + JITTER


def test_answer_cancels_new_handshake():
    a, b = session()
    a.send(ipv4_udp(A_IP, B_IP, b"q"))
    ev = simulate(60_000, a, b)
    assert times(ev, B, "k") == [a.now - 60_000 + KEEPALIVE]  # b's passive answer
    assert times(ev, A, "init") == []


# ---- data_received / send_keepalive ----
def test_passive_keepalive_after_receiving_data():
    a, b = pair()
    handshake(a, b)  # b received data at t=0
    ev = simulate(60_000, a, b)
    assert [(t, w, k) for t, w, k, _ in ev] == [(KEEPALIVE, B, "k")]


def test_no_keepalive_if_we_answered():
    a, b = pair()
    handshake(a, b)
    simulate(3000, a, b)
    b.send(ipv4_udp(B_IP, A_IP, b"reply"))
    ev = simulate(60_000, a, b)
    assert times(ev, B, "data") == [3000]
    assert times(ev, B, "k") == []
    assert times(ev, A, "k") == [3000 + KEEPALIVE]  # a now owes the answer


def test_need_another_keepalive():
    a, b = pair()
    handshake(a, b)
    simulate(5000, a, b)
    a.send(ipv4_udp(A_IP, B_IP, b"second"))  # while b's keepalive timer is pending
    ev = simulate(60_000, a, b)
    assert times(ev, B, "k") == [KEEPALIVE, 2 * KEEPALIVE]


# ---- persistent keepalive, any_authenticated_packet_traversal ----
def test_persistent_keepalive():
    a, b = session()
    t0 = a.now
    a.set_persistent_keepalive(b.public_key, 25)
    ev = simulate(60_000, a, b)
    assert times(ev, A, "k") == [t0, t0 + 25_000, t0 + 50_000]  # at once, then every 25 s
    # Every authenticated packet, sent or received, re-arms it: a's data
    # at t1 and b's passive keepalive answering it at t1 + 10 s.
    simulate(5000, a, b)
    t1 = a.now
    a.send(ipv4_udp(A_IP, B_IP))
    ev = simulate(40_000, a, b)
    assert times(ev, B, "k") == [t1 + KEEPALIVE]
    assert times(ev, A, "k") == [t1 + KEEPALIVE + 25_000]
    a.set_persistent_keepalive(b.public_key, 0)
    ev = simulate(100_000, a, b)
    assert times(ev, A, "k") == []


def test_persistent_keepalive_without_session_handshakes_first():
    a, b = pair()
    a.set_persistent_keepalive(b.public_key, 10)
    [(_, d)] = a.outgoing()
    assert d[0] == 1  # the keepalive waits, staged, for a session
    assert a.peer_stats(b.public_key).staged == 1
    b.receive(d, a.address)
    a.receive(b.outgoing()[0][1], b.address)
    assert [len(d) for _, d in a.outgoing()] == [32]


# ---- session age ----
def test_rekey_after_time_only_by_initiator():
    a, b = session()
    simulate(REKEY_AFTER_TIME - 1 - a.now, a, b)
    a.send(ipv4_udp(A_IP, B_IP))
    ev = simulate(0, a, b)
    assert times(ev, A, "init") == []
    simulate(1, a, b)
    a.send(ipv4_udp(A_IP, B_IP))
    ev = simulate(0, a, b)
    assert times(ev, A, "data") == [REKEY_AFTER_TIME] and times(ev, A, "init") == [REKEY_AFTER_TIME]
    # The responder never rekeys on age: b (after a's new session, its own
    # keys are fresh; use a pair where b's session is old).
    a2, b2 = session()
    simulate(REKEY_AFTER_TIME + 1000 - a2.now, a2, b2)
    b2.send(ipv4_udp(B_IP, A_IP))
    ev = simulate(0, a2, b2)
    assert times(ev, B, "data") and not times(ev, B, "init")


def test_last_minute_rekey_on_receive():
    a, b = session()
    last_minute = REJECT_AFTER_TIME - KEEPALIVE - REKEY_TIMEOUT  # 165 s
    simulate(last_minute - 1 - a.now, a, b)
    b.send(ipv4_udp(B_IP, A_IP))
    ev = simulate(0, a, b, lose=lambda t, w, k: k == "init")
    assert times(ev, A, "init") == []
    simulate(1, a, b)
    b.send(ipv4_udp(B_IP, A_IP))
    ev = simulate(1000, a, b, lose=lambda t, w, k: k == "init")
    assert times(ev, A, "init") == [last_minute]
    b.send(ipv4_udp(B_IP, A_IP))
    ev = simulate(0, a, b)
    assert times(ev, A, "init") == []  # once per session


def test_reject_after_time():
    a, b = session()
    simulate(REJECT_AFTER_TIME - 1 - a.now, a, b)
    b.send(ipv4_udp(B_IP, A_IP, b"late"))
    [(_, late)] = b.outgoing()
    simulate(1, a, b)
    assert a.receive(late, b.address) == "key_expired"
    assert b.send(ipv4_udp(B_IP, A_IP, b"later")) is None
    [(_, d)] = b.outgoing()
    assert d[0] == 1  # dead for sending: staged behind a handshake
    assert b.peer_stats(a.public_key).staged == 1


# ---- message counters ----
def test_rekey_after_messages_either_role():
    a, b = session()  # b is the responder, 10 s after its response
    # Rekey when the next counter is above REKEY_AFTER_MESSAGES.
    b._set_send_counter(a.public_key, REKEY_AFTER_MESSAGES - 1)
    b.send(ipv4_udp(B_IP, A_IP))
    ev = simulate(0, a, b)
    assert times(ev, B, "init") == []  # next counter == limit: not yet above
    b.send(ipv4_udp(B_IP, A_IP))
    ev = simulate(0, a, b)
    assert times(ev, B, "data") and times(ev, B, "init")
    assert b.peer_stats(a.public_key).handshakes_completed == 2


def test_reject_after_messages():
    a, b = session()
    a._set_send_counter(b.public_key, REJECT_AFTER_MESSAGES - 1)
    a.send(ipv4_udp(A_IP, B_IP, b"last"))
    [(_, d), (_, init)] = a.outgoing()
    assert int.from_bytes(d[8:16], "little") == REJECT_AFTER_MESSAGES - 1
    assert init[0] == 1  # far above REKEY_AFTER_MESSAGES: rekey at once
    assert b.receive(d, a.address) is None  # the receiver takes the very last counter
    assert [p for _, p in b.delivered()] == [ipv4_udp(A_IP, B_IP, b"last")]
    a.send(ipv4_udp(A_IP, B_IP, b"over"))
    assert a.outgoing() == []  # no counter left: staged until the new session
    assert a.peer_stats(b.public_key).staged == 1
    b.receive(init, a.address)
    a.receive(b.outgoing()[0][1], b.address)
    [(_, d)] = a.outgoing()
    assert int.from_bytes(d[8:16], "little") == 0
    b.receive(d, a.address)
    assert [p for _, p in b.delivered()] == [ipv4_udp(A_IP, B_IP, b"over")]


# ---- session_derived / zero_key_material ----
def test_keys_zeroed_after_three_reject_times():
    a, b = session()
    simulate(3 * REJECT_AFTER_TIME - 1 - a.now, a, b)
    for x, y in ((a, b), (b, a)):
        st = x.peer_stats(y.public_key)
        assert st.has_current
    simulate(1, a, b)
    for x, y in ((a, b), (b, a)):
        st = x.peer_stats(y.public_key)
        assert not st.has_current and not st.has_previous and not st.has_next
        assert st.handshake_state == "zeroed"
    handshake(a, b)  # and a new session starts from scratch


# ---- keypair slots: previous / current / next, responder confirmation ----
def test_keypair_rotation_and_confirmation():
    a, b = session()
    old_packet = ipv4_udp(A_IP, B_IP, b"old key")
    a.send(old_packet)
    [(_, in_flight)] = a.outgoing()  # encrypted with the first session
    a.initiate(b.public_key, force=True)
    [(_, init)] = a.outgoing()
    b.receive(init, a.address)
    [(_, resp)] = b.outgoing()
    sb = b.peer_stats(a.public_key)
    assert sb.has_next and sb.has_current and not sb.has_previous
    # Unconfirmed: b keeps sending with the old session, a still takes it.
    b.send(ipv4_udp(B_IP, A_IP, b"on old"))
    [(_, d)] = b.outgoing()
    assert a.receive(d, b.address) is None
    assert a.receive(resp, b.address) is None
    sa = a.peer_stats(b.public_key)
    assert sa.has_current and sa.has_previous and not sa.has_next
    [(_, confirm)] = a.outgoing()
    assert len(confirm) == 32  # the initiator confirms at once (keepalive)
    # The packet still in flight decrypts with b's current (old) keypair...
    assert b.receive(in_flight, a.address) is None
    assert b.receive(confirm, a.address) is None
    sb = b.peer_stats(a.public_key)
    assert sb.has_current and sb.has_previous and not sb.has_next
    assert sb.handshakes_completed == 2
    assert [p for _, p in b.delivered()] == [old_packet]
    # ... and b now sends on the new session, a's previous still decrypts old ones.
    b.send(ipv4_udp(B_IP, A_IP, b"on new"))
    [(_, d)] = b.outgoing()
    assert a.receive(d, b.address) is None
    assert [p for _, p in a.delivered()][-1] == ipv4_udp(B_IP, A_IP, b"on new")


def test_initiator_with_unconfirmed_next():
    """An initiator that is also a responder: `next` becomes `previous`."""
    a, b = session()
    # b initiates (b's own session as initiator), a answers: a has `next`.
    b.initiate(a.public_key, force=True)
    [(_, init)] = b.outgoing()
    a.receive(init, b.address)
    a.outgoing()  # response lost
    assert a.peer_stats(b.public_key).has_next
    # Before that is confirmed, a initiates and completes its own handshake.
    a.initiate(b.public_key, force=True)
    [(_, init2)] = a.outgoing()
    b.advance(REKEY_TIMEOUT)
    b.receive(init2, a.address)
    [(_, resp)] = b.outgoing()
    a.receive(resp, b.address)
    sa = a.peer_stats(b.public_key)
    assert sa.has_current and sa.has_previous and not sa.has_next
