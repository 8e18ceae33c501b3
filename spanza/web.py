"""HTTP through the tunnel: one request from a peer's TCP/IP host (``spanza.web``, not
``spanza.http``: a module of that name would shadow the standard library for
scripts run from inside the package, such as the cffi build script).

    resp = peer.request("POST", "http://192.168.4.1/items", json={"name": "x"})
    resp.status, resp.headers["content-type"], resp.json()

A request is one connection from the peer's host (lwIP, inside the
tunnel), closed after the response; `connection()` gives an
``http.client.HTTPConnection`` whose socket starts there, for keep-alive or
streaming use.
"""

from __future__ import annotations

from spanza import _http1
from spanza._lazy import lazy_names
from spanza.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from spanza._http_conn import HTTPConnection
    from spanza._response import Headers, Response

__all__ = ["Headers", "Response", "connection", "encode_body", "exchange", "request", "split_url"]


def split_url(url: str) -> tuple[str, int, str]:
    """(host, port, path?query) of an ``http://`` URL; ConfigError otherwise.

    By hand rather than with urllib.parse (~1 ms to import, for the cold
    start): scheme, [userinfo@]host or [IPv6], an optional port, the path
    and query; the fragment is dropped. tests/unit/test_web_url.py checks it
    against urllib.parse."""
    scheme, sep, rest = url.strip().partition("://")
    if sep and scheme.lower() == "https":
        raise ConfigError(
            f"url: {url!r}: https inside the tunnel is not built in; "
            "use http://, or wrap peer.connect() in ssl yourself"
        )
    end = min([i for i in (rest.find(c) for c in "/?#") if i >= 0] or [len(rest)])
    netloc, tail = rest[:end].rpartition("@")[2], rest[end:].partition("#")[0]
    if netloc.startswith("["):
        host, bracket, port_text = netloc[1:].partition("]")
        ok = bool(bracket) and (not port_text or port_text.startswith(":"))
        port_text = port_text[1:]
    else:
        host, _, port_text = netloc.partition(":")
        ok = ":" not in port_text
    if not sep or scheme.lower() != "http" or not host or not ok:
        raise ConfigError(f"url: {url!r} is not http://host[:port]/path")
    if port_text and not (port_text.isdigit() and port_text.isascii() and int(port_text) <= 65535):
        raise ConfigError(f"url: {url!r}: bad port")
    path, _, query = tail.partition("?")
    return host.lower(), int(port_text or 80) or 80, (path or "/") + (f"?{query}" if query else "")


def connection(host: Any, url: str, timeout: float | None = 10.0) -> HTTPConnection:
    """An ``http.client.HTTPConnection`` to the URL's host and port, whose
    socket starts at `host` (anything with ``connect((ip, port), timeout)``)."""
    from spanza._http_conn import HTTPConnection

    h, port, _ = split_url(url)
    return HTTPConnection(host, h, port, timeout=timeout)


def encode_body(
    body: bytes | str | None, json: Any, headers: Mapping[str, str] | None
) -> tuple[bytes | None, dict[str, str]]:
    """A request's body bytes and headers from ``body=`` or ``json=``."""
    if body is not None and json is not None:
        raise ConfigError("request: give body or json, not both")
    hdrs = dict(headers or {})
    if json is not None:
        import json as _json

        body = _json.dumps(json).encode()
        if not any(k.lower() == "content-type" for k in hdrs):  # the caller's, whatever its case
            hdrs["Content-Type"] = "application/json"
    return (body.encode() if isinstance(body, str) else body), hdrs


def exchange(
    host: Any,
    method: str,
    url: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float | None = 10.0,
) -> tuple[int, str, list[tuple[str, str]], bytes]:
    """One request from `host` (anything with ``connect((ip, port), timeout)``):
    status, reason, header fields and the whole body of its response."""
    return _exchange(lambda addr, t: host.connect(addr, timeout=t), method, url, body, headers, timeout)


def _exchange(
    connect: Callable[[tuple[str, int], float | None], Any],
    method: str,
    url: str,
    body: bytes | None,
    headers: Mapping[str, str] | None,
    timeout: float | None,
) -> tuple[int, str, list[tuple[str, str]], bytes]:
    """`exchange` on the socket ``connect(address, timeout)`` gives (a Peer's
    gives the _socket module's: see spanza._sock)."""
    h, port, path = split_url(url)
    method = method.upper()
    head = _http1.request_head(method, h, port, path, headers or {}, body)
    try:
        return _http1.exchange(connect((h, port), timeout), method, url, head, body)
    except TimeoutError:
        raise TimeoutError(f"{method} {url}: no answer within {timeout} s") from None


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
    """One request from `host` (see `exchange`) as a `Response`."""
    from spanza._response import Headers, Response

    data, hdrs = encode_body(body, json, headers)
    status, reason, fields, got = exchange(host, method, url, data, hdrs, timeout)
    return Response(status, reason, Headers(fields), got)


# Response is a dataclass, and dataclasses imports inspect (~5 ms): a GET
# that wants (status, body) only does not pay for it.
__getattr__, __dir__ = lazy_names(__name__, {"Response": "spanza._response", "Headers": "spanza._response"})
