"""A receiver's ACKs as Linux sends them (scripts/lwip-patches/0007 with
ns_stack.c's ACK per batch): duplicate ACKs after the third of a hole wait
for the end of the receive batch (SACK compression), and a window update
leaves only when it at least doubles the window still open, at once when
the window was closed. Fewer ACKs matter through a relay bound by its work
per packet (derper); figures: bench/e2e/race.py, `derp_packets_received`
in derper's /debug/varz."""

from __future__ import annotations

import hashlib
import threading
import time

from spanza._ffi import ffi, lib
from tests.integration.netstack_helpers import A4, parse
from tests.integration.test_netstack_ack_batch import DEFAULT
from tests.integration.test_netstack_loss import MiB, payload, send_b_to_a

CAPTURE = 1 << 16  # packets kept by the wire: all of these transfers
MSS = 1380  # lwipopts.h's TCP_MSS


def tcp(pkt: bytes) -> tuple[int, int, int, int]:
    """(seq, ack, window field, payload length) of a captured segment."""
    return parse(pkt).tcp


def duplicate_acks(packets: list[tuple[int, bytes]], hole: int) -> tuple[int, int]:
    """(ACKs from A that ask for the hole, B's segments above the hole
    before its retransmission) in a capture; hole: the index among B's
    segments with payload of the one the wire dropped (the capture has
    only what the wire let through)."""
    segs = [(side, tcp(p)) for side, p in packets]
    data = [t for side, t in segs if side == 1 and t[3] > 0]
    seq, _, _, length = data[hole - 1]
    hole_seq = (seq + length) & 0xFFFFFFFF
    above = 0
    for seq, _, _, _ in data[hole:]:
        if seq == hole_seq:  # the retransmission
            break
        above += 1
    asks = sum(1 for side, t in segs if side == 0 and t[3] == 0 and t[1] == hole_seq)
    return asks, above


def one_hole(pair, batch: int, port: int) -> tuple[int, int, dict[str, int]]:
    a, b, wire = pair
    assert lib.ns_tcp_set_ack_batch(batch) == 0
    hole = 200
    idx = ffi.new("uint32_t[]", [hole])
    assert lib.ns_wire_drop_list(wire.ptr, 1, idx, 1) == 0
    wire.capture(CAPTURE)
    st = send_b_to_a(a, b, wire, payload(2 * MiB), port)
    asks, above = duplicate_acks(wire.take(), hole)
    return asks, above, st


def test_lwip_answers_each_segment_above_a_hole(pair, ack_batch):
    """Without the ACK per batch, lwIP's own receiver: a duplicate ACK
    for every segment that arrives above the hole (the count this test
    file's other checks are measured against)."""
    asks, above, st = one_hole(pair, 0, 7501)
    assert st["lost"] == 1 and st["rto"] == 0
    assert above >= 8
    assert asks >= above


def test_duplicate_acks_after_the_third_wait_for_the_batch(pair, ack_batch):
    """The first three duplicates of a hole leave at once (fast retransmit
    needs them); the segments after them share their batch's ACK, which
    carries the newest SACK blocks. The hole is still found and filled by
    fast retransmit, not the RTO."""
    asks, above, st = one_hole(pair, DEFAULT, 7502)
    assert st["lost"] == 1 and st["rto"] == 0
    assert st["fast_rexmit"] == 1
    assert above >= 8
    assert 3 <= asks <= above // 2, (asks, above)


def test_derpers_queue_costs_a_fraction_of_the_acks(pair, ack_batch):
    """derper's drop-oldest queue on the data's way: lwIP's receiver sent
    two ACKs for three data packets, the ACK per batch still one for two
    (the duplicates above each hole); now about one for ten, and every
    loss is still recovered without the RTO."""
    a, b, wire = pair
    assert lib.ns_wire_set_bottleneck(wire.ptr, 1, 32, 20) == 0

    def ratio(batch: int, port: int) -> tuple[float, dict[str, int]]:
        assert lib.ns_tcp_set_ack_batch(batch) == 0
        before = wire.stats()["packets"]
        st = send_b_to_a(a, b, wire, payload(8 * MiB), port)
        after = wire.stats()["packets"]
        return (after[0] - before[0]) / (after[1] - before[1]), st

    own, st_own = ratio(0, 7511)
    batched, st = ratio(DEFAULT, 7512)
    assert st_own["lost"] > 0 and st["lost"] > 0
    assert st["rto"] == 0 and st["fast_rexmit"] > 0
    assert own > 0.5
    assert batched < own / 3, (own, batched)


def test_a_closed_window_reopens_with_an_update(pair):
    """The reader stops until the sender has filled the window, then reads
    on: the receiver itself announces the reopened window (a pure ACK from
    A before anything more from B); the sender does not wait for its
    persist timer's probe (1.5 s and up). Then the rest arrives intact."""
    a, b, wire = pair
    data = payload(4 * MiB)
    lst = a.listen(7521)
    c = b.connect((A4, 7521), timeout=5)
    s, _ = lst.accept()
    s.settimeout(20)
    c.settimeout(20)
    sender = threading.Thread(target=c.sendall, args=(data,))
    sender.start()
    # The window fills: A announces less than a segment (the window field
    # counts 128-byte units) and B stops (bounded: the window and the
    # socket buffers are a few MiB).
    wire.capture(CAPTURE)
    wnd_a, quiet = None, 0
    for _ in range(1000):
        packets = wire.take()
        for side, pkt in packets:
            if side == 0:
                wnd_a = tcp(pkt)[2] * 128
        quiet = 0 if any(side == 1 for side, _ in packets) else quiet + 1
        if wnd_a is not None and wnd_a < MSS and quiet >= 5:
            break
        time.sleep(0.01)
    assert wnd_a is not None and wnd_a < MSS and quiet >= 5, "the window never closed"
    h = hashlib.sha256()

    def read_all() -> None:
        n = 0
        while n < len(data) and (chunk := s.recv(MiB)):
            h.update(chunk)
            n += len(chunk)

    reader = threading.Thread(target=read_all)
    reader.start()
    first: tuple[int, bytes] | None = None
    for _ in range(300):  # up to 3 s, twice the first persist probe's wait
        if packets := wire.take():
            first = packets[0]
            break
        time.sleep(0.005)
    reader.join(20)
    sender.join(20)
    for x in (c, s, lst):
        x.close()
    assert first is not None, "nothing on the wire once the reader read on"
    side, pkt = first
    _, _, wnd, length = tcp(pkt)
    assert (side, length) == (0, 0), "the first packet after the read is not A's window update"
    assert wnd > 0
    assert h.hexdigest() == hashlib.sha256(data).hexdigest()
