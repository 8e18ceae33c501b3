"""Decoders for traced bytes: IPv4/IPv6 with TCP/UDP/ICMP, WireGuard
messages and DERP frames. Pure functions on bytes (possibly cut at the
snap length): every length is checked, a short buffer decodes what it can.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Any

WG_TYPES = {1: "initiation", 2: "response", 3: "cookie", 4: "data"}
WG_DATA_HEADER = 16
WG_TAG = 16

DERP_HDR = 5
DERP_KEY = 32
DERP_SEND_PACKET = 0x04
DERP_RECV_PACKET = 0x05
DERP_FORWARD_PACKET = 0x0A
DERP_FRAMES = {
    0x01: "ServerKey",
    0x02: "ClientInfo",
    0x03: "ServerInfo",
    0x04: "SendPacket",
    0x05: "RecvPacket",
    0x06: "KeepAlive",
    0x07: "NotePreferred",
    0x08: "PeerGone",
    0x09: "PeerPresent",
    0x0A: "ForwardPacket",
    0x10: "WatchConns",
    0x11: "ClosePeer",
    0x12: "Ping",
    0x13: "Pong",
    0x14: "Health",
    0x15: "Restarting",
}

TCP_FLAGS = "FSRPAUEC"
IPPROTO = {1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6"}
TCP_OPT_SACK = 5
TCP_OPT_END = 0
TCP_OPT_NOP = 1


def looks_like_ip(b: bytes) -> bool:
    return len(b) >= 20 and (b[0] >> 4 == 4 or (b[0] >> 4 == 6 and len(b) >= 40))


def looks_like_wg(b: bytes) -> bool:
    return len(b) >= 4 and b[0] in WG_TYPES and b[1:4] == b"\0\0\0"


def ip_length(b: bytes) -> int:
    """The IP packet's own length (0 if b is not IP)."""
    if len(b) >= 20 and b[0] >> 4 == 4:
        return int.from_bytes(b[2:4], "big")
    if len(b) >= 40 and b[0] >> 4 == 6:
        return int.from_bytes(b[4:6], "big") + 40
    return 0


def decode_ip(b: bytes) -> dict[str, Any]:
    """IPv4/IPv6 header and TCP/UDP/ICMP fields, as far as b goes."""
    if len(b) >= 20 and b[0] >> 4 == 4:
        hl = (b[0] & 0xF) * 4
        out: dict[str, Any] = {
            "ip": 4,
            "src": str(ipaddress.IPv4Address(b[12:16])),
            "dst": str(ipaddress.IPv4Address(b[16:20])),
            "proto": b[9],
            "ttl": b[8],
            "ip_len": int.from_bytes(b[2:4], "big"),
            "ip_id": int.from_bytes(b[4:6], "big"),
        }
    elif len(b) >= 40 and b[0] >> 4 == 6:
        hl = 40
        out = {
            "ip": 6,
            "src": str(ipaddress.IPv6Address(b[8:24])),
            "dst": str(ipaddress.IPv6Address(b[24:40])),
            "proto": b[6],
            "ttl": b[7],
            "ip_len": int.from_bytes(b[4:6], "big") + 40,
        }
    else:
        return {}
    out["proto_name"] = IPPROTO.get(out["proto"], str(out["proto"]))
    body = b[hl : out["ip_len"]]
    payload_len = out["ip_len"] - hl
    if out["proto"] == 6 and len(body) >= 20:
        out.update(_tcp(body, payload_len))
    elif out["proto"] == 17 and len(body) >= 8:
        out.update(
            sport=int.from_bytes(body[0:2], "big"),
            dport=int.from_bytes(body[2:4], "big"),
            payload_len=payload_len - 8,
        )
    elif out["proto"] in (1, 58) and len(body) >= 4:
        out.update(icmp_type=body[0], icmp_code=body[1])
        if len(body) >= 8:
            out.update(
                icmp_id=int.from_bytes(body[4:6], "big"),
                icmp_seq=int.from_bytes(body[6:8], "big"),
            )
    return out


