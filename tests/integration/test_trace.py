"""spanza.trace on the real path: an HTTP GET in gateway mode is followed
hop by hop (request and response, in order, with non-negative deltas);
packets dropped on purpose show where and why they stopped."""

import threading
import time

import pytest

from spanza import packets, trace
from spanza.errors import ConfigError
from spanza.scenario import connect

REQUEST_PATH = [
    ("192.168.4.2/host", "host-out"),
    ("192.168.4.2/wg", "wg-encrypt"),
    ("192.168.4.2/wg", "wg-out"),
    ("192.168.4.2/wg", "udp-send"),
    ("192.168.4.2/gateway", "gw-udp-in"),
    ("192.168.4.2/gateway", "gw-derp-out"),
    ("192.168.4.2/gw-derp", "derp-send"),
    ("relay", "relay-in"),
    ("relay", "relay-out"),
    ("192.168.4.1/gw-derp", "derp-recv"),
    ("192.168.4.1/gateway", "gw-derp-in"),
    ("192.168.4.1/gateway", "gw-udp-out"),
    ("192.168.4.1/wg", "udp-recv"),
    ("192.168.4.1/wg", "wg-in"),
    ("192.168.4.1/wg", "wg-decrypt"),
    ("192.168.4.1/host", "host-in"),
]


def flip(path):
    swap = {"192.168.4.1": "192.168.4.2", "192.168.4.2": "192.168.4.1"}
    return [
        (
            "/".join([swap.get(label.split("/")[0], label.split("/")[0])] + label.split("/")[1:]),
            hop,
        )
        for label, hop in path
    ]


def tcp_journey(journeys, payload_prefix):
    for j in journeys:
        for r in j.records:
            ip = r.ip
            if ip is not None and r.decoded.get("payload_len") and payload_prefix in ip:
                return j
    raise AssertionError(f"no journey carries {payload_prefix!r}")


def test_http_get_in_gateway_mode_is_traced_hop_by_hop(make_peer, derp_server):
    a = make_peer("192.168.4.1/24", mode="gateway")
    b = make_peer("192.168.4.2/24", mode="gateway")
    with trace.capture(derp_server, a, b) as cap:
        connect(a, b)
        a.serve_http(80, body=b"traced")
        assert b.http_get("http://192.168.4.1/") == (200, b"traced")
    journeys = cap.journeys()
    get = tcp_journey(journeys, b"GET / HTTP/1.1")
    resp = tcp_journey(journeys, b"HTTP/1.1 200")
    for j, path in ((get, REQUEST_PATH), (resp, flip(REQUEST_PATH))):
        assert [(label, hop) for label, hop, _ in j.hops] == path, str(j)
        assert all(dt >= 0 for _, _, dt in j.hops)
        assert j.status == "delivered" and j.stopped_at is None
    # the ciphertext hops carry one datagram: same receiver index and counter
    ctrs = {
        (r.decoded["receiver"], r.decoded["counter"])
        for r in get.records
        if r.hop != trace.NS_OUT and r.hop != trace.NS_IN
    }
    assert len(ctrs) == 1
    # the handshake was traced too, and its keys kept for decryption
    kinds = {r.decoded.get("wg") for j in journeys for r in j.records}
    assert {"initiation", "response", "data"} <= kinds
    assert cap.keylog().count("LOCAL_EPHEMERAL_PRIVATE_KEY") == 2
    s = cap.summary()
    assert s["journeys"].get("delivered", 0) >= 6 and s["overflow"] == 0
    assert "192.168.4.2/gw-derp derp-send" in str(s)


def test_transport_mode_journeys_cross_the_device_derp_clients(make_peer, derp_server):
    a = make_peer("192.168.4.1/24")
    b = make_peer("192.168.4.2/24")
    with trace.capture(derp_server, a, b) as cap:
        connect(a, b)
        a.serve_http(80, body=b"traced")
        assert b.http_get("http://192.168.4.1/") == (200, b"traced")
    get = tcp_journey(cap.journeys(), b"GET / HTTP/1.1")
    assert [hop for _, hop, _ in get.hops] == [
        "host-out",
        "wg-encrypt",
        "wg-out",
        "derp-send",
        "relay-in",
        "relay-out",
        "derp-recv",
        "wg-in",
        "wg-decrypt",
        "host-in",
    ]
    assert get.records[3].label == "192.168.4.2/derp" and get.records[6].label == "192.168.4.1/derp"


