"""HTTP through the tunnel: one request from a peer's TCP/IP host (``spanza.web``, not
``spanza.http``: a module of that name would shadow the standard library for
scripts run from inside the package, such as the cffi build script).

    resp = peer.request("POST", "http://192.168.4.1/items", json={"name": "x"})
    resp.status, resp.headers["content-type"], resp.json()

The connection is an ``http.client`` connection whose socket starts at the
peer's host (lwIP, inside the tunnel); `connection()` gives that object for
keep-alive or streaming use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from spanza.errors import ConfigError
from spanza.netstack import HTTPConnection

__all__ = ["Headers", "Response", "connection", "request", "split_url"]


class Headers(dict[str, str]):
    """Response headers; lookups ignore case (``h["Content-Type"]``)."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        super().__init__()
        for k, v in items:
            k = k.lower()
            super().__setitem__(k, f"{self[k]}, {v}" if k in self else v)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


@dataclass(frozen=True)
class Response:
    """An HTTP response: status, reason, headers (case-insensitive) and body."""

    status: int
    reason: str
    headers: Headers = field(repr=False)
    body: bytes

    @property
    def ok(self) -> bool:
        """True for 2xx."""
        return 200 <= self.status < 300

    @property
    def text(self) -> str:
        """The body decoded with the Content-Type's charset (UTF-8 by default)."""
        ctype = self.headers.get("content-type", "")
        charset = "utf-8"
        for part in ctype.split(";")[1:]:
            k, _, v = part.strip().partition("=")
            if k.lower() == "charset" and v:
                charset = v.strip('"')
        return self.body.decode(charset, errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON."""
        import json  # only when asked: not at import (cold start)

        return json.loads(self.body)

    def __iter__(self) -> Any:
        """(status, body), so ``status, body = peer.http_get(url)`` style code works."""
        return iter((self.status, self.body))


def split_url(url: str) -> tuple[str, int, str]:
    """(host, port, path?query) of an ``http://`` URL; ConfigError otherwise."""
    u = urlsplit(url)
    if u.scheme == "https":
        raise ConfigError(
            f"url: {url!r}: https inside the tunnel is not built in; "
            "use http://, or wrap peer.connect() in ssl yourself"
        )
    if u.scheme != "http" or not u.hostname:
        raise ConfigError(f"url: {url!r} is not http://host[:port]/path")
    try:
        port = u.port or 80
    except ValueError:
        raise ConfigError(f"url: {url!r}: bad port") from None
    return u.hostname, port, (u.path or "/") + (f"?{u.query}" if u.query else "")


def connection(host: Any, url: str, timeout: float | None = 10.0) -> HTTPConnection:
    """An ``http.client.HTTPConnection`` to the URL's host and port, whose
    socket starts at `host` (anything with ``connect((ip, port), timeout)``)."""
    h, port, _ = split_url(url)
    return HTTPConnection(host, h, port, timeout=timeout)


def request(
    host: Any,
    method: str,
    url: str,
    *,
    body: bytes | str | None = None,
    json: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout: float | None = 10.0,
) -> Response:
    """One request from `host` (see `connection`); the whole response read."""
    if body is not None and json is not None:
        raise ConfigError("request: give body or json, not both")
    hdrs = dict(headers or {})
    if json is not None:
        import json as _json

        body = _json.dumps(json).encode()
        hdrs.setdefault("Content-Type", "application/json")
    if isinstance(body, str):
        body = body.encode()
    _, _, path = split_url(url)
    conn = connection(host, url, timeout)
    try:
        try:
            conn.request(method.upper(), path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
        except TimeoutError:
            raise TimeoutError(f"{method.upper()} {url}: no answer within {timeout} s") from None
        return Response(resp.status, resp.reason, Headers(resp.getheaders()), data)
    finally:
        conn.close()
