import base64
import json
import stat

import pytest

from spanza.errors import ConfigError
from spanza.keys import (
    PresharedKey,
    PrivateKey,
    PublicKey,
    as_key,
    load_key_file,
    private_key_bytes,
    public_key_bytes,
    write_key_file,
)

PRIV_B64 = "AKeZaHwBxjiKLFnkY2unvEdOTtg4AL+M9dQXfopFVFk="
PUB_B64 = "Igge9KzRytKNwrgkzDE/8hrLu6Ly0OqVdvOPWhA5KR4="
PRIV_HEX = "00a799687c01c6388a2c59e4636ba7bc474e4ed83800bf8cf5d4177e8a455459"


def test_forms_round_trip():
    k = PrivateKey(PRIV_B64)
    assert str(k) == PRIV_B64 and k.base64 == PRIV_B64
    assert k.hex() == PRIV_HEX
    assert PrivateKey(PRIV_HEX) == k == PrivateKey(PRIV_HEX.upper())
    assert PrivateKey(bytes.fromhex(PRIV_HEX)) == k
    assert PrivateKey("privkey:" + PRIV_HEX) == k and k.tailscale == "privkey:" + PRIV_HEX
    assert PrivateKey(f"  {PRIV_B64}\n") == k  # key files end with a newline
    assert k.public_key == PublicKey(PUB_B64)
    pub = k.public_key
    assert PublicKey(pub.tailscale) == pub and pub.tailscale.startswith("nodekey:")
    assert bytes(pub) == base64.b64decode(PUB_B64)


def test_equality_and_hash():
    a, b = PublicKey(PUB_B64), PublicKey(PUB_B64)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != PublicKey(bytes(32))
    # Same bytes, different kinds: not equal.
    assert PresharedKey(bytes(a)) != a
    assert PublicKey(a) == a
    with pytest.raises(TypeError):
        PublicKey(PrivateKey(PRIV_B64))


def test_generate():
    k = PrivateKey.generate()
    raw = bytes(k)
    assert raw[0] & 7 == 0 and raw[31] & 0x80 == 0 and raw[31] & 0x40
    assert k != PrivateKey.generate()
    assert len(bytes(PresharedKey.generate())) == 32
    assert "PrivateKey(<public" in repr(k) and str(k) not in repr(k)
    assert str(PresharedKey.generate()) not in repr(PresharedKey.generate())


@pytest.mark.parametrize(
    "cls,text,msg",
    [
        (PublicKey, "abc", "wrong length: 3 characters"),
        (PublicKey, PUB_B64[:-2] + "!=", "bad base64"),
        (PublicKey, PUB_B64[:-2] + "f=", "non-canonical"),
        (PublicKey, "AAAA" * 10 + "AA==", "wrong length: 31 bytes"),
        (PublicKey, "privkey:" + PRIV_HEX, "expected the 'nodekey:' prefix"),
        (PrivateKey, "nodekey:" + PRIV_HEX, "expected the 'privkey:' prefix"),
        (PublicKey, "nodekey:abcd", "64 hex digits"),
        (PresharedKey, "nodekey:" + PRIV_HEX, "no prefixed form"),
        (PublicKey, b"\x00" * 31, "wrong length: 31 bytes"),
    ],
)
def test_bad_text_says_why(cls, text, msg):
    with pytest.raises(ValueError, match=msg):
        cls(text)


def test_shared_secret_and_low_order():
    a, b = PrivateKey.generate(), PrivateKey.generate()
    assert a.shared_secret(b.public_key) == b.shared_secret(a.public_key)
    with pytest.raises(ValueError, match="low-order"):
        a.shared_secret(PublicKey(bytes(32)))


def test_arguments_name_what_is_wrong_and_never_echo_a_secret():
    with pytest.raises(ConfigError, match="private_key: not a private key: wrong length") as e:
        private_key_bytes(PRIV_HEX[:-2])
    assert PRIV_HEX[:-2] not in str(e.value)
    with pytest.raises(ConfigError, match="all zeros"):
        private_key_bytes(bytes(32))
    with pytest.raises(ConfigError, match="peer: 'abc' is not a public key"):
        public_key_bytes("abc", "peer")
    with pytest.raises(ConfigError, match="expected the 'nodekey:' prefix") as e:
        public_key_bytes("privkey:" + PRIV_HEX)  # a private key where a public one belongs
    assert PRIV_HEX not in str(e.value)
    with pytest.raises(ConfigError, match="derp_key: a public key is not a private key"):
        as_key(PrivateKey, PublicKey(PUB_B64), "derp_key")
    assert as_key(PublicKey, memoryview(bytes(PublicKey(PUB_B64))), "k") == PublicKey(PUB_B64)


def test_key_file_is_derpers_format_written_once(tmp_path):
    path = tmp_path / "derper.key"
    key = load_key_file(path, create=True)
    text = path.read_text()
    assert json.loads(text) == {"PrivateKey": key.tailscale} and "\t" in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key_file(path, create=True) == key  # read, not replaced
    with pytest.raises(FileExistsError):
        write_key_file(path, PrivateKey.generate())
    assert load_key_file(path) == key
    assert [p.name for p in tmp_path.iterdir()] == ["derper.key"]  # no temporary file left


def test_public_key_equals_its_raw_bytes():
    """Code written when some APIs returned bytes compares them with a
    PublicKey: equal to its 32 raw bytes (bytes or bytearray), not to other
    bytes or to a prefix (compared in constant time, in C)."""
    pub = PublicKey(PUB_B64)
    raw = base64.b64decode(PUB_B64)
    assert pub == raw and pub == bytearray(raw) and raw == pub
    assert pub != raw[:31] and pub != raw + b"\0"
    assert pub != bytes([raw[0] ^ 1]) + raw[1:] and pub != raw[:31] + bytes([raw[31] ^ 0x80])
