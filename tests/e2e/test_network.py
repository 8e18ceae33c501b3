"""Scenario networks (spanza.network): transfers that survive impaired links
and parts that break and come back, every one checked by sha256.

Sizes: a few MiB in `make test`; 32 MiB (issue 10's figure) as `slow`. Under
10 % loss with no added delay lwIP (with scripts/lwip-patches) moves about
8-14 MB/s here, through 50 ms +- 10 ms jitter with reordering about 7 MB/s:
a 32 MiB run takes 3-6 s."""

from __future__ import annotations

import threading
import time

import pytest

from spanza import network as nw
from spanza.errors import ConfigError

MiB = 1 << 20
MODES = ["gateway", "transport"]


def at_fraction(total: int, frac: float, action):
    """A progress callback that runs `action` once, when frac of the
    transfer has arrived (mid-transfer faults)."""
    fired = threading.Event()

    def progress(done: int, _total: int) -> None:
        if done >= total * frac and not fired.is_set():
            fired.set()
            action()

    progress.fired = fired  # type: ignore[attr-defined]
    return progress


def check(r: nw.TransferResult, nbytes: int) -> None:
    assert r.received == nbytes, r
    assert r.sha256_sent and r.sha256_sent == r.sha256_received, r


# ---- impaired links ----


@pytest.mark.parametrize("mode", MODES)
def test_transfer_between_peers_homed_on_meshed_relays(make_network, mode):
    net = make_network(peers=2, relays=2, mode=mode)
    net.mesh()
    assert net.homes() == [1, 1]  # one peer on each node, packets cross the mesh
    a, b = net.peers
    check(net.transfer(a, b, 4 * MiB), 4 * MiB)
    st = net.relays[0].stats()
    assert st["packets_forwarded_out"] > 0 or net.relays[1].stats()["packets_forwarded_out"] > 0


def _loss(make_network, mode: str, nbytes: int) -> None:
    net = make_network(peers=2, mode=mode)
    net.mesh()
    a, b = net.peers
    # 10 % of a's data packets on its DERP link are lost (a serves, b gets)
    with a.impair(loss=0.10, seed=10, direction="out") as imp:
        r = net.transfer(b, a, nbytes, timeout=60)
    check(r, nbytes)
    assert imp.stats.dropped_loss > 0.05 * imp.stats.packets


@pytest.mark.parametrize("mode", MODES)
def test_transfer_with_10pct_loss_on_a_derp_link(make_network, mode):
    _loss(make_network, mode, 4 * MiB)


def _delay(make_network, mode: str, nbytes: int) -> None:
    net = make_network(peers=2, mode=mode)
    net.mesh()
    a, b = net.peers
    with a.impair(delay=0.05, jitter=0.01, reorder=0.05, seed=3) as imp:
        r = net.transfer(b, a, nbytes, timeout=60)
    check(r, nbytes)
    assert imp.stats.delayed > 0 and imp.stats.reordered > 0


@pytest.mark.parametrize("mode", MODES)
def test_transfer_with_50ms_jitter_and_reordering(make_network, mode):
    _delay(make_network, mode, 2 * MiB)


@pytest.mark.parametrize("mode", MODES)
def test_settings_change_while_a_transfer_flows(make_network, mode):
    net = make_network(peers=2, mode=mode)
    net.mesh()
    a, b = net.peers
    stop = threading.Event()
    changes = [0]

    def churn() -> None:
        settings = [
            {"delay": 0.002, "jitter": 0.001},
            {"rate": 400_000_000, "queue": 4000},
            {"duplicate": 0.01},
            {"delay": 0.005, "reorder": 0.02},
            {},
        ]
        while not stop.is_set():
            kw = settings[changes[0] % len(settings)]
            a.impair(seed=changes[0], direction="out", **kw)  # replaces the previous one in place
            changes[0] += 1
            if changes[0] % 7 == 0:
                a.clear_impairments()
            time.sleep(0.002)

    t = threading.Thread(target=churn)
    t.start()
    results = []
    try:
        # 8 MiB can take under 20 ms now: transfer again (bounded) until the
        # settings have changed often enough while data flowed.
        for _ in range(20):
            results.append(net.transfer(b, a, 8 * MiB, timeout=30))
            if changes[0] > 10:
                break
    finally:
        stop.set()
        t.join()
    a.clear_impairments()
    for r in results:
        check(r, 8 * MiB)
    assert changes[0] > 10


