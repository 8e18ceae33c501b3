"""A capture of the gateway-mode scenario as pcapng, read by Debian's
tshark with no other input than the file and the shipped DERP dissector:
ICMP, TCP and HTTP decrypted inside the WireGuard hops, DERP frames
decoded, and WireGuard decrypted inside the DERP frames too."""

import os
import shutil
import struct
import subprocess

import pytest

from spanza import trace
from spanza.scenario import connect

TSHARK = shutil.which("tshark")
pytestmark = pytest.mark.skipif(TSHARK is None, reason="tshark is installed by scripts/install-deps.sh")


def tshark(path, display_filter, *fields):
    cmd = [
        TSHARK,
        "-n",
        "-r",
        str(path),
        "-X",
        f"lua_script:{trace.wireshark_plugin()}",
        # the same segment at every hop would be a "retransmission"
        # (not dissected again) and confuse reassembly: dissect each alone
        "-o",
        "tcp.analyze_sequence_numbers:FALSE",
        "-o",
        "tcp.desegment_tcp_streams:FALSE",
        "-Y",
        display_filter,
        "-T",
        "fields",
    ]
    for f in fields:
        cmd += ["-e", f]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    assert "Lua" not in p.stderr, p.stderr
    return [line.split("\t") for line in p.stdout.splitlines() if line]


@pytest.fixture(scope="module")
def pcapng(tmp_path_factory, derp_server):
    from spanza.scenario import Peer

    a = Peer(derp_server.url, "192.168.4.1/24", mode="gateway")
    b = Peer(derp_server.url, "192.168.4.2/24", mode="gateway")
    try:
        with trace.capture(derp_server, a, b, snaplen=0) as cap:
            connect(a, b)
            b.device.ping("192.168.4.1", timeout=5)
            a.serve_http(80, body=b"through the tunnel")
            assert b.http_get("http://192.168.4.1/") == (200, b"through the tunnel")
    finally:
        b.close()
        a.close()
    path = tmp_path_factory.mktemp("trace") / "scenario.pcapng"
    assert cap.write_pcapng(path) == os.fspath(path)
    return path


def test_icmp_is_decrypted_at_the_wireguard_udp_gateway_and_derp_hops(pcapng):
    rows = tshark(pcapng, "wg.type == 4 && icmp", "frame.interface_name", "icmp.type")
    hops = {r[0].rsplit("/", 1)[1] for r in rows}
    assert {"wg-out", "udp-send", "gw-udp-in", "gw-udp-out", "wg-in"} <= hops
    # through the Lua dissector: the DERP frames' payloads decrypt too
    assert {"derp-send", "relay-in", "relay-out", "derp-recv"} <= hops
    assert {r[1] for r in rows} == {"8", "0"}  # echo request and reply


def test_tcp_and_http_are_decrypted(pcapng):
    tcp = tshark(pcapng, "wg.type == 4 && tcp", "tcp.flags.str")
    assert any("S" in r[0] for r in tcp) and any("P" in r[0] for r in tcp)
    http = tshark(
        pcapng,
        "wg.type == 4 && http",
        "frame.interface_name",
        "http.request.method",
        "http.response.code",
    )
    assert {r[1] for r in http if r[1]} == {"GET"}
    assert {r[2] for r in http if r[2]} == {"200"}
    assert any(r[0].endswith("/relay-in") for r in http)


def test_derp_frames_are_decoded_by_the_dissector(pcapng):
    rows = tshark(pcapng, "derp", "frame.interface_name", "derp.type", "derp.packet_len")
    types = {r[1] for r in rows}
    assert {
        "0x04",
        "0x05",
    } <= types  # SendPacket at the client and relay-in, RecvPacket after
    assert all(int(r[2]) > 0 for r in rows if r[1] in ("0x04", "0x05"))


def test_plaintext_hops_are_raw_ip(pcapng):
    rows = tshark(pcapng, "icmp && !wg", "frame.interface_name")
    assert {r[0].rsplit("/", 1)[1] for r in rows} == {
        "host-out",
        "wg-encrypt",
        "wg-decrypt",
        "host-in",
    }


def test_the_key_log_is_in_a_secrets_block_before_the_packets(pcapng):
    data = pcapng.read_bytes()
    blocks, off = [], 0
    while off < len(data):
        btype, blen = struct.unpack_from("<II", data, off)
        blocks.append((btype, data[off + 8 : off + blen - 4]))
        off += blen
    types = [t for t, _ in blocks]
    dsb = types.index(0x0000000A)
    assert dsb < types.index(0x00000006)
    body = blocks[dsb][1]
    kind, n = struct.unpack_from("<II", body)
    assert kind == 0x57474B4C  # "WGKL"
    text = body[8 : 8 + n].decode()
    assert text.count("LOCAL_STATIC_PRIVATE_KEY = ") == 2 and text.endswith("\n")


def test_without_recorded_keys_the_devices_key_log_decrypts(tmp_path, derp_server):
    """keys=False keeps secrets out of the capture; the device's own key
    log file, added when writing, decrypts it (the handshake is in it)."""
    from spanza.scenario import Peer

    keylog = tmp_path / "keys.log"
    a = Peer(derp_server.url, "192.168.4.1/24", mode="gateway")
    b = Peer(derp_server.url, "192.168.4.2/24", mode="gateway")
    try:
        b.device.set_keylog(keylog)
        with trace.capture(derp_server, a, b, snaplen=0, keys=False) as cap:
            connect(a, b)
            b.device.ping("192.168.4.1", timeout=5)
    finally:
        b.close()
        a.close()
    assert cap.keylog() == "" and cap.records(trace.KEYS) == []
    alone, with_log = tmp_path / "alone.pcapng", tmp_path / "with_log.pcapng"
    cap.write_pcapng(alone)
    cap.write_pcapng(with_log, keylog_file=keylog)
    assert tshark(alone, "wg.type == 4 && icmp", "icmp.type") == []
    assert {r[0] for r in tshark(with_log, "wg.type == 4 && icmp", "icmp.type")} == {"8", "0"}
