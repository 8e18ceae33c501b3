"""The UAPI text protocol (spec section 8), as wireguard-go speaks it."""

import errno

import pytest

from spanza import ConfigError
from spanza._ffi import ffi, lib
from spanza.keys import PresharedKey, PrivateKey
from spanza.wireguard import Tunnel
from tests.unit.wgutil import A_IP, B_IP, handshake, ipv4_udp, pair, pump

K1 = PrivateKey(bytes([1] * 32))
K2 = PrivateKey(bytes([2] * 32))
P1, P2 = K1.public_key, K2.public_key
PSK = PresharedKey(bytes(range(32)))


def request(t: Tunnel, text: str) -> tuple[int, str]:
    data = text.encode()
    assert lib.wg_uapi_request_len(data, len(data)) == len(data)
    out = ffi.new("char **")
    n = ffi.new("size_t *")
    rc = lib.wg_uapi_request(t.dev, t.now, data, len(data), out, n)
    if rc:
        return rc, ""
    try:
        return 0, ffi.string(out[0], n[0]).decode()
    finally:
        lib.wg_uapi_free(out[0])


def set_errno(t, body):
    rc, reply = request(t, "set=1\n" + body + "\n\n")
    assert rc == 0
    assert reply.endswith("\n\n")
    return int(reply.split("errno=")[1].strip())


def test_empty_device_get():
    t = Tunnel(seed=1, listen_port=0)
    t.private_key = None
    assert t.ipc_get() == "errno=0\n\n"


def test_full_round_trip_every_key():
    t = Tunnel(seed=1, listen_port=0)
    priv = PrivateKey(bytes([7] * 32))
    t.ipc_set(
        f"private_key={priv.hex()}\n"
        "listen_port=51999\n"
        "fwmark=4660\n"
        "replace_peers=true\n"
        f"public_key={P1.hex()}\n"
        f"preshared_key={PSK.hex()}\n"
        "protocol_version=1\n"
        "endpoint=192.0.2.9:51820\n"
        "persistent_keepalive_interval=0\n"
        "replace_allowed_ips=true\n"
        "allowed_ip=10.0.0.5/24\n"
        "allowed_ip=fd00::1/128\n"
        f"public_key={P2.hex()}\n"
        "endpoint=[2001:db8::1%3]:443\n"
        "allowed_ip=0.0.0.0/0\n"
        "\n"
    )
    clamped = bytearray(priv.raw)
    clamped[0] &= 248
    clamped[31] = (clamped[31] & 127) | 64
    expect = (
        f"private_key={bytes(clamped).hex()}\n"
        "listen_port=51999\n"
        "fwmark=4660\n"
        f"public_key={P1.hex()}\n"
        f"preshared_key={PSK.hex()}\n"
        "protocol_version=1\n"
        "endpoint=192.0.2.9:51820\n"
        "last_handshake_time_sec=0\n"
        "last_handshake_time_nsec=0\n"
        "tx_bytes=0\n"
        "rx_bytes=0\n"
        "persistent_keepalive_interval=0\n"
        "allowed_ip=10.0.0.0/24\n"
        "allowed_ip=fd00::1/128\n"
        f"public_key={P2.hex()}\n"
        f"preshared_key={'0' * 64}\n"
        "protocol_version=1\n"
        "endpoint=[2001:db8::1%3]:443\n"
        "last_handshake_time_sec=0\n"
        "last_handshake_time_nsec=0\n"
        "tx_bytes=0\n"
        "rx_bytes=0\n"
        "persistent_keepalive_interval=0\n"
        "allowed_ip=0.0.0.0/0\n"
        "errno=0\n\n"
    )
    assert t.ipc_get() == expect
    rc, reply = request(t, "get=1\n\n")
    assert rc == 0 and reply == expect
    # Feeding the get output (minus stats) back is accepted and changes nothing.
    again = "\n".join(
        line
        for line in expect.splitlines()
        if line and not line.startswith(("last_handshake", "tx_bytes", "rx_bytes", "errno"))
    )
    t.ipc_set(again + "\n")
    assert t.ipc_get() == expect


def test_stats_and_handshake_time_in_get():
    a, b = pair()
    handshake(a, b)
    pump(a, b)
    text = a.ipc_get()
    st = a.peer_stats(b.public_key)
    sec = int(st.last_handshake)
    assert f"last_handshake_time_sec={sec}\n" in text
    assert f"tx_bytes={st.tx_bytes}\n" in text and st.tx_bytes == 148 + 64
    assert f"rx_bytes={st.rx_bytes}\n" in text and st.rx_bytes == 92


