"""Our DERP client against Tailscale's derper and Tailscale's Go client
(built by `make go-helpers` from the pinned tailscale.com module)."""

from __future__ import annotations

import hashlib
import os
import ssl
import time

import pytest

import spanza
from spanza.derp_client import Disconnected, PeerGone
from spanza.keys import PublicKey
from tests.interop.gohelpers import Derper, GoDerpClient
from tests.support import wait_event

pytestmark = pytest.mark.interop

MAX = 65536  # DERP's MaxPacketSize


@pytest.fixture(scope="module")
def derper():
    with Derper() as d:
        yield d


@pytest.fixture(scope="module")
def tls_derper():
    with Derper(tls=True) as d:
        yield d


def new_client(url: str, **kw) -> spanza.DerpClient:
    c = spanza.DerpClient(url, os.urandom(32), **kw)
    try:
        c.wait_connected(15)
    except BaseException:
        c.close()
        raise
    return c


def exchange(a: spanza.DerpClient, b: spanza.DerpClient) -> None:
    """1 byte and 64 KiB, both ways, byte for byte."""
    for size in (1, MAX):
        for src, dst in ((a, b), (b, a)):
            data = os.urandom(size)
            src.send(dst.public_key, data)
            assert dst.recv(10) == (src.public_key, data)


def cert_sha256(path) -> str:
    der = ssl.PEM_cert_to_DER_cert(open(path).read())
    return hashlib.sha256(der).hexdigest()


def test_two_clients_over_plain_http(derper):
    with new_client(derper.url) as a, new_client(derper.url) as b:
        exchange(a, b)
        sa, sb = a.stats(), b.stats()
        assert sa["packets_sent"] == 2 and sa["packets_recv"] == 2
        assert sb["bytes_recv"] == 1 + MAX
        assert sa["protocol_errors"] == sb["protocol_errors"] == 0


def test_many_packets_in_order(derper):
    # derper queues at most 32 packets for a receiving client and drops the
    # rest: windows of 16, each sent once the last one arrived, so a receiver
    # slowed down by a loaded machine loses nothing (pacing by time did).
    with new_client(derper.url) as a, new_client(derper.url) as b:
        n, window = 300, 16
        got: list[int] = []
        for start in range(0, n, window):
            batch = range(start, min(start + window, n))
            for i in batch:
                a.send(b.public_key, i.to_bytes(4, "big") + bytes(1200))
            got += [int.from_bytes(b.recv(10)[1][:4], "big") for _ in batch]
        assert got == list(range(n))


def test_peer_gone_when_a_peer_leaves(derper):
    with new_client(derper.url) as b:
        a = new_client(derper.url)
        a.send(b.public_key, b"hi")  # derper tells b about a only once b got a packet from a
        assert b.recv(10) == (a.public_key, b"hi")
        a_pub = a.public_key
        a.close()
        assert wait_event(b, PeerGone, 10) == PeerGone(a_pub, PeerGone.DISCONNECTED)


def test_with_tailscales_go_client(derper):
    with new_client(derper.url) as ours, GoDerpClient(derper.url) as go:
        go.wait_event("server_info")  # derper registered it (ServerInfo follows registration)
        go_pub = bytes.fromhex(go.public_key.removeprefix("nodekey:"))
        for size in (1, 1400, MAX):
            data = os.urandom(size)
            ours.send(go_pub, data)
            assert go.recv() == (PublicKey(ours.public_key).tailscale, data)
            data = os.urandom(size)
            go.send(PublicKey(ours.public_key).tailscale, data)
            assert ours.recv(10) == (go_pub, data)
        assert ours.next_event(1).server_key.hex() == go.server_key.removeprefix("nodekey:")


def test_ping_and_note_preferred(derper):
    with new_client(derper.url) as c:
        c.note_preferred(True)  # derper closes a connection on a malformed NotePreferred
        for _ in range(3):
            assert 0 < c.ping(5) < 5
        st = c.stats()
        assert st["pongs_recv"] == 3 and st["disconnects"] == 0


