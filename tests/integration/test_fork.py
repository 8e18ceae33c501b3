"""Spanza after os.fork(): the child never hangs. The parent's objects raise
ClosedError there (saying to use the spawn start method); new objects work
(a fresh runtime); lwIP hosts, one stack per process, are refused at once
in a child forked while the parent had hosts."""

from __future__ import annotations

import gc
import multiprocessing
import os
from typing import Any

import pytest

import spanza
from spanza import DerpServer, Device, PrivateKey
from spanza._ffi import lib
from spanza.scenario import Peer, connect


def _udp_round_trip() -> str:
    """Two devices, a handshake over loopback UDP, one packet: Spanza works."""
    from spanza.packets import udp

    ka, kb = PrivateKey.generate(), PrivateKey.generate()
    with Device(ka, listen_port=0) as a, Device(kb, listen_port=0) as b:
        a.add_peer(kb.public_key, endpoint=f"127.0.0.1:{b.listen_port}", allowed_ips=["10.0.0.2/32"])
        b.add_peer(ka.public_key, endpoint=f"127.0.0.1:{a.listen_port}", allowed_ips=["10.0.0.1/32"])
        a.write_packet(udp("10.0.0.1", "10.0.0.2", 1000, 2000, b"over the tunnel"))
        got = b.read_packet(timeout=10)
        return "ok" if got.endswith(b"over the tunnel") else "wrong packet"


def _peers_over_a_relay() -> str:
    """A relay and two peers with hosts, an HTTP GET through the tunnel."""
    with DerpServer() as relay, Peer(relay.url, "10.93.0.1/24") as a, Peer(relay.url, "10.93.0.2/24") as b:
        connect(a, b)
        a.serve_http(80, body=b"from a fresh child")
        status, body = b.http_get("http://10.93.0.1/", timeout=10)
        return "ok" if (status, body) == (200, b"from a fresh child") else f"{status} {body!r}"


def _host_in_child() -> str:
    try:
        Device(listen_port=0, address="10.93.1.1/24").close()
    except spanza.SpanzaError as e:
        return str(e)
    return "made a host"


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_multiprocessing_children_use_spanza(method: str) -> None:
    gc.collect()  # hosts dropped by earlier tests must not count as the parent's
    parent_has_hosts = lib.ns_host_count() > 0
    parent = Device(listen_port=0)  # the parent's runtime is running when it forks
    try:
        ctx = multiprocessing.get_context(method)
        with ctx.Pool(2) as pool:
            assert pool.apply(_udp_round_trip) == "ok"
            if method == "spawn" or not parent_has_hosts:
                assert pool.apply(_peers_over_a_relay) == "ok"
        assert parent.stats()["udp_port"] == parent.listen_port  # still fine here
    finally:
        parent.close()


def test_forked_child_host_refused_at_once_when_the_parent_has_hosts() -> None:
    with Device(listen_port=0, address="10.93.2.1/24"):
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(1) as pool:
            msg = pool.apply(_host_in_child, ())
    assert "spawn" in msg and "forked" in msg, msg


def _in_forked_child(parent_objs: list[Any]) -> None:
    """Runs in the child of os.fork(); exits 0 when everything held."""
    try:
        for obj in parent_objs:
            try:
                obj.stats()
            except spanza.ClosedError as e:
                assert "parent process" in str(e) and "spawn" in str(e), e
            else:
                raise AssertionError(f"{obj!r} was usable in the child")
            assert obj.closed
            obj.close()  # a no-op: the C side is the parent's
        assert _udp_round_trip() == "ok"
        with DerpServer() as relay:
            assert relay.stats()["clients"] == 0
        os._exit(0)
    except BaseException as e:
        os.write(2, f"child: {e!r}\n".encode())
        os._exit(1)


def test_os_fork_child_gets_closed_error_for_parent_objects_and_works() -> None:
    with (
        DerpServer() as relay,
        Device(listen_port=0) as dev,
        spanza.DerpClient(relay.url, PrivateKey.generate()) as client,
    ):
        client.wait_connected(10)
        pid = os.fork()
        if pid == 0:
            _in_forked_child([relay, dev, client])
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert dev.stats() and relay.stats()["clients"] == 1  # the parent's are untouched
