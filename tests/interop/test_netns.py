"""The interop helpers start wireguard-go so that `wg` always reaches it.

`wg` takes a UAPI socket file that refuses connections for a dead
process's: it unlinks it and falls back to the kernel module ("Unable to
modify interface: Protocol not supported"). Such a file exists between
wireguard-go's bind() and listen(), and when an earlier test process with
the same pid (pids wrap at pid_max) left one behind."""

from __future__ import annotations

import os
import socket

import pytest

from tests.interop.netns import NetNS, WireGuardGo, genkey, require_root, uapi_listening

pytestmark = pytest.mark.interop


def _socket_file(path: str, listen: bool) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    if listen:
        s.listen(1)
    return s


def test_a_bound_socket_is_not_listening_until_listen(tmp_path):
    path = str(tmp_path / "wg0.sock")
    assert not uapi_listening(path)  # no file
    with _socket_file(path, listen=False) as s:
        assert os.path.exists(path) and not uapi_listening(path)  # the file, before listen()
        s.listen(1)
        assert uapi_listening(path)


def test_wireguard_go_starts_over_a_stale_socket_of_its_name():
    require_root("wireguard-go", "wg")
    with NetNS() as ns:
        go = WireGuardGo(ns)
        os.makedirs(os.path.dirname(go.sock), exist_ok=True)
        _socket_file(go.sock, listen=False).close()  # left by a process killed before its clean-up
        with go:
            go.configure(genkey()[0], 0)  # `wg set` reaches this wireguard-go
            assert go.listen_port > 0
            assert uapi_listening(go.sock)


def test_wireguard_go_takes_another_name_than_a_live_one():
    require_root("wireguard-go", "wg")
    with NetNS() as ns:
        go = WireGuardGo(ns)
        taken = go.sock
        os.makedirs(os.path.dirname(taken), exist_ok=True)
        with _socket_file(taken, listen=True):  # an orphaned wireguard-go of an earlier run
            try:
                with go:
                    assert go.sock != taken
                    go.configure(genkey()[0], 0)
                    assert go.listen_port > 0
                assert os.path.exists(taken)  # the other process's socket is left alone
            finally:
                os.unlink(taken)
