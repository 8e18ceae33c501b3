"""`spanza.web.Response` and its `Headers` (a module of their own: Response
is a dataclass, and a GET that wants (status, body) only need not import
dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass, field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Headers", "Response"]


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
