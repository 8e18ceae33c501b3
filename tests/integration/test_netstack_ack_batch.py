"""One ACK per receive batch (scripts/lwip-patches/0006, ns_stack.c): a
receiver's ACKs wait for the end of the loop round, at most
NS_ACK_BATCH_MAX segments, and the sender's slow start counts every byte
such a stretch ACK covers. Goodput figures: bench/e2e/race.py
(SPANZA_BENCH_ACK_BATCH=0 for lwIP's own ACK every second segment)."""

from __future__ import annotations

import errno
import time

import pytest

from spanza._ffi import ffi, lib
from tests.integration.test_netstack_loss import MiB, payload, send_b_to_a

DEFAULT = lib.NS_ACK_BATCH_DEFAULT


def wire_packets(wire) -> tuple[int, int]:
    """Packets the wire carried from A (the receiver: ACKs) and from B."""
    st = ffi.new("struct ns_wire_stats *")
    assert lib.ns_wire_get_stats(wire.ptr, st) == 0
    return int(st.packets[0]), int(st.packets[1])


def acks_per_segment(a, b, wire, port: int) -> float:
    a0, b0 = wire_packets(wire)
    send_b_to_a(a, b, wire, payload(8 * MiB), port)
    a1, b1 = wire_packets(wire)
    assert b1 - b0 > 8 * MiB // 1400
    return (a1 - a0) / (b1 - b0)


def test_a_batch_of_segments_gets_one_ack(pair, ack_batch):
    """lwIP answers every second segment: about one ACK per two data
    packets. Batched, the ACKs of a round go as one, and the data still
    arrives intact (send_b_to_a checks it)."""
    a, b, wire = pair
    assert lib.ns_tcp_set_ack_batch(0) == 0
    own = acks_per_segment(a, b, wire, 7201)
    assert lib.ns_tcp_set_ack_batch(DEFAULT) == 0
    batched = acks_per_segment(a, b, wire, 7202)
    assert own > 0.4
    assert batched < own / 2


def test_stretch_acks_do_not_slow_the_start(pair, ack_batch):
    """Slow start counted at most 2 segments per ACK (RFC 3465's L): with an
    ACK per batch of up to 16 segments, a transfer over a 20 ms wire,
    which spends its time in slow start, took twice as long as with lwIP's
    own ACKs. Every byte acked counts now: the two take about as long.
    Compared within the test, over a wire whose delay, not the CPU, sets
    the pace."""
    a, b, wire = pair
    wire.set_delay(20)

    def seconds(batch: int, port: int) -> float:
        assert lib.ns_tcp_set_ack_batch(batch) == 0
        t0 = time.monotonic()
        send_b_to_a(a, b, wire, payload(3 * MiB), port)
        return time.monotonic() - t0

    own = min(seconds(0, 7211), seconds(0, 7212))
    batched = min(seconds(DEFAULT, 7213), seconds(DEFAULT, 7214))
    assert batched < own * 1.35, (own, batched)


def test_derper_queue_with_batched_acks(pair, ack_batch):
    """The drop-oldest queue of derper on the data's way, ACKs batched at
    the largest setting: recovery still finds every loss without the RTO."""
    a, b, wire = pair
    assert lib.ns_tcp_set_ack_batch(lib.NS_ACK_BATCH_MAX) == 0
    assert lib.ns_wire_set_bottleneck(wire.ptr, 1, 32, 20) == 0
    st = send_b_to_a(a, b, wire, payload(8 * MiB), 7221)
    assert st["lost"] > 0
    assert st["fast_rexmit"] > 0
    assert st["rto"] == 0


@pytest.mark.parametrize("n", [-1, 65, 2**31 - 1])
def test_ack_batch_limits(pair, n):
    assert lib.ns_tcp_set_ack_batch(n) == -errno.EINVAL