# ---- parts that break and come back ----


def _relay_kill(make_network, mode: str, nbytes: int) -> None:
    net = make_network(peers=2, mode=mode)
    net.mesh()
    a, b = net.peers
    relay = net.relays[0]
    port = relay.port

    def kill_and_restart() -> None:
        relay.kill()
        threading.Timer(0.3, relay.start).start()

    # slow the link a little so the kill lands mid-transfer
    with a.impair(rate=200_000_000, queue=4000, direction="out"):
        progress = at_fraction(nbytes, 0.3, kill_and_restart)
        r = net.transfer(b, a, nbytes, timeout=30, progress=progress)
    check(r, nbytes)
    assert progress.fired.is_set() and relay.alive and relay.port == port


@pytest.mark.parametrize("mode", MODES)
def test_transfer_survives_relay_killed_and_restarted(make_network, mode):
    _relay_kill(make_network, mode, 4 * MiB)


def _gateway_restart(make_network, nbytes: int) -> None:
    net = make_network(peers=2, mode="gateway")
    net.mesh()
    a, b = net.peers
    old = a.gateway
    key, ports = old.public_key, [old.address_for(k) for k in old.remote_peers]
    progress = at_fraction(nbytes, 0.3, lambda: nw.restart_gateway(a))
    with a.impair(rate=200_000_000, queue=4000, direction="out") as imp:
        r = net.transfer(b, a, nbytes, timeout=30, progress=progress)
    check(r, nbytes)
    assert not imp.active and imp.stats.packets > 0
    (carried,) = a.gateway.impairments()  # set again on the new gateway
    assert carried.settings == imp.settings and carried.stats.packets > 0
    carried.lift()
    assert progress.fired.is_set() and a.gateway is not old and old.closed
    assert a.gateway.public_key == key and [a.gateway.address_for(k) for k in a.gateway.remote_peers] == ports


def test_transfer_survives_gateway_restart(make_network):
    _gateway_restart(make_network, 4 * MiB)


def _rekeys(make_network, mode: str, nbytes: int, rate: int) -> None:
    net = make_network(peers=2, mode=mode)
    net.mesh()
    a, b = net.peers
    before = a.device.stats()["handshakes_completed"]
    stop = threading.Event()

    def rekey_every_second() -> None:
        while not stop.wait(1.0):
            nw.rekey(a, b)

    t = threading.Thread(target=rekey_every_second)
    # a rate limit stretches the transfer over several seconds
    with a.impair(rate=rate, queue=4000, direction="out"):
        t.start()
        try:
            r = net.transfer(b, a, nbytes, timeout=30)
        finally:
            stop.set()
            t.join()
    check(r, nbytes)
    rekeys = a.device.stats()["handshakes_completed"] - before
    assert r.seconds >= 3, r  # the rate limit stretched it over several rekeys
    assert rekeys >= int(r.seconds) - 1, (rekeys, r)


@pytest.mark.parametrize("mode", MODES)
def test_transfer_survives_a_rekey_every_second(make_network, mode):
    _rekeys(make_network, mode, 8 * MiB, 20_000_000)  # 8 MiB at 2.5 MB/s: about 3.4 s


@pytest.mark.parametrize("mode", MODES)
def test_rekey_after_120s_without_waiting(make_network, mode):
    net = make_network(peers=2, mode=mode)
    net.mesh()
    a, b = net.peers
    check(net.transfer(b, a, 64 * 1024), 64 * 1024)
    before = a.device.stats()["handshakes_completed"] + b.device.stats()["handshakes_completed"]
    # Both ends, in steps (keepalives flow between them): the session is
    # 100 s old, still fresh.
    net.advance_clock(100)
    check(net.transfer(b, a, 64 * 1024), 64 * 1024)
    assert a.device.stats()["handshakes_completed"] + b.device.stats()["handshakes_completed"] == before
    net.advance_clock(21)  # 121 s: the initiator's next data starts a new handshake
    check(net.transfer(b, a, 256 * 1024), 256 * 1024)
    deadline = time.monotonic() + 5
    while a.device.stats()["handshakes_completed"] + b.device.stats()["handshakes_completed"] == before:
        assert time.monotonic() < deadline, "no rekey after 121 s of virtual time"
        time.sleep(0.02)
    with pytest.raises(ConfigError, match="advance_clock"):
        a.device.advance_clock(-1)


