"""The life of Spanza's handles: close() is idempotent, use after close
names the object, and an object dropped without close() is freed by the
garbage collector (fds, threads, listeners) with a ResourceWarning, as the
standard library does for sockets and files."""

from __future__ import annotations

import gc
import os
import socket
import time
import warnings
from collections.abc import Callable
from typing import Any

import pytest

import spanza
from spanza import DerpClient, DerpServer, Device, Gateway, Host, MemoryWire, PrivateKey, Runtime, Tunnel
from spanza.scenario import Peer


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def threads() -> int:
    """OS threads of this process (the C loops are not Python threads)."""
    return len(os.listdir("/proc/self/task"))


def settle(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Whether `check` holds within timeout (closing joins loops on their way out)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def refused(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def drop(make: Callable[[], Any]) -> list[warnings.WarningMessage]:
    """Makes an object, drops it unclosed, collects; the warnings raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        obj = make()
        assert not obj.closed
        del obj
        gc.collect()
    return [w for w in caught if issubclass(w.category, ResourceWarning)]


@pytest.fixture
def relay():
    with DerpServer() as r:
        yield r


def _makers(relay: DerpServer) -> dict[str, Callable[[], Any]]:
    return {
        "DerpServer": lambda: DerpServer(),
        "Runtime": lambda: Runtime("dropped"),
        "Device": lambda: Device(listen_port=0),
        "Device(address)": lambda: Device(listen_port=0, address="10.77.0.1/24"),
        "Device(derp_url)": lambda: Device(PrivateKey.generate(), listen_port=None, derp_url=relay.url),
        "DerpClient": lambda: DerpClient(relay.url, PrivateKey.generate()),
        "Gateway": lambda: Gateway(relay.url, PrivateKey.generate(), remote_peers=[PrivateKey.generate().public_key]),
        "Peer(gateway)": lambda: Peer(relay.url, "10.77.1.1/24", mode="gateway"),
        "Peer(transport)": lambda: Peer(relay.url, "10.77.2.1/24", mode="transport"),
        "Host": lambda: Host("10.77.3.1/24", MemoryWire().end(0)),
        "Tunnel": lambda: Tunnel(),
    }


@pytest.mark.parametrize(
    "kind",
    [
        "DerpServer",
        "Runtime",
        "Device",
        "Device(address)",
        "Device(derp_url)",
        "DerpClient",
        "Gateway",
        "Peer(gateway)",
        "Peer(transport)",
        "Host",
        "Tunnel",
    ],
)
def test_dropped_handle_is_freed_with_a_resource_warning(kind: str, relay: DerpServer) -> None:
    make = _makers(relay)[kind]
    drop(make)  # warm-up: the default runtime and the log thread stay
    gc.collect()
    fd0, th0 = fds(), threads()
    for _ in range(5):
        ws = drop(make)
        assert ws, f"no ResourceWarning for a dropped {kind}"
        assert "unclosed" in str(ws[0].message)
    assert settle(lambda: fds() <= fd0), f"{kind}: {fds() - fd0} fds leaked"
    assert settle(lambda: threads() <= th0), f"{kind}: {threads() - th0} threads leaked"


def test_dropped_derp_servers_free_listener_fds_and_threads() -> None:
    """The reported leak: 100 dropped servers kept 306 fds and 101 threads,
    and each listener still answered."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        s = DerpServer()
        s.close()
        gc.collect()
        fd0, th0 = fds(), threads()
        ports = []
        for _ in range(100):
            s = DerpServer()
            ports.append(s.port)
            del s
        gc.collect()
    assert settle(lambda: fds() <= fd0), f"{fds() - fd0} fds leaked"
    assert settle(lambda: threads() <= th0), f"{threads() - th0} threads leaked"
    assert all(refused(p) for p in ports[-5:])


def test_close_is_idempotent_and_use_after_close_names_the_object(relay: DerpServer) -> None:
    objs = [
        DerpServer(),
        Device(listen_port=0, name=None),
        DerpClient(relay.url, PrivateKey.generate()),
        Gateway(relay.url, PrivateKey.generate()),
        Tunnel(),
    ]
    for o in objs:
        with o:
            pass
        o.close()  # again: nothing happens
        assert o.closed
    srv, dev, cli, gw, tun = objs
    with pytest.raises(spanza.ClosedError, match=r"DerpServer http://127\.0\.0\.1:\d+/derp is closed"):
        srv.stats()
    with pytest.raises(spanza.ClosedError, match=r"Device \(UDP port \d+\) is closed"):
        dev.stats()
    with pytest.raises(spanza.ClosedError, match="DerpClient http://.* is closed"):
        cli.stats()
    with pytest.raises(spanza.ClosedError, match="Gateway http://.* is closed"):
        gw.stats()
    with pytest.raises(spanza.ClosedError, match="Tunnel is closed"):
        tun.public_key  # noqa: B018
    with pytest.raises(spanza.ClosedError, match="Device 'wg7' is closed"):
        with Device(listen_port=None, name="wg7", uapi_dir="/tmp") as d:
            pass
        d.peers  # noqa: B018


def test_host_of_a_dropped_device_is_closed_with_it() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        d = Device(listen_port=0, address="10.77.4.1/24")
        host = d.host
        del d
        gc.collect()
    assert host.closed
    with pytest.raises(spanza.ClosedError, match="Host 10.77.4.1/24 is closed"):
        host.stats()
    Device(listen_port=0, address="10.77.4.1/24").close()  # the address is free again


CELL_SCRIPT = r"""
import spanza
from spanza.netstack import wired_pair
from spanza.scenario import Peer

relay = spanza.DerpServer()

def cell():
    a = Peer(relay.url, "10.77.5.1/24")
    b = Peer(relay.url, "10.77.5.2/24", mode="gateway")
    h1, h2, wire = wired_pair("10.77.6.1/24", "10.77.6.2/24")
    return [a, b, h1, h2, wire]

objs = cell()
try:
    cell()  # the first run's objects are alive and hold the addresses
except spanza.AddressInUseError as e:
    assert "already has one of these addresses" in str(e), e
else:
    raise AssertionError("the second run took the same addresses")
n = spanza.close_all()
assert n >= len(objs) + 1, n
assert all(o.closed for o in objs) and relay.closed
relay = spanza.DerpServer()  # new objects work after close_all
objs = cell()
spanza.close_all()
print("ok")
"""


def test_close_all_closes_every_live_object_and_a_cell_can_run_again(tmp_path: Any) -> None:
    """In its own process: close_all() would close this session's fixtures."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", CELL_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_dropped_cell_objects_do_not_block_a_rerun(relay: DerpServer) -> None:
    """Objects of a cell that were dropped (in reference cycles, not yet
    collected) do not hold their addresses against the cell's next run."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.disable()
        try:
            for _ in range(3):
                d = Device(listen_port=0, address="10.77.7.1/24")
                del d
        finally:
            gc.enable()
    Device(listen_port=0, address="10.77.7.1/24").close()
