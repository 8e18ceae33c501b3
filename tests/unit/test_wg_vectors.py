"""The core against the real Linux kernel capture of spec section 11.1:
given the same keys, ephemerals, indices and timestamp it must produce and
accept the very same bytes."""

import base64

import pytest

from spanza._ffi import ffi, lib
from spanza.keys import PrivateKey, PublicKey
from spanza.wireguard import Tunnel

SI = PrivateKey("AKeZaHwBxjiKLFnkY2unvEdOTtg4AL+M9dQXfopFVFk=")
SR = PrivateKey("cFIxTUyBs1Qil414hBwEgvasEax8CKJ5IS5ZougplWs=")
EI = base64.b64decode("sLGLJSOQfyz7JNJ5ZDzFf3Uz1rkiCMMjbWerNYcPFFU=")
ER = base64.b64decode("QC4/FZKhFf0b/eXEcCecmZNt6V6PXmRa4EWG1PIYTU4=")
SENDER_I = bytes.fromhex("d837d030")
SENDER_R = bytes.fromhex("06f47dab")
# TAI64N 400000005b52647b15405610 = 2^62 + 10 + Unix seconds (the kernel and
# Go add the 10-second TAI offset), so the wall clock was 1532126321 s.
WALL_NS = (0x5B52647B - 10) * 10**9 + 0x15405610

INITIATION = bytes.fromhex(
    "01000000"
    "d837d030"
    "5fcec7c8e5c8e2e3f7989eef60c228d82329d602b6b1e2bb9d068f89cf9d4d45"
    "32780f6d27264f7b98701fdc27a4ec00aeb6becdbef2332f1b4084cadb938239"
    "35c012ae255e7b25eff13940c321fa6b"
    "d66a2a87b061db1430173e937f569349de2856dc5f2616763eeeafc0"
    "533b01dd965e7ec76976e28f683d6712"
    "00000000000000000000000000000000"
)
RESPONSE = bytes.fromhex(
    "02000000"
    "06f47dab"
    "d837d030"
    "b18d5550bd4042a37a46823ac08db1ec66839bc0ca2d64bc15cd80232b66232f"
    "aec24af8918de1060ff5c98e865d5f35"
    "f272214c5260110dc4c61e32cdd85421"
    "00000000000000000000000000000000"
)
DATA_I2R = bytes.fromhex(
    "0400000006f47dab0000000000000000"
    "a4ebc12ee3f990da18033a0789c04e2700f6f5c271d42ac4b4d6262e666549b4"
    "45a7436e829bffb6ac65f05648bc0c391fe7c5884874376127164940188f03db"
    "a67af8388eaab76c593628bf9dc7be03346d912e916dad862545454701364f2d"
    "2486d7ced4c8642ce547ddb26ef6a46b"
)
DATA_R2I = bytes.fromhex(
    "04000000d837d0300000000000000000"
    "6f4f080e9f52691bbe948535f79c13ed68f09145d523eedb087265f968082f70"
    "735729263eda627c7683cdc0b80a3356d9536c9f0e2872797b5c81720ba0b8ea"
    "7233c6debf9f0fbee8f10ec18985b824bf350f8b8180d08a64e6be9810089ac3"
    "d1363ed5e129ca1e0425cf7e94965659"
)
I_ADDR = "10.10.0.2:51820"
R_ADDR = "10.10.0.1:51820"


def test_vector_keys():
    assert SI.public_key == PublicKey("Igge9KzRytKNwrgkzDE/8hrLu6Ly0OqVdvOPWhA5KR4=")
    assert SR.public_key == PublicKey("YDCttCs9e1J52/g9vEnwJJa+2x6RqaayAYMpSVQfGEY=")
    assert len(INITIATION) == 148 and len(RESPONSE) == 92 and len(DATA_I2R) == 128


def responder() -> Tunnel:
    r = Tunnel(SR, seed=11, address=R_ADDR)
    r.add_peer(SI.public_key, allowed_ips=["10.10.0.2/32"])
    r.push_random(ER + SENDER_R)
    return r


def initiator() -> Tunnel:
    i = Tunnel(SI, seed=12, address=I_ADDR, wall_clock_ns=WALL_NS)
    i.set_flags(whiten_timestamps=False)  # the 2018 capture is unwhitened
    i.add_peer(SR.public_key, endpoint=R_ADDR, allowed_ips=["10.10.0.1/32"])
    i.push_random(EI + SENDER_I)
    return i