@pytest.mark.parametrize("mode", MODES)
def test_killing_a_relay_moves_its_peers_to_the_next_node(make_network, mode):
    net = make_network(peers=2, relays=2, mode=mode)
    net.mesh()
    a, b = net.peers
    check(net.transfer(a, b, 256 * 1024), 256 * 1024)
    net.relays[0].kill()
    # the next request works without user action (a fails over to node b)
    check(net.transfer(a, b, 256 * 1024, timeout=20), 256 * 1024)
    deadline = time.monotonic() + 5
    while net.homes() != [0, 2]:
        assert time.monotonic() < deadline, net.homes()
        time.sleep(0.05)


def test_roaming_device_keeps_its_tunnel(make_network):
    net = make_network(peers=2, mode="gateway")
    net.mesh()
    a, b = net.peers
    old = a.device.listen_port
    new = nw.roam(a)
    assert new != old and a.device.listen_port == new
    check(net.transfer(b, a, 1 * MiB, timeout=20), 1 * MiB)


@pytest.mark.parametrize("mode", MODES)
def test_peer_removed_and_readded(make_network, mode):
    net = make_network(peers=2, mode=mode)
    net.mesh()
    a, b = net.peers
    nw.remove_peer(a, b)
    with pytest.raises(OSError):  # a timeout (or a reset): a no longer answers b
        net.transfer(b, a, 64 * 1024, timeout=2)
    a.add_peer(b)
    check(net.transfer(b, a, 1 * MiB, timeout=20), 1 * MiB)


@pytest.mark.parametrize("mode", MODES)
def test_home_relay_change(make_network, mode):
    net = make_network(peers=2, relays=2, mode=mode)
    net.mesh()
    a, b = net.peers
    assert net.homes() == [1, 1]
    nw.move_relay(a, net.relays[1].url)
    deadline = time.monotonic() + 5
    while net.homes() != [0, 2]:
        assert time.monotonic() < deadline, net.homes()
        time.sleep(0.05)
    check(net.transfer(a, b, 1 * MiB, timeout=20), 1 * MiB)
    with pytest.raises(ConfigError, match="scheme"):
        nw.move_relay(a, "https://127.0.0.1:1/derp")


def test_network_closes_what_it_made_after_a_failed_setup(monkeypatch):
    made: list[nw.Network] = []
    real = nw.Network.add_peer

    def add_peer(self, home=None):
        made.append(self)
        if len(self.peers) == 1:
            raise RuntimeError("boom")
        return real(self, home)

    monkeypatch.setattr(nw.Network, "add_peer", add_peer)
    with pytest.raises(RuntimeError, match="boom"):
        nw.Network(peers=2, relays=2)
    net = made[0]
    assert all(not r.alive for r in net.relays) and net.peers[0].device.closed


def test_bad_arguments_say_what_to_fix():
    with pytest.raises(ConfigError, match="mode"):
        nw.Network(mode="carrier-pigeon")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="relay_kind"):
        nw.Network(relay_kind="nginx")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="relays"):
        nw.Network(relays=0)


def test_derp_client_moves_to_another_relay(make_network):
    from spanza import DerpClient, PrivateKey

    net = make_network(peers=0, relays=2)
    with (
        DerpClient(net.relays[0].url, PrivateKey.generate()) as c,
        DerpClient(net.relays[1].url, PrivateKey.generate()) as d,
    ):
        c.wait_connected(5)
        d.wait_connected(5)
        with c.impair(duplicate=1.0, direction="in") as imp:
            nw.move_relay(c, net.relays[1].url)  # now both on node b: no mesh hop
            deadline = time.monotonic() + 5
            while net.relays[1].stats()["clients"] < 2 + 1:  # + node a's mesh link
                assert time.monotonic() < deadline, net.relays[1].stats()
                time.sleep(0.02)
            d.send(c.public_key, b"moved")
            assert c.recv(timeout=5)[1] == b"moved" and c.recv(timeout=5)[1] == b"moved"
        assert imp.stats.duplicated == 1  # the impairment stayed with the connection
    with pytest.raises(ConfigError, match="no relay connection"):
        nw.move_relay(object(), net.relays[0].url)  # type: ignore[arg-type]


