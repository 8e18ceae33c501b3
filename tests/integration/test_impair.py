"""Impairments (spanza.impair) on real hops: exact, seeded, changeable while
traffic flows, and lifted cleanly."""

from __future__ import annotations

import math
import time

import pytest

from spanza import DerpClient, DerpServer, PrivateKey
from spanza.errors import ConfigError
from spanza.impair import ImpairStats

N = 10_000
BATCH = 500


@pytest.fixture(scope="module")
def relay():
    with DerpServer() as server:
        yield server


@pytest.fixture
def clients(relay):
    with (
        DerpClient(relay.url, PrivateKey.generate()) as a,
        DerpClient(relay.url, PrivateKey.generate()) as b,
    ):
        a.wait_connected(10)
        b.wait_connected(10)
        yield a, b


def recv_all(c: DerpClient, quiet: float = 0.3) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(c.recv(timeout=quiet)[1])
        except TimeoutError:
            return out


def send_paced(a: DerpClient, b: DerpClient, payloads: list[bytes], imp=None) -> list[bytes]:
    """Sends in batches small enough for every queue on the way, waiting
    for each batch to reach b's impairment (or b) before the next."""
    got: list[bytes] = []
    for i in range(0, len(payloads), BATCH):
        for p in payloads[i : i + BATCH]:
            a.send(b.public_key, p)
        want = min(i + BATCH, len(payloads))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if imp is not None and imp.stats.packets >= want:
                break
            try:
                got.append(b.recv(timeout=0.05)[1])
            except TimeoutError:
                if imp is None and len(got) >= want:
                    break
        got += recv_all(b, 0.05)
    return got


def run_loss(a, b, seed: int) -> tuple[ImpairStats, list[bytes]]:
    with b.impair(loss=0.25, seed=seed, direction="in") as imp:
        got = send_paced(a, b, [i.to_bytes(4, "big") for i in range(N)], imp)
        got += recv_all(b)
    return imp.stats, got


def test_loss_is_binomial_and_repeats_with_the_seed(clients):
    a, b = clients
    st1, got1 = run_loss(a, b, seed=42)
    assert st1.packets == N
    # 25 % of 10,000: mean 2500, sd 43.3; 5 sd either side
    sd = math.sqrt(N * 0.25 * 0.75)
    assert abs(st1.dropped_loss - N * 0.25) < 5 * sd, st1
    assert st1.delivered == N - st1.dropped_loss == len(got1)
    st2, got2 = run_loss(a, b, seed=42)
    assert st2.dropped_loss == st1.dropped_loss
    assert got2 == got1  # the very same packets survived
    _, got3 = run_loss(a, b, seed=43)
    assert got3 != got1


def test_bursty_loss_keeps_the_average_and_comes_in_runs(clients):
    a, b = clients
    with b.impair(loss=0.2, burst=8, seed=5, direction="in") as imp:
        got = send_paced(a, b, [i.to_bytes(4, "big") for i in range(N)], imp)
    st = imp.stats
    assert st.packets == N and st.delivered == len(got)
    assert 0.12 < st.dropped_loss / N < 0.28, st
    # mean run of consecutive losses near 8 (random loss would give 1.25)
    seen = {int.from_bytes(p, "big") for p in got}
    runs, cur = [], 0
    for i in range(N):
        if i in seen:
            if cur:
                runs.append(cur)
            cur = 0
        else:
            cur += 1
    assert 5 < sum(runs) / len(runs) < 12