@pytest.mark.parametrize("mode", ["ca_file", "pin_sha256", "pin_sha256_raw", "insecure"])
def test_tls(tls_derper, mode):
    cert = tls_derper.cert_file
    kw = {
        "ca_file": {"ca_file": cert},
        "pin_sha256": {"pin_sha256": cert_sha256(cert)},
        "pin_sha256_raw": {"pin_sha256": "sha256-raw:" + cert_sha256(cert)},
        "insecure": {"insecure": True},
    }[mode]
    with new_client(tls_derper.url, **kw) as a, new_client(tls_derper.url, **kw) as b:
        exchange(a, b)
        assert a.stats()["tls_errors"] == 0


def test_tls_with_go_client(tls_derper):
    with (
        new_client(tls_derper.url, ca_file=tls_derper.cert_file) as ours,
        GoDerpClient(tls_derper.url, ca_file=tls_derper.cert_file) as go,
    ):
        go.wait_event("server_info")  # derper registered it (ServerInfo follows registration)
        go_pub = bytes.fromhex(go.public_key.removeprefix("nodekey:"))
        ours.send(go_pub, b"over tls")
        assert go.recv() == (PublicKey(ours.public_key).tailscale, b"over tls")
        go.send(PublicKey(ours.public_key).tailscale, b"and back")
        assert ours.recv(10) == (go_pub, b"and back")


@pytest.mark.parametrize("mode", ["system_cas", "wrong_pin"])
def test_tls_verification_failures_are_reported(tls_derper, mode):
    kw = {"pin_sha256": "00" * 32} if mode == "wrong_pin" else {}
    with spanza.DerpClient(tls_derper.url, os.urandom(32), backoff_max_ms=200, **kw) as c:
        deadline = time.monotonic() + 10
        while c.stats()["tls_errors"] < 1:
            assert time.monotonic() < deadline, "no TLS failure reported"
            time.sleep(0.01)
        with pytest.raises(TimeoutError, match="certificate"):
            c.wait_connected(0.01)
        st = c.stats()
        assert st["tls_errors"] >= 1 and st["connects"] == 0
        if mode == "wrong_pin":
            assert "does not match pin_sha256" in c.last_error
        else:
            assert "certificate verification failed" in c.last_error


@pytest.mark.slow
def test_reconnects_after_derper_restart_and_queues_while_down():
    with Derper() as d:
        with new_client(d.url, queue_size=8, backoff_max_ms=300) as a, new_client(d.url, backoff_max_ms=300) as b:
            exchange(a, b)
            d.stop()
            deadline = time.monotonic() + 10
            while a.connected or b.connected:
                assert time.monotonic() < deadline, "clients did not notice derper stopping"
                time.sleep(0.01)
            sent_before = a.stats()["packets_sent"]
            for i in range(20):
                a.send(b.public_key, bytes([i]))
            st = a.stats()
            assert st["queued"] == 8 and st["drops_queue_full"] == 12
            assert isinstance(a.next_event(1), spanza.derp_client.Connected)
            assert isinstance(a.next_event(1), Disconnected)

            while min(a.stats()["connect_failures"], b.stats()["connect_failures"]) < 1:
                assert time.monotonic() < deadline, "no reconnect attempt while derper was down"
                time.sleep(0.01)
            assert "Connection refused" in a.last_error

            d.start()  # same port, same key file
            a.wait_connected(15)
            b.wait_connected(15)
            for c in (a, b):
                st = c.stats()
                assert st["reconnects"] == 1 and st["disconnects"] == 1
            deadline = time.monotonic() + 5
            while a.stats()["packets_sent"] < sent_before + 8:
                assert time.monotonic() < deadline, "queued packets were not sent after the reconnect"
                time.sleep(0.01)
            # b may have missed some (it may have reconnected after a flushed
            # its queue: derper drops packets to absent peers), but whatever
            # it got is the newest eight, in order.
            a.send(b.public_key, b"fresh")
            got = []
            while True:
                src, data = b.recv(10)
                assert src == a.public_key
                if data == b"fresh":
                    break
                got.append(data[0])
            assert got == sorted(got) and set(got) <= set(range(12, 20))
            exchange(a, b)
