"""spanza._sock: the socket operations of Spanza's internal paths on the
_socket C module (what socket.recv_fds and makefile("rb") did)."""

from __future__ import annotations

import _socket
import os
import socket

import pytest

from spanza import _sock


def test_socketpair_gives_the_c_modules_sockets():
    a, b = _sock.socketpair()
    try:
        assert type(a) is _socket.socket and type(b) is _socket.socket
        a.sendall(b"x")
        assert b.recv(1) == b"x"
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("nfds", [0, 1, 3])
def test_recv_fds_takes_the_passed_fds(nfds):
    a, b = socket.socketpair()
    pipes = [os.pipe() for _ in range(nfds)]
    try:
        socket.send_fds(a, [b"head"], [r for r, _ in pipes])
        raw = _socket.socket(fileno=b.detach())
        msg, fds = _sock.recv_fds(raw, 16, 4)
        raw.close()
        assert msg == b"head" and len(fds) == nfds
        for fd, (_, w) in zip(fds, pipes, strict=True):  # each a new fd for the read end
            os.write(w, b"y")
            assert os.read(fd, 1) == b"y"
            os.close(fd)
    finally:
        a.close()
        for r, w in pipes:
            os.close(r)
            os.close(w)


def test_recv_fds_is_socket_recv_fds():
    a, b = socket.socketpair()
    r, w = os.pipe()
    try:
        for recv in (lambda s: socket.recv_fds(s, 8, 2)[:2], lambda s: _sock.recv_fds(s, 8, 2)):
            socket.send_fds(a, [b"m"], [r, w])
            msg, fds = recv(b)
            assert msg == b"m" and len(fds) == 2 and fds[0] not in (r, w)
            for fd in fds:
                os.close(fd)
    finally:
        for x in (a, b):
            x.close()
        os.close(r)
        os.close(w)


def test_reader_reads_lines_and_lengths_and_leaves_the_socket_open():
    a, b = _sock.socketpair()
    try:
        a.sendall(b"line one\r\nrest" + b"z" * 100_000)
        a.shutdown(_sock.SHUT_RDWR)
        with _sock.reader(b) as f:
            assert f.readline(100) == b"line one\r\n"
            assert f.read(4) == b"rest"
            assert f.read() == b"z" * 100_000
        assert b.fileno() >= 0  # still open
    finally:
        a.close()
        b.close()


def test_reader_times_out_as_the_socket():
    a, b = _sock.socketpair()
    try:
        b.settimeout(0.05)
        with _sock.reader(b) as f, pytest.raises(TimeoutError):
            f.readline()
    finally:
        a.close()
        b.close()


def test_reader_of_a_socket_module_socket():
    # Spanza's exchange also reads sockets a user's host.connect() gives.
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"HTTP/1.1 200 OK\r\n")
        with _sock.reader(b) as f:
            assert f.readline() == b"HTTP/1.1 200 OK\r\n"


def test_has_ipv6_is_what_binding_says():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::", 0))
        want = True
    except OSError:
        want = False
    assert _sock.has_ipv6() is want