def test_gilbert_elliott_chain_set_directly(clients):
    a, b = clients
    # p = 0.05 good->bad, r = 0.25 bad->good: 1/6 of packets in the bad state,
    # where all are lost; none in the good state
    with b.impair(gilbert=(0.05, 0.25, 1.0, 0.0), seed=8, direction="in") as imp:
        got = send_paced(a, b, [i.to_bytes(4, "big") for i in range(5000)], imp)
    st = imp.stats
    assert st.dropped_loss == st.bad_state_packets == 5000 - len(got)
    assert 0.12 < st.bad_state_packets / 5000 < 0.22, st
    with pytest.raises(ConfigError, match="burst and gilbert"):
        b.impair(loss=0.1, burst=3, gilbert=(0.1, 0.1, 1, 0))
    with pytest.raises(ConfigError, match="too short"):
        b.impair(loss=0.9, burst=1)


def test_duplicate_corrupt_mtu_blackhole(clients):
    a, b = clients
    payloads = [bytes([i % 251]) * 100 for i in range(1000)]
    with b.impair(duplicate=0.1, seed=1, direction="in") as imp:
        got = send_paced(a, b, payloads, imp)
    assert len(got) == 1000 + imp.stats.duplicated and 50 < imp.stats.duplicated < 150

    with a.impair(corrupt=0.2, seed=2, direction="out") as imp:
        got = send_paced(a, b, payloads, None)
    assert len(got) == 1000
    bad = [(p, q) for p, q in zip(payloads, got, strict=True) if p != q]
    assert len(bad) == imp.stats.corrupted and 120 < len(bad) < 280
    for p, q in bad:  # exactly one bit flipped
        assert sum((x ^ y).bit_count() for x, y in zip(p, q, strict=True)) == 1

    with b.impair(mtu=60, direction="in") as imp:
        got = send_paced(a, b, [b"x" * 60, b"y" * 61, b"z" * 10], imp)
    assert got == [b"x" * 60, b"z" * 10] and imp.stats.dropped_mtu == 1

    with b.impair(blackhole=True) as imp:
        a.send(b.public_key, b"lost")
        time.sleep(0.2)
        assert recv_all(b, 0.1) == []
    assert imp.stats.dropped_blackhole == 1 and not imp.active
    a.send(b.public_key, b"back")  # lifted: the link works again
    assert b.recv(timeout=5)[1] == b"back"


def test_delay_holds_packets_in_order_and_lift_releases_them(clients):
    a, b = clients
    imp = b.impair(delay=0.05, jitter=0.02, seed=3, direction="in")
    t0 = time.monotonic()
    for i in range(50):
        a.send(b.public_key, i.to_bytes(4, "big"))
    first = b.recv(timeout=5)[1]
    assert time.monotonic() - t0 >= 0.025  # delay - jitter, at least
    got = [first] + send_paced(a, b, [], None) + recv_all(b)
    assert [int.from_bytes(p, "big") for p in got] == list(range(50))  # order kept
    assert imp.stats.delayed == 50
    # a long delay, lifted while packets are held: they come out at once
    imp = b.impair(delay=30, direction="in")
    for i in range(5):
        a.send(b.public_key, bytes([i]))
    deadline = time.monotonic() + 5
    while imp.stats.held < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert imp.stats.held == 5
    imp.lift()
    assert [b.recv(timeout=2)[1] for _ in range(5)] == [bytes([i]) for i in range(5)]


def test_reorder_overtakes_held_packets(clients):
    a, b = clients
    with b.impair(delay=0.05, reorder=0.3, seed=9, direction="in") as imp:
        for i in range(200):
            a.send(b.public_key, i.to_bytes(4, "big"))
        time.sleep(0.2)
        got = [int.from_bytes(p, "big") for p in recv_all(b)]
    assert sorted(got) == list(range(200))
    assert got != list(range(200)) and imp.stats.reordered > 0