def test_kernel_capture_both_roles_byte_for_byte():
    r, i = responder(), initiator()

    # Responder: the kernel's initiation gives the kernel's response.
    assert r.receive(INITIATION, I_ADDR) is None
    out = r.outgoing()
    assert out == [(I_ADDR, RESPONSE)]
    assert r.peer_stats(SI.public_key).endpoint == I_ADDR  # learned from the initiation
    # ... and the kernel's first data packet decrypts to an ICMP echo request.
    assert r.receive(DATA_I2R, I_ADDR) is None
    [(who, ping)] = r.delivered()
    assert who == SI.public_key
    assert len(ping) == 84  # padding (to 96) trimmed by the IPv4 total length
    assert ping[0] == 0x45 and ping[9] == 1 and ping[20] == 8  # IPv4, ICMP, echo request
    assert ping[12:16] == bytes([10, 10, 0, 2]) and ping[16:20] == bytes([10, 10, 0, 1])

    # Initiator: the same ping, sent before any session, makes the kernel's initiation...
    assert i.send(ping) is None
    assert i.outgoing() == [(R_ADDR, INITIATION)]
    # ... the kernel's response makes it send the staged ping as the kernel did.
    assert i.receive(RESPONSE, R_ADDR) is None
    assert i.outgoing() == [(R_ADDR, DATA_I2R)]
    assert i.receive(DATA_R2I, R_ADDR) is None
    [(who, pong)] = i.delivered()
    assert who == SR.public_key and len(pong) == 84 and pong[20] == 0  # echo reply

    # The responder, now confirmed, encrypts the reply exactly as the kernel.
    assert r.send(pong) is None
    assert r.outgoing() == [(I_ADDR, DATA_R2I)]
    for t in (r, i):
        st = t.stats()
        assert st["handshakes_completed"] == 1
        assert not any(st["drops"].values()), st["drops"]


def test_tampered_capture_is_dropped():
    r = responder()
    bad = bytearray(INITIATION)
    bad[50] ^= 1  # inside the encrypted static key: mac1 no longer matches
    assert r.receive(bytes(bad), I_ADDR) == "bad_mac1"
    assert r.outgoing() == []
    # A replay of the accepted initiation is stale (timestamp not newer).
    assert r.receive(INITIATION, I_ADDR) is None
    r.outgoing()
    r.advance(1000)
    assert r.receive(INITIATION, I_ADDR) == "stale_timestamp"
    assert r.stats()["drops"]["stale_timestamp"] == 1
    assert r.outgoing() == []


def test_unknown_initiator_gets_no_reply():
    r = Tunnel(SR, seed=1)
    assert r.receive(INITIATION, I_ADDR) == "unknown_peer"
    assert r.outgoing() == []


def blake2s(data: bytes) -> bytes:
    out = ffi.new("uint8_t[32]")
    lib.spz_blake2s256(out, data, len(data))
    return bytes(out)


def mac16(key: bytes, data: bytes) -> bytes:
    out = ffi.new("uint8_t[16]")
    assert lib.spz_blake2s_mac16(out, key, len(key), data, len(data)) == 0
    return bytes(out)