@pytest.mark.parametrize(
    "body,code",
    [
        ("bogus=1", errno.EINVAL),  # unknown device key
        ("private_key=abcd", errno.EINVAL),  # bad key length
        ("private_key=" + "zz" * 32, errno.EINVAL),
        ("listen_port=65536", errno.EINVAL),
        ("listen_port=-1", errno.EINVAL),
        ("fwmark=4294967296", errno.EINVAL),
        ("replace_peers=yes", errno.EINVAL),
        ("no equals sign", errno.EPROTO),
        (f"public_key={P1.hex()[:-2]}", errno.EINVAL),
        (f"public_key={P1.hex()}\nallowed_ip=10.0.0.0/33", errno.EINVAL),  # bad CIDR
        (f"public_key={P1.hex()}\nallowed_ip=10.0.0.1", errno.EINVAL),
        (f"public_key={P1.hex()}\nallowed_ip=010.0.0.0/8", errno.EINVAL),
        (f"public_key={P1.hex()}\nallowed_ip=10.0.0.0/08", errno.EINVAL),
        (f"public_key={P1.hex()}\nallowed_ip=fd00::/129", errno.EINVAL),
        (f"public_key={P1.hex()}\nendpoint=1.2.3.4", errno.EINVAL),
        (f"public_key={P1.hex()}\nendpoint=1.2.3.4:99999", errno.EINVAL),
        (f"public_key={P1.hex()}\nendpoint=[::1:80", errno.EINVAL),
        (f"public_key={P1.hex()}\nendpoint=derp:1234", errno.EINVAL),
        (f"public_key={P1.hex()}\npersistent_keepalive_interval=65536", errno.EINVAL),
        (f"public_key={P1.hex()}\nprotocol_version=2", errno.EINVAL),
        (f"public_key={P1.hex()}\npreshared_key=00", errno.EINVAL),
        (f"public_key={P1.hex()}\nremove=1", errno.EINVAL),
        (f"public_key={P1.hex()}\nupdate_only=false", errno.EINVAL),
        (f"public_key={P1.hex()}\nreplace_allowed_ips=TRUE", errno.EINVAL),
        (f"public_key={P1.hex()}\nlisten_port=1", errno.EINVAL),  # device key in a peer section
        (f"public_key={P1.hex()}\nbogus=1", errno.EINVAL),
    ],
)
def test_errors(body, code):
    t = Tunnel(seed=1)
    assert set_errno(t, body) == -code
    with pytest.raises(ConfigError) as ei:
        Tunnel(seed=1).ipc_set(body + "\n")
    assert ei.value.errno == code


def test_error_stops_but_keeps_earlier_lines():
    t = Tunnel(seed=1)
    assert set_errno(t, f"public_key={P1.hex()}\nallowed_ip=10.1.0.0/16\nallowed_ip=bad\nallowed_ip=10.2.0.0/16") == -22
    assert t.allowed_ips(P1) == ["10.1.0.0/16"]


def test_replace_peers_and_allowed_ips():
    t = Tunnel(seed=1)
    t.ipc_set(f"public_key={P1.hex()}\nallowed_ip=10.1.0.0/16\npublic_key={P2.hex()}\nallowed_ip=10.2.0.0/16\n")
    assert set(t.peers) == {P1, P2}
    t.ipc_set(f"public_key={P1.hex()}\nallowed_ip=10.3.0.0/16\n")  # adds
    assert t.allowed_ips(P1) == ["10.1.0.0/16", "10.3.0.0/16"]
    t.ipc_set(f"public_key={P1.hex()}\nreplace_allowed_ips=true\nallowed_ip=10.4.0.0/16\n")
    assert t.allowed_ips(P1) == ["10.4.0.0/16"]
    t.ipc_set(f"public_key={P1.hex()}\nallowed_ip=-10.4.0.0/16\nallowed_ip=10.5.0.0/16\n")
    assert t.allowed_ips(P1) == ["10.5.0.0/16"]
    t.ipc_set(f"replace_peers=true\npublic_key={P2.hex()}\n")
    assert t.peers == [P2]
    assert t.allowed_ips(P2) == []  # a new peer: the old P2 and its IPs are gone
    assert t.route("10.5.0.1") is None