@pytest.mark.parametrize("policy", ["tail", "head"])
def test_rate_limit_queue_policy(clients, policy):
    a, b = clients
    # 100 packets of 1000 bytes at 800 kbit/s (10 ms each) into a 10-packet queue
    with a.impair(rate=800_000, queue=10, queue_policy=policy, direction="out") as imp:
        for i in range(100):
            a.send(b.public_key, i.to_bytes(4, "big") + bytes(996))
        time.sleep(0.4)
        got = [int.from_bytes(p[:4], "big") for p in recv_all(b)]
    assert imp.stats.dropped_queue == 100 - len(got) > 80
    if policy == "tail":
        assert got == list(range(len(got)))  # the first ones got through
    else:
        assert got[-1] == 99 and got == sorted(got) and got[0] > 50  # the newest pushed the oldest out


def test_settings_change_while_traffic_flows(clients):
    a, b = clients
    imp1 = b.impair(loss=1.0, direction="in")
    send_paced(a, b, [b"1"] * 100, imp1)
    imp2 = b.impair(loss=0.0, direction="in")  # replaces imp1 in place
    got = send_paced(a, b, [b"2"] * 100, imp2)
    assert imp1.stats.dropped_loss == 100 and not imp1.active
    assert got == [b"2"] * 100 and imp2.stats.packets == 100
    b.clear_impairments()
    assert not imp2.active and b.impairments() == []


def test_bad_settings_say_what_to_fix(clients):
    a, _ = clients
    with pytest.raises(ConfigError, match="loss"):
        a.impair(loss=10)
    with pytest.raises(ConfigError, match="queue_policy"):
        a.impair(rate=1e6, queue_policy="random")
    with pytest.raises(ConfigError, match="direction"):
        a.impair(direction="sideways")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="hop"):
        a.impair(hop="udp")


def test_wire_loss_tcp_transfer_is_intact():
    import hashlib
    import os
    import threading

    from spanza.netstack import wired_pair

    ha, hb, wire = wired_pair("10.9.0.1/24", "10.9.0.2/24")
    try:
        data = os.urandom(1 << 20)
        lst = hb.listen(5001)
        out = {}

        def serve():
            s, _ = lst.accept()
            s.sendall(data)
            s.close()

        t = threading.Thread(target=serve)
        t.start()
        with wire.impair(loss=0.02, seed=4) as imp:
            c = ha.connect(("10.9.0.2", 5001), timeout=30)
            h, n = hashlib.sha256(), 0
            while chunk := c.recv(1 << 16):
                h.update(chunk)
                n += len(chunk)
            c.close()
            out["sha"] = h.hexdigest()
        t.join(10)
        lst.close()
        assert n == len(data) and out["sha"] == hashlib.sha256(data).hexdigest()
        assert imp.stats.dropped_loss > 0
    finally:
        ha.close()
        hb.close()
        wire.close()


def test_device_udp_blackhole_stops_the_tunnel_and_lifting_restores_it(make_peer):
    from spanza.scenario import connect

    a = make_peer("192.168.4.1/24", mode="gateway")
    b = make_peer("192.168.4.2/24", mode="gateway")
    connect(a, b)
    assert a.device.ping("192.168.4.2", timeout=5)
    with (
        a.device.impair(blackhole=True, direction="out") as imp,
        pytest.raises(TimeoutError),
    ):
        a.device.ping("192.168.4.2", count=1, timeout=0.5)
    assert imp.stats.dropped_blackhole >= 1
    assert a.device.ping("192.168.4.2", timeout=5)
    with (
        b.gateway.impair(hop="udp", blackhole=True) as imp2,
        pytest.raises(TimeoutError),
    ):
        a.device.ping("192.168.4.2", count=1, timeout=0.5)
    assert imp2.stats.dropped_blackhole >= 1
    assert a.device.ping("192.168.4.2", timeout=5)


def test_impair_fixture_lifts_at_the_end(peer_pair, impair):
    a, b = peer_pair.a, peer_pair.b
    imp = impair(a, blackhole=True)
    with pytest.raises(TimeoutError):
        a.device.ping(b.address, count=1, timeout=0.5)
    assert imp.active and imp.stats.dropped_blackhole >= 1
    # (the fixture lifts it at teardown: the session relay's peers stay usable)
