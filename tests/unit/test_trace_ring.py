"""The trace rings and C filters, driven by tr_py_inject (a tap on the
calling thread): off records nothing, on keeps every record up to the ring
size and counts the rest, filters select in C."""

import itertools
import struct
import threading

import pytest

from spanza import trace
from spanza._ffi import lib
from spanza.errors import ConfigError

OBJ = 0x5EED
OTHER = 0xBEEF


def inject(hop, data, obj=OBJ):
    lib.tr_py_inject(hop, obj, data, len(data))


def ipv4_tcp(sport, dport, payload=b""):
    total = 40 + len(payload)
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        total,
        1,
        0,
        64,
        6,
        0,
        bytes([10, 0, 0, 1]),
        bytes([10, 0, 0, 2]),
    )
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1000, 0, 5 << 4, 0x02, 65535, 0, 0)
    return ip + tcp + payload


def test_off_records_nothing():
    before = trace.stats()["records"]
    inject(trace.NS_OUT, b"x" * 40)
    assert trace.stats()["records"] == before
    assert trace.stats()["enabled"] == 0


def test_on_keeps_every_record_in_order():
    with trace.capture(OBJ, snaplen=0) as cap:
        for i in range(50):
            inject(trace.NS_OUT, bytes([i]) * (20 + i))
    recs = cap.records()
    assert [r.data for r in recs] == [bytes([i]) * (20 + i) for i in range(50)]
    assert all(r.hop == trace.NS_OUT and r.obj == OBJ and r.hop_name == "host-out" for r in recs)
    assert [r.seq for r in recs] == sorted(r.seq for r in recs)
    assert all(b.t_ns >= a.t_ns for a, b in itertools.pairwise(recs))
    assert cap.overflow == 0
    assert trace.stats()["enabled"] == 0
    assert repr(cap) == "<Capture stopped: 50 records kept, 1 objects, overflow 0>"
    assert "50 records, overflow 0" in cap._repr_html_()


def test_snaplen_cuts_but_keeps_the_length():
    with trace.capture(OBJ, snaplen=64) as cap:
        inject(trace.DEV_UDP_TX, bytes(range(256)) * 4)
    (r,) = cap.records()
    assert r.data == bytes(range(64)) and r.length == 1024 and r.truncated


def test_a_full_ring_counts_overflow_and_memory_stays_bounded():
    ring_bytes = []
    for n in (2000, 20000):
        with trace.capture(OBJ, snaplen=0, live=False, ring_bytes=16384) as cap:
            for _ in range(n):
                inject(trace.NS_OUT, b"y" * 100)
        ring_bytes.append(trace.stats()["ring_bytes"])  # a ring replaced by the smaller one is freed by now
        kept = len(cap.records())
        assert 0 < kept < 16384 // 100
        assert kept + cap.overflow == n
    assert ring_bytes[0] == ring_bytes[1]  # ten times the records, the same memory


def test_object_and_hop_filters():
    with trace.capture(OBJ, hops=["host-out"]) as cap:
        inject(trace.NS_OUT, b"a" * 20)
        inject(trace.NS_IN, b"b" * 20)
        inject(trace.NS_OUT, b"c" * 20, obj=OTHER)
    assert [(r.obj, r.hop, r.data[:1]) for r in cap.records()] == [(OBJ, trace.NS_OUT, b"a")]


def test_port_filter_applies_to_plaintext_hops():
    with trace.capture(OBJ, port=80) as cap:
        inject(trace.NS_OUT, ipv4_tcp(40000, 80))
        inject(trace.NS_OUT, ipv4_tcp(40000, 443))
        inject(trace.NS_IN, ipv4_tcp(80, 40000))
        inject(trace.DEV_UDP_TX, b"\x04\0\0\0" + bytes(28))  # ciphertext: not an IP match
    got = [(r.hop, r.decoded.get("sport"), r.decoded.get("dport")) for r in cap.records()]
    assert got == [
        (trace.NS_OUT, 40000, 80),
        (trace.NS_IN, 80, 40000),
        (trace.DEV_UDP_TX, None, None),
    ]


def test_host_and_proto_filters():
    with trace.capture(OBJ, host="10.0.0.2", proto="udp") as cap:
        inject(trace.NS_OUT, ipv4_tcp(1, 2))
    assert cap.records() == []
    with trace.capture(OBJ, host="10.0.0.2", proto="tcp") as cap:
        inject(trace.NS_OUT, ipv4_tcp(1, 2))
    assert len(cap.records()) == 1


def test_pattern_filter():
    with trace.capture(OBJ, pattern=(2, b"\xab\xcd")) as cap:
        inject(trace.NS_OUT, b"\0\0\xab\xcd" + bytes(20))
        inject(trace.NS_OUT, b"\0\0\xab\xce" + bytes(20))
        inject(trace.NS_OUT, b"\0\0\xab")
    assert len(cap.records()) == 1


def test_records_from_many_threads():
    def worker(k):
        for i in range(200):
            inject(trace.NS_OUT, bytes([k, i % 256]) * 10)

    with trace.capture(OBJ, snaplen=0) as cap:
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    recs = cap.records()
    assert len(recs) == 800 and cap.overflow == 0
    for k in range(4):
        assert [r.data[1] for r in recs if r.data[0] == k] == [i % 256 for i in range(200)]
    # The exited threads' rings are freed once drained.
    with trace.capture(OBJ):
        pass
    assert trace.stats()["rings"] <= 3


def test_two_captures_at_once_each_get_their_objects():
    with trace.capture(OBJ) as a:
        with trace.capture(OTHER) as b:
            inject(trace.NS_OUT, b"1" * 20)
            inject(trace.NS_OUT, b"2" * 20, obj=OTHER)
        inject(trace.NS_OUT, b"3" * 20)
    assert [r.data[:1] for r in a.records()] == [b"1", b"3"]
    assert [r.data[:1] for r in b.records()] == [b"2"]


def test_bad_settings_say_what_to_fix():
    with pytest.raises(ConfigError, match="hops"):
        trace.capture(hops=["nowhere"])
    with pytest.raises(ConfigError, match="port"):
        trace.capture(port=70000)
    with pytest.raises(ConfigError, match="host"):
        trace.capture(host="not-an-ip")
    with pytest.raises(ConfigError, match="cannot trace"):
        trace.capture("relay")
    with pytest.raises(ConfigError, match="ring_bytes"):
        trace.capture(ring_bytes=100)
    assert trace.stats()["enabled"] == 0
