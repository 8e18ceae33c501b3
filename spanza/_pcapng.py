"""A minimal pcapng writer (little endian): section header, one interface
per tap point, Decryption Secrets Blocks, Enhanced Packet Blocks with
direction flags and comments. Timestamps in nanoseconds (if_tsresol 9)."""

from __future__ import annotations

import struct
from typing import BinaryIO

BT_SHB = 0x0A0D0D0A
BT_IDB = 0x00000001
BT_EPB = 0x00000006
BT_DSB = 0x0000000A
BYTE_ORDER_MAGIC = 0x1A2B3C4D
SECTION_LENGTH_UNKNOWN = 0xFFFFFFFFFFFFFFFF

OPT_END = 0
OPT_COMMENT = 1
IF_NAME = 2
IF_DESCRIPTION = 3
IF_TSRESOL = 9
EPB_FLAGS = 2
TSRESOL_NS = 9

DIR_INBOUND = 1
DIR_OUTBOUND = 2

LINKTYPE_RAW = 101
LINKTYPE_USER0 = 147
SECRETS_WIREGUARD = 0x57474B4C  # "WGKL"

MAX_SNAPLEN = 262144


def _pad4(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


def _options(opts: list[tuple[int, bytes]]) -> bytes:
    if not opts:
        return b""
    out = b"".join(struct.pack("<HH", code, len(v)) + _pad4(v) for code, v in opts)
    return out + struct.pack("<HH", OPT_END, 0)


def _block(btype: int, body: bytes) -> bytes:
    n = 12 + len(body)
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


class PcapngWriter:
    """Writes one section to a binary file object."""

    def __init__(self, f: BinaryIO, *, application: str = "spanza") -> None:
        self.f = f
        self.interfaces = 0
        body = struct.pack("<IHHQ", BYTE_ORDER_MAGIC, 1, 0, SECTION_LENGTH_UNKNOWN)
        body += _options([(4, application.encode())])  # shb_userappl
        f.write(_block(BT_SHB, body))

    def add_interface(self, linktype: int, name: str, description: str = "") -> int:
        """An Interface Description Block; returns its interface id."""
        opts = [(IF_NAME, name.encode())]
        if description:
            opts.append((IF_DESCRIPTION, description.encode()))
        opts.append((IF_TSRESOL, bytes([TSRESOL_NS])))
        self.f.write(_block(BT_IDB, struct.pack("<HHI", linktype, 0, MAX_SNAPLEN) + _options(opts)))
        self.interfaces += 1
        return self.interfaces - 1

    def add_secrets(self, data: bytes, secrets_type: int = SECRETS_WIREGUARD) -> None:
        """A Decryption Secrets Block (must precede the packets it decrypts)."""
        self.f.write(_block(BT_DSB, struct.pack("<II", secrets_type, len(data)) + _pad4(data)))

    def add_packet(
        self,
        interface: int,
        t_ns: int,
        data: bytes,
        orig_len: int | None = None,
        *,
        direction: int = 0,
        comment: str | None = None,
    ) -> None:
        """An Enhanced Packet Block (t_ns: ns since the Unix epoch)."""
        orig = max(orig_len if orig_len is not None else len(data), len(data))
        opts: list[tuple[int, bytes]] = []
        if comment:
            opts.append((OPT_COMMENT, comment.encode()))
        if direction:
            opts.append((EPB_FLAGS, struct.pack("<I", direction)))
        body = struct.pack("<IIIII", interface, t_ns >> 32, t_ns & 0xFFFFFFFF, len(data), orig)
        self.f.write(_block(BT_EPB, body + _pad4(data) + _options(opts)))
