"""TCP loss recovery (scripts/lwip-patches) on the memory wire with crafted
loss: derper's drop-oldest queue, holes in one window, a lost tail. The
figures (goodput, longest stall) are in bench/tcp_loss.py; these tests
assert what recovered the data (lwIP's recovery counters), and that it
arrived intact."""

from __future__ import annotations

import hashlib
import socket
import threading

from spanza._ffi import ffi, lib
from tests.integration.netstack_helpers import A4

MiB = 1 << 20


def recovery() -> dict[str, int]:
    st = ffi.new("struct ns_tcp_recovery *")
    assert lib.ns_tcp_recovery_stats(st) == 0
    return {k: int(getattr(st, k)) for k, _ in ffi.typeof("struct ns_tcp_recovery").fields}


def payload(n: int) -> bytes:
    block = hashlib.sha256(b"spanza").digest() * 2048  # 64 KiB
    return (block * (n // len(block) + 1))[:n]


def send_b_to_a(a, b, wire, data: bytes, port: int, *, prelude: bytes = b"") -> dict[str, int]:
    """Sends prelude (echoed back, so RTT samples exist) then data from B to
    A; returns lwIP's recovery counters over the data, and the wire's losses."""
    lst = a.listen(port)
    c = b.connect((A4, port), timeout=5)
    s, _ = lst.accept()
    s.settimeout(20)
    c.settimeout(20)
    if prelude:
        c.sendall(prelude)
        got = b""
        while len(got) < len(prelude):
            got += s.recv(65536)
        s.sendall(got)
        back = b""
        while len(back) < len(prelude):
            back += c.recv(65536)
    before = recovery()

    def send() -> None:
        c.sendall(data)
        c.shutdown(socket.SHUT_WR)

    t = threading.Thread(target=send)
    t.start()
    h, n = hashlib.sha256(), 0
    while chunk := s.recv(MiB):
        h.update(chunk)
        n += len(chunk)
    t.join(20)
    after = recovery()
    for x in (c, s, lst):
        x.close()
    assert (n, h.hexdigest()) == (len(data), hashlib.sha256(data).hexdigest())
    out = {k: after[k] - before[k] for k in after}
    st = ffi.new("struct ns_wire_stats *")
    assert lib.ns_wire_get_stats(wire.ptr, st) == 0
    out["lost"] = int(st.lost[1])
    return out


def test_loss_hooks_refuse_bad_settings(pair):
    _, _, wire = pair
    assert lib.ns_wire_set_bottleneck(wire.ptr, 2, 32, 10) < 0  # no side 2
    assert lib.ns_wire_set_bottleneck(wire.ptr, 1, 32, 0) < 0  # a queue that never drains
    idx = ffi.new("uint32_t[]", [5, 3])
    assert lib.ns_wire_drop_list(wire.ptr, 1, idx, 2) < 0  # not ascending
    assert lib.ns_wire_set_bottleneck(wire.ptr, 1, 0, 0) == 0  # off


def test_16_mib_through_derpers_drop_oldest_queue_recovers_without_rto(pair):
    """derper keeps 32 packets per client and drops the oldest: a window
    sent in one burst loses its head. SACK recovery resends the holes; no
    retransmission time-out fires."""
    a, b, wire = pair
    assert lib.ns_wire_set_bottleneck(wire.ptr, 1, 32, 20) == 0
    st = send_b_to_a(a, b, wire, payload(16 * MiB), 7100)
    assert st["lost"] > 0  # the queue did drop
    assert st["rto"] == 0
    assert st["fast_rexmit"] > 0
    assert st["sack_rexmit"] + st["partial_ack"] > 0


def test_two_holes_in_one_window_are_one_recovery(pair):
    """Reno left recovery on the first partial ACK and needed three more
    duplicates (or the RTO) for the second hole; NewReno/SACK resend both
    in one episode."""
    a, b, wire = pair
    idx = ffi.new("uint32_t[]", [100, 104])  # indices count segments with payload
    assert lib.ns_wire_drop_list(wire.ptr, 1, idx, 2) == 0
    st = send_b_to_a(a, b, wire, payload(2 * MiB), 7101)
    assert st["lost"] == 2
    assert st["rto"] == 0
    assert st["fast_rexmit"] == 1
    assert st["sack_rexmit"] + st["partial_ack"] >= 1


def test_lost_tail_is_probed_not_timed_out(pair):
    """The last segments of a burst lost: no later segment makes duplicate
    ACKs, so Reno waited for the RTO. A tail loss probe resends the last
    segment after about 2 * SRTT; its SACK shows the hole, which RACK marks
    lost (the probe, alone on the wire, comes back faster than the burst
    did: its ACK still counts, as the original's if not as its own)."""
    a, b, wire = pair
    data = payload(64 * 1380)  # 64 full segments, after an echo that yields RTT samples
    prelude = b"p" * 100
    first = 1  # after the prelude's segment
    idx = ffi.new("uint32_t[]", [first + 62, first + 63])
    assert lib.ns_wire_drop_list(wire.ptr, 1, idx, 2) == 0
    st = send_b_to_a(a, b, wire, data, 7102, prelude=prelude)
    assert st["lost"] == 2
    assert st["rto"] == 0
    assert st["tlp"] >= 1
    assert st["rack_lost"] >= 1 and st["sack_rexmit"] >= 1, st


def test_lost_probe_and_segment_fall_back_to_the_rto(pair):
    """A lone segment lost twice (original and probe): only the RTO is
    left, and it fires once (ms timer, RFC 6298), then the data arrives."""
    a, b, wire = pair
    prelude = b"p" * 100
    first = 1
    idx = ffi.new("uint32_t[]", [first, first + 1])
    assert lib.ns_wire_drop_list(wire.ptr, 1, idx, 2) == 0
    st = send_b_to_a(a, b, wire, b"lone segment", 7103, prelude=prelude)
    assert st["lost"] == 2
    assert st["tlp"] == 1
    assert st["rto"] == 1


def test_pacing_starts_after_the_first_loss(pair):
    """A path that never dropped keeps lwIP's bursts (nothing is held);
    once a segment was lost, segments leave at cwnd / SRTT: pacing holds
    some back and sends them from its timer, and the data still arrives."""
    a, b, wire = pair
    st = send_b_to_a(a, b, wire, payload(4 * MiB), 7104)
    assert (st["lost"], st["fast_rexmit"], st["paced"]) == (0, 0, 0)
    assert lib.ns_wire_set_bottleneck(wire.ptr, 1, 32, 20) == 0
    st = send_b_to_a(a, b, wire, payload(8 * MiB), 7105)
    assert st["fast_rexmit"] > 0
    assert st["paced"] > 0


def test_pacing_switched_off_holds_nothing(pair):
    a, b, wire = pair
    assert lib.ns_wire_set_bottleneck(wire.ptr, 1, 32, 20) == 0
    assert lib.ns_tcp_set_pacing(0) == 0
    try:
        st = send_b_to_a(a, b, wire, payload(8 * MiB), 7106)
    finally:
        assert lib.ns_tcp_set_pacing(1) == 0
    assert st["fast_rexmit"] > 0
    assert st["paced"] == 0


def test_reordering_is_learned_not_mistaken_for_loss(pair):
    """One segment in 40 arrives 15 ms late on a 10 ms wire, after a dozen
    sent later (the impairment's reordering does this on a relay link).
    RACK with a fixed quarter-SRTT window (and DupThresh) took every such
    hole for a loss: a needless retransmission and a halved window each, so
    a 32 MiB transfer through 50 ms jitter and reordering crawled. The
    receiver now reports the duplicates (D-SACK); the sender widens RACK's
    window, stops counting duplicate ACKs and undoes the recoveries that
    were needless: no reduction stands."""
    a, b, wire = pair
    assert lib.ns_wire_set_delay(wire.ptr, 10_000) == 0
    idx = list(range(200, 6000, 40))
    held = ffi.new("uint32_t[]", idx)
    assert lib.ns_wire_hold_list(wire.ptr, 1, held, len(idx), 0) < 0  # holds need a time
    assert lib.ns_wire_hold_list(wire.ptr, 1, held, len(idx), 15_000) == 0
    st = send_b_to_a(a, b, wire, payload(8 * MiB), 7107)
    assert st["lost"] == 0 and st["rto"] == 0
    assert st["dsack"] > 0  # the receiver reported the needless copies
    assert st["fast_rexmit"] - st["undo"] <= 1, st  # no window reduction stood (one at most, before any D-SACK)
    assert st["fast_rexmit"] <= 6, st  # the window widened after the first few
