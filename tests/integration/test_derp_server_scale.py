"""1,000 concurrent clients on one server (one runtime thread): every one
completes the handshake, sends to its neighbour and receives from the other."""

from __future__ import annotations

import asyncio
import json
import resource
import struct

import pytest

from spanza.derp import DerpServer
from tests.integration._derp_raw import CLIENT_INFO, RECV_PACKET, SEND_PACKET, SERVER_INFO, box_seal, frame, keypair

N = 1000


@pytest.fixture(autouse=True)
def enough_fds():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * N + 256  # both ends live in this process
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def _read_frame(r: asyncio.StreamReader) -> tuple[int, bytes]:
    t, n = struct.unpack(">BI", await r.readexactly(5))
    return t, await r.readexactly(n)


async def _client(
    port: int,
    priv: bytes,
    pub: bytes,
    connected: asyncio.Event,
    go: asyncio.Event,
    ready: list,
    dst: list,
    results: dict,
    i: int,
) -> None:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"GET /derp HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: DERP\r\n\r\n")
    head = await r.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    t, p = await _read_frame(r)
    assert t == 0x01
    server_pub = p[8:40]
    w.write(frame(CLIENT_INFO, pub + box_seal(json.dumps({"version": 2}).encode(), server_pub, priv)))
    while True:
        t, p = await _read_frame(r)
        if t == SERVER_INFO:
            break
    ready.append(i)
    if len(ready) == N:
        connected.set()
    await go.wait()
    w.write(frame(SEND_PACKET, dst[i] + struct.pack(">I", i)))
    await w.drain()
    while True:
        t, p = await _read_frame(r)
        if t == RECV_PACKET:
            results[i] = (p[:32], struct.unpack(">I", p[32:36])[0])
            break
    w.close()


def test_thousand_concurrent_clients_all_receive():
    keys = [keypair() for _ in range(N)]
    dst = [keys[(i + 1) % N][1] for i in range(N)]
    with DerpServer() as s:

        async def main() -> dict:
            connected, go = asyncio.Event(), asyncio.Event()
            ready: list = []
            results: dict = {}
            tasks = [
                asyncio.create_task(_client(s.port, keys[i][0], keys[i][1], connected, go, ready, dst, results, i))
                for i in range(N)
            ]
            await asyncio.wait_for(connected.wait(), 60)
            st = s.stats()
            assert st["clients"] == N and st["unique_keys"] == N and st["connections"] == N
            go.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
            return results

        results = asyncio.run(main())
        assert len(results) == N
        for i in range(N):
            src, tag = results[i]
            j = (i - 1) % N
            assert src == keys[j][1] and tag == j
        st = s.stats()
        assert st["packets_recv"] == N and st["packets_sent"] == N
        assert st["drop_queue_head"] == st["drop_unknown_dest"] == 0