def test_a_wrong_allowed_ip_shows_the_drop_and_its_reason(make_peer):
    a = make_peer("192.168.4.1/24")
    b = make_peer("192.168.4.2/24")
    connect(a, b)
    # a accepts from b only a source b does not use
    a.device.add_peer(b.public_key, allowed_ips=["192.168.4.99/32"])
    with trace.capture(a, b) as cap, pytest.raises(TimeoutError):
        b.device.ping("192.168.4.1", timeout=0.5)
    dropped = [j for j in cap.journeys() if j.status == "dropped"]
    assert dropped, "\n".join(map(str, cap.journeys()))
    j = dropped[-1]
    assert j.drop.label == "192.168.4.1/wg" and j.drop.hop_name == "wg"
    assert j.reason == "source_not_allowed"
    assert j.records[0].hop_name == "host-out" and j.records[-1].hop_name == "wg-decrypt"
    assert "ICMP 192.168.4.2 > 192.168.4.1" in j.what
    assert "DROPPED at 192.168.4.1/wg" in str(j)
    assert any("source_not_allowed" in k for k in cap.summary()["drops"])


def test_a_stopped_relay_shows_where_packets_wait(make_peer, make_derp_server):
    relay = make_derp_server()
    opts = {"backoff_max_ms": 200}
    a = make_peer("192.168.4.1/24", mode="gateway", relay=relay, derp_options=opts)
    b = make_peer("192.168.4.2/24", mode="gateway", relay=relay, derp_options=opts)
    connect(a, b)
    b.device.ping("192.168.4.1", timeout=5)  # the session is up
    with trace.capture(a, b) as cap:
        relay.close()
        deadline = time.monotonic() + 5
        while b.gateway.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        result = {}
        # Up to three echoes: the first waits in b's DERP client queue; if
        # b reconnects before a, the relay drops it (a is not there yet).
        t = threading.Thread(target=lambda: result.setdefault("rtt", b.device.ping("192.168.4.1", count=3, timeout=3)))
        t.start()
        deadline = time.monotonic() + 5
        while (
            not any(j.status == "stopped" and j.records[-1].hop_name == "derp-queued" for j in cap.journeys())
            and time.monotonic() < deadline
        ):
            time.sleep(0.02)
        waiting = [j for j in cap.journeys() if j.status == "stopped"]
        assert waiting and "DERP client's queue" in waiting[-1].reason, "\n".join(map(str, cap.journeys()))
        time.sleep(0.2)
        cap.follow(make_derp_server(port=relay.port), name="relay (restarted)")
        t.join(15)
    assert result.get("rtt"), "no ping got through after the restart"
    first = next(j for j in cap.journeys() if "ICMP 192.168.4.2 > 192.168.4.1" in j.what)
    hops = [h for _, h, _ in first.hops]
    assert hops.index("derp-queued") < hops.index("derp-send") < hops.index("relay-in"), str(first)
    waited = {h: dt for _, h, dt in first.hops}["derp-send"]
    assert waited >= 100, str(first)  # ms in the client's queue while the relay was down
    # the reconnections' frames from the restarted relay are traced too
    assert "ServerInfo" in {r.decoded.get("derp") for r in cap.records("derp-recv")}
    assert first.status == "delivered" or (
        first.drop.label == "relay (restarted)" and first.reason == "unknown_destination"
    ), str(first)


def test_hostile_datagrams_and_packets_are_traced_as_drops(make_peer):
    """Garbage from the network and from the user, with tracing and its IP
    filter on: every drop is a record with its reason, nothing breaks."""
    import os
    import socket

    a = make_peer("192.168.4.1/24", mode="gateway")
    port = a.device.listen_port
    with trace.capture(a, port=80, snaplen=64) as cap:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for n in (0, 1, 3, 4, 31, 32, 148, 200, 1500):
                s.sendto(os.urandom(n), ("127.0.0.1", port))
            s.sendto(b"\x04\0\0\0" + os.urandom(60), ("127.0.0.1", port))  # data for no session
        for dst in ("10.9.9.9", "192.168.4.77"):  # no peer has these addresses: dropped by WireGuard
            with pytest.raises(ConfigError, match="allowed_ips"):
                a.device.write_packet(packets.udp("192.168.4.1", dst, 1, 80, os.urandom(100)))
        deadline = time.monotonic() + 5
        while len(cap.drops()) < 12 and time.monotonic() < deadline:
            time.sleep(0.02)
    reasons = {r.reason_name for r in cap.drops()}
    assert {"truncated", "unknown_index", "no_peer"} <= reasons, reasons
    assert all(r.hop_name == "wg" for r in cap.drops())
    inbound = [r for r in cap.records() if r.hop_name == "wg-in"]
    assert len(inbound) >= 9  # the datagrams themselves, as the core saw them
    for r in cap.records():
        r.summary()  # decodes whatever the bytes are
