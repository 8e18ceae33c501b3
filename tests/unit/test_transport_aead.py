"""The transport AEAD (csrc/crypto/aead.c: one ChaCha20 pass over the
Poly1305 key block and the text, Poly1305 through OpenSSL) agrees with
libsodium's ChaCha20-Poly1305 byte for byte, for every length around the
block boundaries and WireGuard's padding, and rejects any tampering."""

from __future__ import annotations

import pytest

from spanza._ffi import ffi, lib

KEY = bytes(range(32))


def reference(plain: bytes, counter: int, key: bytes = KEY) -> bytes:
    out = ffi.new("uint8_t[]", len(plain) + 16)
    lib.spz_aead_encrypt(out, plain, len(plain), ffi.NULL, 0, counter, key)
    return bytes(out)


def seal(plain: bytes, counter: int, pad: int = 0, key: bytes = KEY) -> bytes:
    out = ffi.new("uint8_t[]", len(plain) + pad + 16)
    assert lib.spz_transport_seal(out, key, counter, plain, len(plain), pad) == 0
    return bytes(out)


def open_(sealed: bytes, counter: int, key: bytes = KEY) -> bytes | None:
    out = ffi.new("uint8_t[]", max(len(sealed) - 16, 1))
    rc = lib.spz_transport_open(out, key, counter, sealed, len(sealed))
    return bytes(out)[: len(sealed) - 16] if rc == 0 else None


# Around every block edge of ChaCha20 (64) and Poly1305 (16), and the MTU.
LENGTHS = sorted(
    {0, 1, 15, 16, 17, 47, 48, 63, 64, 65, 127, 128, 129, 191, 192, 1403, 1404, 1419, 1420, 1421} | set(range(440, 460))
)


@pytest.mark.parametrize("n", LENGTHS)
def test_seal_is_libsodiums_chacha20_poly1305(n: int) -> None:
    plain = bytes((7 * i + n) & 0xFF for i in range(n))
    for counter in (0, 1, 2**32 - 1, 2**32, 2**64 - 2):
        sealed = seal(plain, counter)
        assert sealed == reference(plain, counter), (n, counter)
        assert open_(sealed, counter) == plain


@pytest.mark.parametrize("pad", [1, 4, 15, 16])
def test_padding_is_sealed_as_zero_bytes(pad: int) -> None:
    plain = b"\x45" + bytes(range(1, 100))
    assert seal(plain, 9, pad) == reference(plain + bytes(pad), 9)


def test_tampering_anywhere_fails_and_leaves_nothing() -> None:
    plain = bytes(range(256)) * 4
    sealed = seal(plain, 5)
    for i in range(0, len(sealed), 37):
        bad = bytearray(sealed)
        bad[i] ^= 0x20
        assert open_(bytes(bad), 5) is None, i
    assert open_(sealed, 6) is None  # another counter
    assert open_(sealed, 5, key=bytes(32)) is None  # another key
    assert open_(sealed[:-1], 5) is None  # a short tag
    assert lib.spz_transport_open(ffi.new("uint8_t[1]"), KEY, 0, b"x" * 15, 15) < 0  # shorter than a tag


def test_a_keepalive_is_a_bare_tag() -> None:
    assert len(seal(b"", 3)) == 16
    assert open_(seal(b"", 3), 3) == b""