def test_construction_constants():
    c0 = blake2s(b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s")
    assert c0.hex() == "60e26daef327efc02ec335e2a025d2d016eb4206f87277f52d38d1988b78cd36"
    h0 = blake2s(c0 + b"WireGuard v1 zx2c4 Jason@zx2c4.com")
    assert h0.hex() == "2211b361081ac566691243db458ad5322d9c6c662293e8b70ee19c65ba079ef3"


def test_mac1_of_the_capture():
    key = blake2s(b"mac1----" + SR.public_key.raw)
    assert key.hex() == "778849ac488e391c7f5e43b14c65f60277ef40ff49eb3353615b518149968f6b"
    assert mac16(key, INITIATION[:116]) == INITIATION[116:132]
    key_i = blake2s(b"mac1----" + SI.public_key.raw)
    assert mac16(key_i, RESPONSE[:60]) == RESPONSE[60:76]
    assert blake2s(b"cookie--" + SR.public_key.raw).hex() == (
        "5c0fcb7e52e75f038e9dcf558715ea855c5e7885fca2eb8341f9d4bb5f4f3c7f"
    )


@pytest.mark.parametrize(
    "key,inp,t0,t1,t2",
    [  # wireguard-go device/kdf_test.go
        (
            "746573742d6b6579",
            "746573742d696e707574",
            "6f0e5ad38daba1bea8a0d213688736f19763239305e0f58aba697f9ffc41c633",
            "df1194df20802a4fe594cde27e92991c8cae66c366e8106aaa937a55fa371e8a",
            "fac6e2745a325f5dc5d11a5b165aad08b0ada28e7b4e666b7c077934a4d76c24",
        ),
        (
            "776972656775617264",
            "776972656775617264",
            "491d43bbfdaa8750aaf535e334ecbfe5129967cd64635101c566d4caefda96e8",
            "1e71a379baefd8a79aa4662212fcafe19a23e2b609a3db7d6bcba8f560e3d25f",
            "31e1ae48bddfbe5de38f295e5452b1909a1b4e38e183926af3780b0c1e1f0160",
        ),
        (
            "",
            "",
            "8387b46bf43eccfcf349552a095d8315c4055beb90208fb1be23b894bc2ed5d0",
            "58a0e5f6faefccf4807bff1f05fa8a9217945762040bcec2f4b4a62bdfe0e86e",
            "0ce6ea98ec548f8e281e93e32db65621c45eb18dc6f0a7ad94178610a2f7338e",
        ),
    ],
)
def test_kdf(key, inp, t0, t1, t2):
    out = ffi.new("uint8_t[96]")
    k, i = bytes.fromhex(key), bytes.fromhex(inp)
    lib.spz_hkdf3(out, k, len(k), i, len(i))
    assert bytes(out).hex() == t0 + t1 + t2


REJECT = 2**64 - 2**13 - 1
WINDOW = 8128


def replay(seq):
    counters = [c for c, _ in seq]
    arr = ffi.new("uint64_t[]", counters)
    res = ffi.new("uint8_t[]", len(counters))
    lib.wg_replay_test(arr, len(counters), REJECT, res)
    return [bool(r) for r in res]


def test_replay_window_kernel_selftest():
    """The kernel's counter selftest (same in wireguard-go replay_test.go)."""
    T = WINDOW + 1
    R = REJECT
    seq = [
        (0, 1),
        (1, 1),
        (1, 0),
        (9, 1),
        (8, 1),
        (7, 1),
        (7, 0),
        (T, 1),
        (T - 1, 1),
        (T - 1, 0),
        (T - 2, 1),
        (2, 1),
        (2, 0),
        (T + 16, 1),
        (3, 0),
        (T + 16, 0),
        (T * 4, 1),
        (T * 4 - (T - 1), 1),
        (10, 0),
        (T * 4 - T, 0),
        (T * 4 - (T + 1), 0),
        (T * 4 - (T - 2), 1),
        (T * 4 + 1 - T, 0),
        (0, 0),
        (R, 0),
        (R - 1, 1),
        (R, 0),
        (R - 1, 0),
        (R - 2, 1),
        (R + 1, 0),
        (R + 2, 0),
        (R - 2, 0),
        (R - 3, 1),
        (0, 0),
    ]
    seq = [(c % 2**64, e) for c, e in seq]
    assert replay(seq) == [bool(e) for _, e in seq]


def test_replay_window_bulk():
    seq = [(i, 1) for i in range(1, WINDOW + 1)] + [(0, 1), (0, 0)]
    assert replay(seq) == [bool(e) for _, e in seq]
    seq = [(i, 1) for i in range(2, WINDOW + 2)] + [(1, 1), (0, 0)]
    assert replay(seq) == [bool(e) for _, e in seq]
    seq = [(i, 1) for i in range(WINDOW + 1, 0, -1)]
    assert all(replay(seq))
    seq = [(i, 1) for i in range(WINDOW + 2, 1, -1)] + [(0, 0)]
    assert replay(seq) == [bool(e) for _, e in seq]
    seq = [(i, 1) for i in range(WINDOW, 0, -1)] + [(WINDOW + 1, 1), (0, 0)]
    assert replay(seq) == [bool(e) for _, e in seq]
    seq = [(i, 1) for i in range(WINDOW, 0, -1)] + [(0, 1), (WINDOW + 1, 1)]
    assert replay(seq) == [bool(e) for _, e in seq]
