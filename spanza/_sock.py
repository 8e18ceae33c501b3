"""The socket operations of Spanza's own internal paths, on the `_socket` C
module instead of `socket`.

socket.py builds IntEnums of all its constants at import (with enum,
selectors and array: ~8 ms of `spanza demo`'s cold start of ~40). The
paths here need none of what it adds: the HTTP exchange behind
``Peer.request``/``http_get``, the body server's connections, a server
thread's wake-up pair, the gateway's IPv6 probe. What the public API
returns is still a `socket.socket` (its function imports `socket`).
"""

from __future__ import annotations

import io
from _socket import AF_INET6, CMSG_LEN, SCM_RIGHTS, SHUT_RDWR, SOCK_DGRAM, SOL_SOCKET, socket, socketpair

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

    from typing_extensions import Buffer

__all__ = ["SHUT_RDWR", "has_ipv6", "reader", "recv_fds", "socket", "socketpair"]

_INT = 4  # sizeof(int): an fd in SCM_RIGHTS data


def recv_fds(sock: socket, bufsize: int, maxfds: int) -> tuple[bytes, list[int]]:
    """One message and the fds passed with it (``socket.recv_fds``, which
    needs array)."""
    msg, ancdata, _flags, _addr = sock.recvmsg(bufsize, CMSG_LEN(maxfds * _INT))
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == SOL_SOCKET and kind == SCM_RIGHTS:
            fds.extend(memoryview(data[: len(data) - len(data) % _INT]).cast("i"))
    return msg, fds


class _Raw(io.RawIOBase):
    def __init__(self, sock: socket) -> None:
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, b: Buffer) -> int:
        return self._sock.recv_into(b)


def reader(sock: socket) -> BinaryIO:
    """A buffered reader of `sock`, as ``sock.makefile("rb")`` (the socket's
    timeout applies to each read); closing it leaves the socket open."""
    return io.BufferedReader(_Raw(sock))


def has_ipv6() -> bool:
    """Whether this host can bind an IPv6 socket."""
    try:
        s = socket(AF_INET6, SOCK_DGRAM)
    except OSError:
        return False
    try:
        s.bind(("::", 0))
        return True
    except OSError:
        return False
    finally:
        s.close()