@pytest.mark.parametrize(("how", "error"), [("close", "closed the connection"), ("kill", "reset by peer")])
def test_relay_kill_resets_connections_where_close_closes_them(how, error):
    from spanza import DerpClient, DerpServer, PrivateKey

    server = DerpServer()
    try:
        with DerpClient(server.url, PrivateKey.generate(), backoff_base_ms=5000, backoff_max_ms=5000) as c:
            c.wait_connected(5)
            getattr(server, how)()
            deadline = time.monotonic() + 5
            while error not in c.last_error:
                assert time.monotonic() < deadline, c.last_error
                time.sleep(0.02)
    finally:
        server.close()


def test_derp_client_node_lists_are_checked():
    from spanza import DerpClient, PrivateKey

    key = PrivateKey.generate()
    with pytest.raises(ConfigError, match="all http:// or all https://"):
        DerpClient("http://127.0.0.1:1/derp https://127.0.0.1:2/derp", key)
    with pytest.raises(ConfigError, match="more than 8"):
        DerpClient(" ".join(f"http://127.0.0.1:{p}/derp" for p in range(1, 10)), key)
    with DerpClient("http://127.0.0.1:1/derp,http://127.0.0.1:2/derp", key) as c:
        assert not c.connected


def test_derp_map_is_tailscales_shape(make_network):
    net = make_network(peers=0, relays=2)
    m = net.derp_map()
    region = m["Regions"]["900"]
    assert region["RegionID"] == 900 and [n["DERPPort"] for n in region["Nodes"]] == [r.port for r in net.relays]
    assert nw.derp_map_urls(m, home=1, scheme="http") == [
        net.relays[1].url,
        net.relays[0].url,
    ]


# ---- the 32 MiB runs (slow) ----


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_32mib_plain(make_network, mode):
    net = make_network(peers=2, mode=mode)
    net.mesh()
    a, b = net.peers
    check(net.transfer(b, a, 32 * MiB), 32 * MiB)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_32mib_with_10pct_loss_on_a_derp_link(make_network, mode):
    _loss(make_network, mode, 32 * MiB)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_32mib_with_50ms_jitter_and_reordering(make_network, mode):
    _delay(make_network, mode, 32 * MiB)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_32mib_relay_killed_and_restarted(make_network, mode):
    _relay_kill(make_network, mode, 32 * MiB)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_32mib_rekey_every_second(make_network, mode):
    _rekeys(make_network, mode, 32 * MiB, 60_000_000)  # about 4.5 s


@pytest.mark.slow
def test_32mib_gateway_restart(make_network):
    _gateway_restart(make_network, 32 * MiB)


# ---- Tailscale's derper ----


def _require_derper() -> None:
    if nw.find_derper() is None:
        pytest.skip("derper not built (make go-helpers)")


@pytest.mark.interop
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("nbytes", [4 * MiB, pytest.param(32 * MiB, marks=pytest.mark.slow)])
def test_transfer_through_derper_and_its_queue(make_network, mode, nbytes):
    _require_derper()
    net = make_network(peers=2, mode=mode, relay_kind="derper")
    net.mesh()
    a, b = net.peers
    check(net.transfer(b, a, nbytes, timeout=60), nbytes)


@pytest.mark.interop
@pytest.mark.parametrize("mode", MODES)
def test_ours_and_derper_meshed_failover(make_network, mode):
    _require_derper()
    net = make_network(peers=2, relays=2, mode=mode, relay_kind=["spanza", "derper"])
    assert net.tls
    net.mesh()
    a, b = net.peers  # a on ours, b on derper
    check(net.transfer(a, b, 1 * MiB, timeout=20), 1 * MiB)
    net.relays[1].kill()  # derper dies: b moves to ours
    check(net.transfer(a, b, 256 * 1024, timeout=20), 256 * 1024)
    deadline = time.monotonic() + 5
    while net.homes() != [2, 0]:
        assert time.monotonic() < deadline, net.homes()
        time.sleep(0.05)
