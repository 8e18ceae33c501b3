"""Decoders of traced bytes: IP/TCP with SACK, UDP, ICMP, WireGuard
messages, DERP frames; short (snapped) and hostile input decodes what it
can and never raises."""

import os
import struct

from spanza import _decode as dec


def ipv4(proto, body, src=(192, 168, 4, 2), dst=(192, 168, 4, 1)):
    return (
        struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(body),
            7,
            0,
            64,
            proto,
            0,
            bytes(src),
            bytes(dst),
        )
        + body
    )


def test_tcp_with_sack_blocks():
    opts = bytes([1, 1, 5, 18]) + struct.pack("!IIII", 1000, 2000, 3000, 4000)
    off = (20 + len(opts)) // 4
    tcp = struct.pack("!HHIIBBHHH", 49152, 80, 11, 22, off << 4, 0x10 | 0x08, 512, 0, 0) + opts + b"data"
    d = dec.decode_ip(ipv4(6, tcp))
    assert (d["src"], d["sport"], d["dst"], d["dport"]) == (
        "192.168.4.2",
        49152,
        "192.168.4.1",
        80,
    )
    assert (d["seq"], d["ack"], d["win"], d["flags"], d["payload_len"]) == (
        11,
        22,
        512,
        "PA",
        4,
    )
    assert d["sack"] == [(1000, 2000), (3000, 4000)]
    assert "[PA] seq=11 ack=22 win=512 len=4 sack=1000-2000,3000-4000" in dec.describe_ip(d)


def test_udp_icmp_and_ipv6():
    assert dec.decode_ip(ipv4(17, struct.pack("!HHHH", 53, 5353, 12, 0) + b"abcd"))["payload_len"] == 4
    d = dec.decode_ip(ipv4(1, bytes([8, 0, 0, 0, 0, 9, 0, 3])))
    assert (d["icmp_type"], d["icmp_id"], d["icmp_seq"]) == (8, 9, 3)
    v6 = struct.pack("!IHBB16s16s", 6 << 28, 8, 58, 64, bytes(15) + b"\1", bytes(15) + b"\2") + bytes(
        [128, 0, 0, 0, 0, 1, 0, 1]
    )
    d = dec.decode_ip(v6)
    assert (d["ip"], d["dst"], d["proto_name"], d["icmp_type"]) == (
        6,
        "::2",
        "ICMPv6",
        128,
    )


def test_wireguard_messages():
    data = struct.pack("<IIQ", 4, 0xABCD, 42) + bytes(16 + 64)
    d = dec.decode_wg(data)
    assert (d["wg"], d["receiver"], d["counter"], d["inner_len"]) == (
        "data",
        0xABCD,
        42,
        64,
    )
    assert dec.decode_wg(struct.pack("<II", 1, 77) + bytes(140))["sender"] == 77
    resp = dec.decode_wg(struct.pack("<III", 2, 5, 6) + bytes(80))
    assert (resp["sender"], resp["receiver"]) == (5, 6)
    assert dec.decode_wg(b"\x04\x01\0\0" + bytes(28)) == {}  # reserved bytes set: not WireGuard


def test_derp_frames():
    key = bytes(range(32))
    frame = bytes([4]) + (32 + 3).to_bytes(4, "big") + key + b"abc"
    d = dec.decode_derp(frame)
    assert (d["derp"], d["frame_len"], d["key"], d["packet_len"]) == (
        "SendPacket",
        35,
        key.hex(),
        3,
    )
    assert dec.derp_payload(frame) == b"abc"
    assert dec.decode_derp(bytes([0x12, 0, 0, 0, 8]))["derp"] == "Ping"
    assert dec.derp_payload(bytes([0x12, 0, 0, 0, 8])) is None


def test_cut_and_hostile_input_never_raises():
    samples = [
        b"",
        b"\x45",
        ipv4(6, b"")[:30],
        ipv4(6, bytes(20))[:25],
        b"\x60" + bytes(10),
        b"\x04\0\0\0",
    ]
    samples += [os.urandom(n) for n in (1, 7, 20, 40, 64, 200) for _ in range(50)]
    for b in samples:
        dec.decode_ip(b)
        dec.decode_wg(b)
        dec.decode_derp(b)
        dec.describe_ip(dec.decode_ip(b))
        dec.describe_wg(dec.decode_wg(b))
