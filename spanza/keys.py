"""WireGuard keys: X25519 private/public keys and preshared keys.

Text forms accepted everywhere a key is expected:

- WireGuard base64 (44 characters, as ``wg genkey`` prints),
- 64 hex digits (the UAPI form),
- Tailscale's prefixed hex: ``privkey:<hex>`` (private), ``nodekey:<hex>``
  (public), as DERP uses them.

``str(key)`` gives base64; ``key.hex()`` the UAPI form; ``key.tailscale``
the prefixed form. Keys compare in constant time and hash by value.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from typing import ClassVar, TypeVar

from spanza._ffi import ffi, lib

__all__ = ["Key", "PresharedKey", "PrivateKey", "PublicKey"]

KEY_LEN = 32
_HEX_RE = re.compile(r"[0-9a-fA-F]{64}")
K = TypeVar("K", bound="Key")


def _random(n: int) -> bytes:
    buf = ffi.new("uint8_t[]", n)
    lib.spz_random(buf, n)
    return bytes(buf)


class Key:
    """32 bytes with WireGuard's text forms. Subclasses say what kind."""

    kind: ClassVar[str] = "key"
    tailscale_prefix: ClassVar[str | None] = None
    __slots__ = ("_raw",)

    def __init__(self, value: "str | bytes | bytearray | memoryview | Key") -> None:
        if isinstance(value, Key):
            if not isinstance(value, type(self)):
                raise TypeError(f"a {value.kind} is not a {self.kind}")
            raw = value.raw
        elif isinstance(value, (bytes, bytearray, memoryview)):
            raw = bytes(value)
            if len(raw) != KEY_LEN:
                raise ValueError(
                    f"{self.kind}: wrong length: {len(raw)} bytes (a WireGuard key is {KEY_LEN})"
                )
        elif isinstance(value, str):
            raw = self._parse(value)
        else:
            raise TypeError(f"{self.kind}: expected str or bytes, not {type(value).__name__}")
        self._raw = raw

    @classmethod
    def _parse(cls, text: str) -> bytes:
        s = text.strip()
        if ":" in s:
            prefix, _, rest = s.partition(":")
            want = cls.tailscale_prefix
            if want is None:
                raise ValueError(f"{cls.kind}: has no prefixed form (got {prefix + ':'!r})")
            if prefix + ":" != want:
                raise ValueError(f"{cls.kind}: expected the {want!r} prefix, not {prefix + ':'!r}")
            if not _HEX_RE.fullmatch(rest):
                raise ValueError(
                    f"{cls.kind}: {want} must be followed by 64 hex digits (got {len(rest)} characters)"
                )
            return bytes.fromhex(rest)
        if _HEX_RE.fullmatch(s):
            return bytes.fromhex(s)
        if len(s) != 44:
            raise ValueError(
                f"{cls.kind}: wrong length: {len(s)} characters (expected 44 base64 or 64 hex)"
            )
        try:
            raw = base64.b64decode(s, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"{cls.kind}: bad base64: {exc}") from None
        if len(raw) != KEY_LEN:
            raise ValueError(f"{cls.kind}: wrong length: {len(raw)} bytes after base64 decoding")
        if base64.b64encode(raw).decode() != s:
            raise ValueError(f"{cls.kind}: non-canonical base64 (the last character is wrong)")
        return raw

    @property
    def raw(self) -> bytes:
        return self._raw

    def __bytes__(self) -> bytes:
        return self._raw

    def hex(self) -> str:
        return self._raw.hex()

    @property
    def base64(self) -> str:
        return base64.b64encode(self._raw).decode()

    @property
    def tailscale(self) -> str:
        if self.tailscale_prefix is None:
            raise ValueError(f"a {self.kind} has no Tailscale form")
        return self.tailscale_prefix + self._raw.hex()

    def __str__(self) -> str:
        return self.base64

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base64!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Key) or type(other) is not type(self):
            return NotImplemented
        return hmac.compare_digest(self._raw, other._raw)

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._raw))

    def is_zero(self) -> bool:
        return not any(self._raw)


class PublicKey(Key):
    """An X25519 public key (a peer's identity; Tailscale calls it a node key)."""

    kind = "public key"
    tailscale_prefix = "nodekey:"
    __slots__ = ()


class PrivateKey(Key):
    """An X25519 private key. ``repr`` does not show it."""

    kind = "private key"
    tailscale_prefix = "privkey:"
    __slots__ = ()

    @classmethod
    def generate(cls) -> "PrivateKey":
        """A fresh clamped key, like ``wg genkey``."""
        b = bytearray(_random(KEY_LEN))
        b[0] &= 248
        b[31] = (b[31] & 127) | 64
        return cls(bytes(b))

    @property
    def public_key(self) -> PublicKey:
        out = ffi.new("uint8_t[32]")
        if lib.spz_x25519_public(out, self._raw) != 0:
            raise ValueError("private key: cannot derive a public key")
        return PublicKey(bytes(out))

    def shared_secret(self, peer: PublicKey) -> bytes:
        """X25519(self, peer); ValueError for a low-order peer key."""
        out = ffi.new("uint8_t[32]")
        if lib.spz_x25519_shared(out, self._raw, PublicKey(peer).raw) != 0:
            raise ValueError("public key is a low-order point (shared secret would be zero)")
        return bytes(out)

    def __repr__(self) -> str:
        return f"PrivateKey(<public {self.public_key.base64}>)"


class PresharedKey(Key):
    """A 32-byte symmetric key mixed into the handshake (``wg genpsk``)."""

    kind = "preshared key"
    __slots__ = ()

    @classmethod
    def generate(cls) -> "PresharedKey":
        return cls(_random(KEY_LEN))

    def __repr__(self) -> str:
        return "PresharedKey(<hidden>)"
