"""Interop with Debian's wireguard-go (configured with Debian's wg) in a
network namespace this test creates, reached over a veth link with
test-owned addresses. The Spanza device runs in this process on the host
side of the veth; the namespace's kernel answers pings on wireguard-go's
TUN, and an EchoResponder answers pings on the Spanza side."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import time
from dataclasses import dataclass

import pytest

from spanza import packets
from spanza.device import Device
from tests.interop.netns import NetNS, Veth, WgPeer, WireGuardGo, genkey, kill_tree, require_root, wait_for

pytestmark = pytest.mark.interop

GO4, SPZ4 = "10.99.0.1", "10.99.0.2"
GO6, SPZ6 = "fd99::1", "fd99::2"


@dataclass
class Net:
    ns: NetNS
    link: Veth
    go: WireGuardGo
    go_priv: str
    go_pub: str


@pytest.fixture
def net():
    require_root("wireguard-go", "wg", "ping")
    go_priv, go_pub = genkey()
    with NetNS() as ns, Veth(ns) as link, WireGuardGo(ns) as go:
        yield Net(ns, link, go, go_priv, go_pub)


def spanza_key() -> tuple[str, str]:
    return genkey()


def setup_pair(
    net: Net, *, v6_outer: bool, psk: str | None = None, go_knows_endpoint: bool = True, keylog: str | None = None
) -> Device:
    """Configures wireguard-go and returns a Spanza device peered with it."""
    priv, pub = spanza_key()
    dev = Device(private_key=priv, keylog_file=keylog)
    host = net.link.host_v6 if v6_outer else net.link.host_v4
    go_ep = f"[{host}]:{dev.listen_port}" if v6_outer else f"{host}:{dev.listen_port}"
    net.go.configure(
        net.go_priv,
        0,
        addresses=[f"{GO4}/24", f"{GO6}/64"],
        peers=[WgPeer(pub, [f"{SPZ4}/32", f"{SPZ6}/128"], go_ep if go_knows_endpoint else None, psk)],
    )
    port = net.go.listen_port
    nsaddr = net.link.ns_v6 if v6_outer else net.link.ns_v4
    dev.add_peer(net.go_pub, endpoint=(nsaddr, port), allowed_ips=[f"{GO4}/32", f"{GO6}/128"], preshared_key=psk)
    return dev


def ping_through(dev: Device, src: str, dst: str, seq: int, timeout: float = 6.0) -> packets.Packet:
    """Writes an echo request (again each second: a namespace kernel that is
    still bringing an address up may drop the first); returns the parsed echo
    reply read back."""
    req = packets.icmp_echo(src, dst, 0x5A, seq, b"spanza-interop-%d" % seq)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dev.write_packet(req)
        resend = min(deadline, time.monotonic() + 1.0)
        while time.monotonic() < resend:
            try:
                pkt = packets.parse(dev.read_packet(timeout=max(0.01, resend - time.monotonic())))
            except TimeoutError:
                break
            if pkt.is_echo_reply and pkt.seq == seq:
                assert pkt.checksum_ok and str(pkt.src) == dst and str(pkt.dst) == src
                assert pkt.data == b"spanza-interop-%d" % seq
                return pkt
    raise AssertionError(f"no echo reply from {dst} in {timeout} s; device stats: {dev.stats()}")


@pytest.mark.parametrize("psk", [False, True], ids=["no-psk", "psk"])
@pytest.mark.parametrize("v6_outer", [False, True], ids=["udp4", "udp6"])
def test_spanza_initiates_and_namespace_kernel_answers(net, v6_outer, psk):
    key = base64.b64encode(os.urandom(32)).decode() if psk else None
    # wireguard-go does not know our endpoint: it learns it from the handshake.
    with setup_pair(net, v6_outer=v6_outer, psk=key, go_knows_endpoint=False) as dev:
        ping_through(dev, SPZ4, GO4, 1)
        ping_through(dev, SPZ6, GO6, 2)
        (peer,) = dev.peers
        assert peer.last_handshake is not None and peer.rx_bytes > 0 and peer.tx_bytes > 0
        assert dev.stats()["initiations_sent"] >= 1
        row = net.go.dump()[1]
        assert row[0] == str(dev.public_key)
        assert int(row[4]) > 0  # wireguard-go's latest handshake
        host = net.link.host_v6 if v6_outer else net.link.host_v4
        assert row[2] == (f"[{host}]:{dev.listen_port}" if v6_outer else f"{host}:{dev.listen_port}")


@pytest.mark.parametrize("v6_outer", [False, True], ids=["udp4", "udp6"])
def test_wireguard_go_initiates_and_spanza_answers_pings(net, v6_outer):
    with setup_pair(net, v6_outer=v6_outer) as dev, packets.EchoResponder(dev, (SPZ4, SPZ6)) as responder:
        r4 = net.ns.run("ping", "-c", "3", "-i", "0.2", "-W", "5", SPZ4, check=False, timeout=30)
        assert r4.returncode == 0, r4.stdout + r4.stderr
        r6 = net.ns.run("ping", "-6", "-c", "3", "-i", "0.2", "-W", "5", SPZ6, check=False, timeout=30)
        assert r6.returncode == 0, r6.stdout + r6.stderr
        assert responder.answered >= 6
        s = dev.stats()
        assert s["initiations_received"] >= 1 and s["responses_sent"] >= 1 and s["initiations_sent"] == 0


@pytest.mark.slow
def test_cookie_reply_under_load_with_wireguard_go_initiating(net):
    """Spanza forced under load: wireguard-go's first initiation (no mac2)
    gets a cookie reply; its retransmission 5 s later carries mac2 and the
    handshake completes; the ping waits through it."""
    with setup_pair(net, v6_outer=False) as dev, packets.EchoResponder(dev, (SPZ4,)) as responder:
        dev.set_under_load("force")
        t0 = time.monotonic()
        r = net.ns.run("ping", "-c", "1", "-W", "15", SPZ4, check=False, timeout=30)
        took = time.monotonic() - t0
        assert r.returncode == 0, r.stdout + r.stderr
        s = dev.stats()
        assert s["cookies_sent"] >= 1 and s["drops"]["cookie_needed"] >= 1
        assert s["initiations_received"] >= 1 and responder.answered == 1
        assert took > 4  # the first initiation was refused; the retry came after REKEY_TIMEOUT


def _dumpcap(ns: NetNS, ifname: str, out: str) -> subprocess.Popen:
    p = ns.popen(
        "dumpcap",
        "-q",
        "-i",
        ifname,
        "-f",
        "udp",
        "-w",
        out,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: os.path.exists(out) and os.path.getsize(out) > 0 or p.poll() is not None, 10, "dumpcap to start")
    if p.poll() is not None:
        raise RuntimeError(f"dumpcap failed: {p.stderr.read()}")
    time.sleep(0.3)  # the file header is written before the capture is live
    return p


def test_tshark_decodes_and_decrypts_the_handshake(net, tmp_path):
    require_root("dumpcap", "tshark")
    keylog = str(tmp_path / "keys.log")
    cap = str(tmp_path / "wg.pcapng")
    p = _dumpcap(net.ns, net.link.ns_if, cap)
    try:
        with setup_pair(net, v6_outer=False, keylog=keylog, go_knows_endpoint=False) as dev:
            ping_through(dev, SPZ4, GO4, 1)
            ping_through(dev, SPZ4, GO4, 2)
            spz_pub = str(dev.public_key)
            time.sleep(0.3)
    finally:
        os.killpg(p.pid, signal.SIGINT)
        kill_tree(p)
    text = open(keylog).read()
    assert text.count("LOCAL_EPHEMERAL_PRIVATE_KEY = ") >= 1 and "PRESHARED_KEY = " in text
    r = subprocess.run(
        [
            "tshark",
            "-r",
            cap,
            "-o",
            f"wg.keylog_file:{keylog}",
            "-Y",
            "wg",
            "-T",
            "fields",
            "-e",
            "wg.type",
            "-e",
            "wg.static",
            "-e",
            "wg.handshake_ok",
            "-e",
            "icmp.type",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    rows = [line.split("\t") for line in r.stdout.splitlines()]
    types = [row[0] for row in rows]
    assert "1" in types and "2" in types and "4" in types, r.stdout
    init = next(row for row in rows if row[0] == "1")
    # The initiation's encrypted static key decrypts to our public key.
    assert init[1] == spz_pub
    assert any(row[2] in ("1", "True") for row in rows if row[0] == "2"), r.stdout
    icmp = {row[3] for row in rows if row[0] == "4"}
    assert "8" in icmp and "0" in icmp, r.stdout  # inner echo request and reply, decrypted