def _tcp(t: bytes, seg_len: int) -> dict[str, Any]:
    sport, dport, seq, ack, off, flags, win = struct.unpack_from("!HHIIBBH", t)
    doff = (off >> 4) * 4
    out: dict[str, Any] = {
        "sport": sport,
        "dport": dport,
        "seq": seq,
        "ack": ack,
        "win": win,
        "flags": "".join(c for i, c in enumerate(TCP_FLAGS) if flags >> i & 1),
        "payload_len": max(0, seg_len - doff),
    }
    sack = _sack_blocks(t[20:doff])
    if sack:
        out["sack"] = sack
    return out


def _sack_blocks(opts: bytes) -> list[tuple[int, int]]:
    i, blocks = 0, []
    while i < len(opts):
        kind = opts[i]
        if kind == TCP_OPT_END:
            break
        if kind == TCP_OPT_NOP:
            i += 1
            continue
        if i + 1 >= len(opts) or opts[i + 1] < 2:
            break
        ln = opts[i + 1]
        if kind == TCP_OPT_SACK:
            body = opts[i + 2 : i + ln]
            blocks += [struct.unpack_from("!II", body, k) for k in range(0, len(body) - 7, 8)]
        i += ln
    return blocks


def decode_wg(b: bytes, length: int | None = None) -> dict[str, Any]:
    """A WireGuard message's type and indices (and data counter/length)."""
    if not looks_like_wg(b):
        return {}
    t = b[0]
    out: dict[str, Any] = {"wg": WG_TYPES[t]}
    if t in (1, 2) and len(b) >= 8:
        out["sender"] = int.from_bytes(b[4:8], "little")
    if t == 2 and len(b) >= 12:
        out["receiver"] = int.from_bytes(b[8:12], "little")
    if t == 3 and len(b) >= 8:
        out["receiver"] = int.from_bytes(b[4:8], "little")
    if t == 4 and len(b) >= WG_DATA_HEADER:
        out["receiver"] = int.from_bytes(b[4:8], "little")
        out["counter"] = int.from_bytes(b[8:16], "little")
        out["inner_len"] = max(0, (length if length is not None else len(b)) - WG_DATA_HEADER - WG_TAG)
    return out


def decode_derp(b: bytes) -> dict[str, Any]:
    """A DERP frame's type, length and, for packet frames, the key."""
    if len(b) < DERP_HDR:
        return {}
    t = b[0]
    out: dict[str, Any] = {
        "derp": DERP_FRAMES.get(t, f"0x{t:02x}"),
        "frame_len": int.from_bytes(b[1:5], "big"),
    }
    if t in (DERP_SEND_PACKET, DERP_RECV_PACKET) and len(b) >= DERP_HDR + DERP_KEY:
        out["key"] = b[DERP_HDR : DERP_HDR + DERP_KEY].hex()
        out["packet_len"] = out["frame_len"] - DERP_KEY
    return out


def derp_payload(b: bytes) -> bytes | None:
    """The datagram inside a SendPacket/RecvPacket frame (None otherwise)."""
    if len(b) >= DERP_HDR + DERP_KEY and b[0] in (DERP_SEND_PACKET, DERP_RECV_PACKET):
        return b[DERP_HDR + DERP_KEY :]
    return None


def describe_ip(d: dict[str, Any]) -> str:
    if not d:
        return "?"
    p = d["proto_name"]
    if "sport" in d:
        s = f"{p} {d['src']}:{d['sport']} > {d['dst']}:{d['dport']}"
    else:
        s = f"{p} {d['src']} > {d['dst']}"
    if "flags" in d:
        s += f" [{d['flags']}] seq={d['seq']} ack={d['ack']} win={d['win']} len={d['payload_len']}"
        if "sack" in d:
            s += " sack=" + ",".join(f"{a}-{b}" for a, b in d["sack"])
    elif "icmp_type" in d:
        s += f" type={d['icmp_type']} code={d['icmp_code']}"
        if "icmp_seq" in d:
            s += f" id={d['icmp_id']} seq={d['icmp_seq']}"
    elif "payload_len" in d:
        s += f" len={d['payload_len']}"
    return s


def describe_wg(d: dict[str, Any]) -> str:
    if not d:
        return "?"
    s = f"WG {d['wg']}"
    if "sender" in d:
        s += f" sender={d['sender']:#010x}"
    if "receiver" in d:
        s += f" receiver={d['receiver']:#010x}"
    if "counter" in d:
        s += f" counter={d['counter']}" + (" keepalive" if d["inner_len"] == 0 else f" inner={d['inner_len']}")
    return s
