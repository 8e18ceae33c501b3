"""WireGuard keys: X25519 private/public keys and preshared keys.

Text forms accepted everywhere a key is expected:

- WireGuard base64 (44 characters, as ``wg genkey`` prints),
- 64 hex digits (the UAPI form),
- Tailscale's prefixed hex: ``privkey:<hex>`` (private), ``nodekey:<hex>``
  (public), as DERP uses them.

``str(key)`` gives base64; ``key.hex()`` the UAPI form; ``key.tailscale``
the prefixed form. Keys compare in constant time and hash by value.

Every constructor in Spanza that takes a key goes through `as_key` (or
`private_key_bytes` / `public_key_bytes`), so one set of forms and one set of
error messages holds everywhere. Key files (`load_key_file`,
`write_key_file`) are derper's JSON, ``{"PrivateKey": "privkey:<hex>"}``,
for the DERP server, the gateway and the DERP client alike.
"""

from __future__ import annotations

import binascii
import contextlib
import os

from spanza._ffi import ffi, lib
from spanza._log import get_logger
from spanza.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar, TypeVar

    K = TypeVar("K", bound="Key")

__all__ = [
    "Key",
    "PresharedKey",
    "PrivateKey",
    "PublicKey",
    "as_key",
    "load_key_file",
    "private_key_bytes",
    "public_key_bytes",
    "write_key_file",
]

log = get_logger("spanza.keys")

KEY_LEN = 32
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def _is_hex64(s: str) -> bool:
    """64 hex digits (by hand: re would be imported for this alone)."""
    return len(s) == 2 * KEY_LEN and _HEX_DIGITS.issuperset(s)


def _random(n: int) -> bytes:
    buf = ffi.new("uint8_t[]", n)
    lib.spz_random(buf, n)
    return bytes(buf)


class Key:
    """32 bytes with WireGuard's text forms. Subclasses say what kind."""

    kind: ClassVar[str] = "key"
    tailscale_prefix: ClassVar[str | None] = None
    __slots__ = ("_raw",)

    def __init__(self, value: str | bytes | bytearray | memoryview | Key) -> None:
        if isinstance(value, Key):
            if not isinstance(value, type(self)):
                raise TypeError(f"a {value.kind} is not a {self.kind}")
            raw = value.raw
        elif isinstance(value, (bytes, bytearray, memoryview)):
            raw = bytes(value)
            if len(raw) != KEY_LEN:
                raise ValueError(f"{self.kind}: wrong length: {len(raw)} bytes (a WireGuard key is {KEY_LEN} bytes)")
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
            if not _is_hex64(rest):
                raise ValueError(f"{cls.kind}: {want} must be followed by 64 hex digits (got {len(rest)} characters)")
            return bytes.fromhex(rest)
        if _is_hex64(s):
            return bytes.fromhex(s)
        if len(s) != 44:
            raise ValueError(f"{cls.kind}: wrong length: {len(s)} characters (expected 44 base64 or 64 hex)")
        import base64  # here: a key given as base64 text is the only use (cold start)

        try:
            raw = base64.b64decode(s, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"{cls.kind}: bad base64: {exc}") from None
        if len(raw) != KEY_LEN:
            raise ValueError(f"{cls.kind}: wrong length: {len(raw)} bytes after base64 decoding")
        if binascii.b2a_base64(raw, newline=False).decode() != s:
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
        return binascii.b2a_base64(self._raw, newline=False).decode()

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
        # constant time, in C (hmac.compare_digest would cost `import spanza` 2 ms)
        return bool(lib.spz_memeq(self._raw, other._raw, KEY_LEN) == 1)

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._raw))

    def is_zero(self) -> bool:
        return not any(self._raw)


class PublicKey(Key):
    """An X25519 public key (a peer's identity; Tailscale calls it a node key).

    Every Spanza API returns public keys as this type. It also compares equal
    to its 32 raw bytes (and hashes like them), so code written when some
    APIs returned bytes keeps working."""

    kind = "public key"
    tailscale_prefix = "nodekey:"
    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (bytes, bytearray)):
            return len(other) == KEY_LEN and lib.spz_memeq(self._raw, bytes(other), KEY_LEN) == 1
        return super().__eq__(other)

    def __hash__(self) -> int:
        return hash(self._raw)

    def __len__(self) -> int:
        return KEY_LEN