def test_remove_and_update_only():
    t = Tunnel(seed=1)
    t.ipc_set(f"public_key={P1.hex()}\nallowed_ip=10.1.0.0/16\n")
    # update_only on an unknown peer creates nothing (and later lines are ignored).
    t.ipc_set(f"public_key={P2.hex()}\nupdate_only=true\nallowed_ip=10.2.0.0/16\n")
    assert t.peers == [P1] and t.route("10.2.0.1") is None
    # update_only on a known peer updates it.
    t.ipc_set(f"public_key={P1.hex()}\nupdate_only=true\nallowed_ip=10.3.0.0/16\n")
    assert t.allowed_ips(P1) == ["10.1.0.0/16", "10.3.0.0/16"]
    t.ipc_set(f"public_key={P1.hex()}\nremove=true\nallowed_ip=10.9.0.0/16\n")
    assert t.peers == [] and t.route("10.1.0.1") is None and t.route("10.9.0.1") is None
    # Removing an unknown peer is fine.
    t.ipc_set(f"public_key={P2.hex()}\nremove=true\n")
    assert t.peers == []


def test_own_public_key_is_ignored():
    t = Tunnel(K1)
    t.ipc_set(f"public_key={P1.hex()}\nallowed_ip=10.0.0.0/8\nendpoint=1.2.3.4:5\n")
    assert t.peers == []
    # A new private key equal to a peer's key removes that peer.
    t.ipc_set(f"public_key={P2.hex()}\n")
    t.ipc_set(f"private_key={K2.hex()}\n")
    assert t.peers == []


def test_private_key_zero_removes_and_same_key_keeps_sessions():
    a, b = pair()
    handshake(a, b)
    pump(a, b)
    key = a.ipc_get().splitlines()[0]
    a.ipc_set(key + "\n")  # wg setconf resends it: the session survives
    a.send(ipv4_udp(A_IP, B_IP))
    assert [d[0] for _, d in a.outgoing()] == [4]
    a.ipc_set("private_key=" + "0" * 64 + "\n")
    assert a.private_key is None and not a.ipc_get().startswith("private_key")
    assert a.peers == [b.public_key]


def test_preshared_key_zero_means_none():
    t = Tunnel(seed=1)
    t.ipc_set(f"public_key={P1.hex()}\npreshared_key={PSK.hex()}\n")
    assert f"preshared_key={PSK.hex()}" in t.ipc_get()
    t.ipc_set(f"public_key={P1.hex()}\npreshared_key={'0' * 64}\n")
    assert f"preshared_key={'0' * 64}" in t.ipc_get()


def test_uppercase_hex_accepted():
    t = Tunnel(seed=1)
    t.ipc_set(f"public_key={P1.hex().upper()}\n")
    assert t.peers == [P1]


def test_persistent_keepalive_on_sends_at_section_end():
    a, b = pair()
    handshake(a, b)
    pump(a, b)
    a.ipc_set(f"public_key={b.public_key.hex()}\npersistent_keepalive_interval=25\n")
    assert [len(d) for _, d in a.outgoing()] == [32]
    a.ipc_set(f"public_key={b.public_key.hex()}\npersistent_keepalive_interval=30\n")
    assert a.outgoing() == []  # only when turned on
    assert "persistent_keepalive_interval=30" in a.ipc_get()


def test_listen_port_and_fwmark_recorded():
    t = Tunnel(seed=1, listen_port=0)
    assert "listen_port" not in t.ipc_get()
    t.ipc_set("listen_port=12345\nfwmark=0\n")
    text = t.ipc_get()
    assert "listen_port=12345\n" in text and "fwmark" not in text


def test_listen_port_in_use_and_random():
    t = Tunnel(seed=1, listen_port=51820)
    lib.wg_tunnel_set_busy_port(t._tp, 51821)
    with pytest.raises(ConfigError) as ei:
        t.ipc_set("listen_port=51821\n")
    assert ei.value.errno == errno.EADDRINUSE
    assert "listen_port=51820\n" in t.ipc_get()
    t.ipc_set("listen_port=0\n")  # the real bound port is reported
    port = int(t.ipc_get().split("listen_port=")[1].split("\n")[0])
    assert 32768 <= port < 61000


def test_framing():
    assert lib.wg_uapi_request_len(b"get=1\n", 6) == 0
    assert lib.wg_uapi_request_len(b"get=1\n\nget=1\n\n", 14) == 7
    assert lib.wg_uapi_request_len(b"set=1\nlisten_port=1\n", 20) == 0
    assert lib.wg_uapi_request_len(b"set=1\nlisten_port=1\n\nxx", 23) == 21
    assert lib.wg_uapi_request_len(b"set=1\n\n", 7) == 7
    assert lib.wg_uapi_request_len(b"hello\n", 6) == 6
    t = Tunnel(seed=1)
    assert request(t, "hello\n")[0] == -errno.EPROTO
    rc, reply = request(t, "get=1\nx")
    assert rc == 0 and reply == "errno=-22\n\n"
    assert request(t, "set=1\n\n") == (0, "errno=0\n\n")
