"""`spanza.netstack.HTTPConnection` (in its own module: http.client and the
email package it needs take ~15 ms to import, which a command that makes
no HTTP request through it need not pay)."""

from __future__ import annotations

import http.client

TYPE_CHECKING = False
if TYPE_CHECKING:
    from spanza.netstack import Host


class HTTPConnection(http.client.HTTPConnection):
    """``http.client.HTTPConnection`` whose connection starts at a host."""

    def __init__(self, from_host: Host, address: str, port: int = 80, timeout: float | None = None) -> None:
        super().__init__(address, port, timeout=timeout)
        self.from_host = from_host

    def connect(self) -> None:
        self.sock = self.from_host.connect((self.host, self.port), timeout=self.timeout)
