"""spanza._addr's IP parsing without the ipaddress module (cold start) gives
what ipaddress gives: the same values and texts, the same errors."""

from __future__ import annotations

import ipaddress
import random

import pytest

from spanza import _addr

SAMPLES = [
    "192.168.4.1",
    "0.0.0.0",
    "255.255.255.255",
    "1.2.3.4",
    "01.2.3.4",
    "1.2.3.04",
    "1.2.3.256",
    "1.2.3",
    "1.2.3.4.5",
    " 1.2.3.4",
    "1.2.3.4 ",
    "1.2.3.4\0",
    "١.2.3.4",
    "0x1.2.3.4",
    "::",
    "::1",
    "::2",
    "::1.2.3.4",
    "::ffff:1.2.3.4",
    "::ffff:102:304",
    "::ffff:0:0",
    "64:ff9b::1.2.3.4",
    "fd00::1",
    "FD00:0:0::1",
    "fd00:0:0:0:0:0:0:1",
    "2001:db8:0:0:1:0:0:1",
    "2001:db8::1:0:0:1",
    "2001:0:0:1:0:0:0:1",
    "1:0:0:2:0:0:3:4",
    "1:2:3:4:5:6:7:8",
    "1:2:3:4:5:6:7::",
    "::2:3:4:5:6:7:8",
    "1:2:3:4:5:6:7:8:9",
    "1:2:3:4::5:6:7:8",
    "1::2::3",
    ":1::",
    "1::2:",
    "00001::",
    "0001::",
    "fe80::1%eth0",
    "fe80::1%1",
    "1.2.3.4%1",
    "::ffff:1.2.3.04",
    "1:2:3:4:5:6:1.2.3.4",
    "1:2:3:4:5:6:7:1.2.3.4",
    "",
    "localhost",
    "g::1",
]
PREFIXES = ["", "/0", "/24", "/024", "/32", "/33", "/64", "/128", "/129", "/", "/ 24", "/24 ", "/255.255.0.0", "/²"]
PREFIXES += ["/1/2", "/0.0.255.255"]


def _random_texts(n: int) -> list[str]:
    rnd = random.Random(7)
    out = []
    for _ in range(n):
        if rnd.random() < 0.5:
            groups = [f"{rnd.randrange(0x10000):x}" if rnd.random() < 0.6 else "0" for _ in range(8)]
            i = rnd.randrange(8)
            j = rnd.randrange(i, 9)
            text = ":".join(groups[:i]) + ("::" if rnd.random() < 0.5 else ":") + ":".join(groups[j:])
        else:
            text = "".join(rnd.choice("0123456789abf:.") for _ in range(rnd.randrange(1, 16)))
        out.append(text)
    return out


def _outcome(fn, value):
    try:
        return fn(value)
    except (ValueError, TypeError) as e:
        return type(e), str(e)


def _ref_ip(value):
    a = ipaddress.ip_address(value)
    return a.version, a.packed, str(a)


def _ref_interface(value):
    i = ipaddress.ip_interface(value)
    return (i.version, i.ip.packed, str(i.ip)), i.network.prefixlen, str(i)


def _ref_network(value):
    return str(ipaddress.ip_network(value, strict=False))


TEXTS = SAMPLES + _random_texts(3000)


@pytest.mark.parametrize("value", [*SAMPLES, 3232236545, b"\x01\x02\x03\x04", ipaddress.ip_address("fd00::1")])
def test_ip_address_is_ipaddress(value):
    assert _outcome(_addr.ip_address, value) == _outcome(_ref_ip, value)


def test_ip_address_random_texts():
    bad = [t for t in TEXTS if _outcome(_addr.ip_address, t) != _outcome(_ref_ip, t)]
    assert bad == []


def test_ip_interface_and_network_are_ipaddress():
    values = [t + p for t in SAMPLES for p in PREFIXES] + [t + "/64" for t in TEXTS]
    values += [("192.168.4.1", 24), 3232236545, ipaddress.ip_interface("fd00::1/64"), None]
    bad = [v for v in values if _outcome(_addr.ip_interface, v) != _outcome(_ref_interface, v)]
    bad += [v for v in values if _outcome(_addr.ip_network, v) != _outcome(_ref_network, v)]
    assert bad == []


def test_ip_text_is_ipaddress():
    rnd = random.Random(3)
    packed = [bytes(16), bytes(15) + b"\x01", bytes(10) + b"\xff\xff\x01\x02\x03\x04", bytes(12) + b"\x01\x02\x03\x04"]
    packed += [rnd.randbytes(4) for _ in range(200)]
    for _ in range(2000):  # runs of zero groups, as compression sees them
        packed.append(b"".join(rnd.choice([b"\0\0", rnd.randbytes(2)]) for _ in range(8)))
    assert [_addr.ip_text(p) for p in packed] == [str(ipaddress.ip_address(p)) for p in packed]


def test_plain_literals_do_not_import_ipaddress():
    import subprocess
    import sys

    code = (
        "import sys; from spanza import _addr\n"
        "_addr.ip_address('192.168.4.1'); _addr.ip_interface('fd00::1/64'); _addr.ip_network('10.1.2.3/8')\n"
        "_addr.parse_address('127.0.0.1:5', 'x'); _addr.ip_text(b'\\1' + bytes(15))\n"
        "print('ipaddress' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
