"""wg-quick files: parsed as wg-quick reads them, errors naming the line,
written back so that reading again gives the same configuration."""

from __future__ import annotations

import pytest

from spanza import Device
from spanza.errors import ConfigError
from spanza.keys import PresharedKey, PrivateKey
from spanza.wgquick import dump, load, parse

KA, KB, KC = PrivateKey.generate(), PrivateKey.generate(), PrivateKey.generate()
PSK = PresharedKey.generate()

CONF = f"""\
# wg0 for tests
[Interface]
PrivateKey = {KA.base64}
Address = 10.7.0.1/24, fd07::1/64
ListenPort = 51999   # inline comment
mtu = 1380
DNS = 1.1.1.1, 9.9.9.9
PostUp = iptables -A FORWARD -i %i -j ACCEPT

[Peer]
PublicKey = {KB.public_key.base64}
PresharedKey = {PSK.base64}
AllowedIPs = 10.7.0.2/32
AllowedIPs = fd07::2/128
Endpoint = 127.0.0.1:51820
PersistentKeepalive = 25

[peer]
publickey = {KC.public_key.base64}
allowedips = 10.7.0.3/32
"""


def test_parse_every_key():
    cfg = parse(CONF)
    i = cfg.interface
    assert i.private_key == KA and i.addresses == ["10.7.0.1/24", "fd07::1/64"]
    assert (i.listen_port, i.mtu, i.dns) == (51999, 1380, ["1.1.1.1", "9.9.9.9"])
    b, c = cfg.peers
    assert b.public_key == KB.public_key and b.preshared_key == PSK
    assert b.allowed_ips == ["10.7.0.2/32", "fd07::2/128"]
    assert (b.endpoint, b.persistent_keepalive) == ("127.0.0.1:51820", 25)
    assert c.public_key == KC.public_key and c.endpoint is None
    assert [n.split(":")[1] for n in cfg.notes] == ["7", "8"]  # DNS and PostUp, by line
    assert "dns ignored" in cfg.notes[0]


def test_dump_then_parse_is_the_same():
    cfg = parse(CONF)
    again = parse(dump(cfg))
    assert again.interface.private_key == cfg.interface.private_key
    assert again.peers == cfg.peers and again.interface.addresses == cfg.interface.addresses


# Ids by name: the texts hold a key made at import, which differs between
# pytest-xdist workers (they must collect the same test ids).
BAD = {
    "bad-private-key": ("[Interface]\nPrivateKey = nope\n", "<config>:2: privatekey"),
    "no-private-key": ("[Interface]\nAddress = 10.0.0.1/24\n", "no PrivateKey"),
    "peer-without-public-key": (
        f"[Interface]\nPrivateKey = {KA.base64}\n[Peer]\nAllowedIPs = 10.0.0.2/32\n",
        "<config>:3: [Peer] has no PublicKey",
    ),
    "port-out-of-range": (
        f"[Interface]\nPrivateKey = {KA.base64}\nListenPort = 70000\n",
        "<config>:3: listenport: 70000 is not in 0..65535",
    ),
    "bad-address": (f"[Interface]\nPrivateKey = {KA.base64}\nAddress = 10.0.0.300/24\n", "<config>:3: address"),
    "unknown-key": (f"[Interface]\nPrivateKey = {KA.base64}\nColour = blue\n", "unknown [Interface] key 'colour'"),
    "unknown-section": (
        f"[Interface]\nPrivateKey = {KA.base64}\n[Router]\n",
        "<config>:3: unknown section [Router]",
    ),
    "key-before-interface": ("PrivateKey = x\n", "before any [Interface]"),
    "line-without-equals": (
        f"[Interface]\nPrivateKey = {KA.base64}\nAddress 10.0.0.1/24\n",
        "<config>:3: expected 'Key = Value'",
    ),
}


@pytest.mark.parametrize("text, message", list(BAD.values()), ids=list(BAD))
def test_errors_name_the_line(text, message):
    with pytest.raises(ConfigError) as info:
        parse(text)
    assert message in str(info.value)


def test_device_from_config_and_back(tmp_path):
    path = tmp_path / "wg0.conf"
    path.write_text(CONF.replace("ListenPort = 51999", "ListenPort = 0"))
    with Device.from_config(path) as dev:
        assert dev.public_key == KA.public_key and dev.addresses == [
            "10.7.0.1",
            "fd07::1",
        ]
        peers = {p.public_key: p for p in dev.peers}
        assert peers[KB.public_key].has_preshared_key and peers[KB.public_key].persistent_keepalive == 25
        text = dev.to_config()
    back = parse(text)
    assert back.interface.private_key == KA and back.interface.mtu == 1380
    assert back.interface.listen_port and back.peers[0].preshared_key == PSK
    assert {p.public_key for p in back.peers} == {KB.public_key, KC.public_key}


def test_load_says_which_file_is_missing(tmp_path):
    with pytest.raises(ConfigError, match="nothere.conf: No such file"):
        load(tmp_path / "nothere.conf")