class PrivateKey(Key):
    """An X25519 private key. ``repr`` does not show it."""

    kind = "private key"
    tailscale_prefix = "privkey:"
    __slots__ = ()

    @classmethod
    def generate(cls) -> PrivateKey:
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
    def generate(cls) -> PresharedKey:
        return cls(_random(KEY_LEN))

    def __repr__(self) -> str:
        return "PresharedKey(<hidden>)"


# ---- keys from callers' arguments ------------------------------------------------


def as_key(cls: type[K], value: Any, what: str) -> K:
    """`value` (a key object, 32 bytes, or any text form above) as a `cls`;
    otherwise ConfigError naming the argument `what` and what is wrong. A
    value that fails to parse is quoted only where it is meant to be public."""
    if value is None:
        raise ConfigError(f"{what}: a {cls.kind} is required")
    if isinstance(value, Key) and not isinstance(value, cls):
        raise ConfigError(f"{what}: a {value.kind} is not a {cls.kind}")
    try:
        return cls(value)
    except (TypeError, ValueError) as e:
        why = str(e).removeprefix(cls.kind + ": ")
        secret = cls is not PublicKey or (isinstance(value, str) and value.strip().startswith("privkey:"))
        if secret:
            raise ConfigError(f"{what}: not a {cls.kind}: {why}") from None
        raise ConfigError(f"{what}: {value!r} is not a {cls.kind}: {why}") from None


def private_key_bytes(value: Any, what: str = "private_key") -> bytes:
    """The 32 bytes of a private key argument (never all zeros)."""
    key = as_key(PrivateKey, value, what)
    if key.is_zero():
        raise ConfigError(f"{what}: a key of all zeros is not a private key")
    return key.raw


def public_key_bytes(value: Any, what: str = "public key") -> bytes:
    """The 32 bytes of a public key argument."""
    return as_key(PublicKey, value, what).raw


# ---- key files -------------------------------------------------------------------


def write_key_file(path: str | os.PathLike[str], key: PrivateKey) -> None:
    """Writes `key` as derper does (``{"PrivateKey": "privkey:<hex>"}``,
    tab-indented, mode 0600). The file appears whole or not at all, and an
    existing file is never replaced (FileExistsError)."""
    import json  # key files only: not on every `import spanza.keys` (cold start)
    import tempfile

    path = os.fspath(path)
    doc = json.dumps({"PrivateKey": key.tailscale}, indent="\t")
    fd, tmp = tempfile.mkstemp(prefix=".spanza-key-", dir=os.path.dirname(path) or ".")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(doc)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def load_key_file(path: str | os.PathLike[str], *, create: bool = False) -> PrivateKey:
    """The private key in a key file: derper's JSON (``{"PrivateKey":
    "privkey:<hex>"}``, what `write_key_file` writes) or a single line of
    ``privkey:<hex>``, WireGuard base64 or 64 hex digits. With create, a
    missing file is made with a new key (mode 0600)."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(65536)
    except FileNotFoundError:
        if not create:
            raise ConfigError(f"key file {path} does not exist (create=True makes one)") from None
        key = PrivateKey.generate()
        try:
            write_key_file(path, key)
        except FileExistsError:  # made by someone else meanwhile: use theirs
            return load_key_file(path)
        except OSError as e:
            raise ConfigError(f"cannot write key file {path}: {e.strerror}") from None
        log.info("created key file %s (public key %s)", path, key.public_key.tailscale)
        return key
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) else "not text"
        raise ConfigError(f"cannot read key file {path}: {why}") from None
    text = text.strip()
    if text.startswith("{"):
        import json

        try:
            doc = json.loads(text)
        except ValueError as e:
            raise ConfigError(f"key file {path}: not valid JSON ({e})") from None
        value = doc.get("PrivateKey") if isinstance(doc, dict) else None
        if not isinstance(value, str):
            raise ConfigError(
                f'key file {path}: no "PrivateKey" string (the format is {{"PrivateKey": "privkey:<64 hex>"}})'
            )
        text = value
    elif "\n" in text:
        raise ConfigError(f"key file {path}: expected one key, found several lines")
    key = as_key(PrivateKey, text, f"key file {path}")
    if key.is_zero():
        raise ConfigError(f"key file {path}: a key of all zeros is not a private key")
    return key
