"""spanza.web.split_url parses by hand (urllib.parse costs the cold start
~1 ms): checked here against urllib.parse on URLs good and bad."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from spanza.errors import ConfigError
from spanza.web import split_url


def _reference(url: str) -> tuple[str, int, str]:
    # What split_url did with urllib.parse.
    try:
        u = urlsplit(url)
    except ValueError:  # "Invalid IPv6 URL": it went out as a ValueError
        raise ConfigError("not http") from None
    if u.scheme == "https":
        raise ConfigError("https")
    if u.scheme != "http" or not u.hostname:
        raise ConfigError("not http")
    try:
        port = u.port or 80
    except ValueError:
        raise ConfigError("bad port") from None
    return u.hostname, port, (u.path or "/") + (f"?{u.query}" if u.query else "")


URLS = [
    "http://192.168.4.1/",
    "http://192.168.4.1",
    "http://192.168.4.1:8080/a/b?c=d&e=f#frag",
    "http://192.168.4.1?q=1",
    "http://192.168.4.1#x",
    "http://192.168.4.1:/x",
    "http://192.168.4.1:0/x",
    "http://192.168.4.1:65535/",
    "http://192.168.4.1:65536/",
    "http://192.168.4.1:-1/",
    "http://192.168.4.1:8x/",
    "http://192.168.4.1:٣/",  # a non-ASCII digit
    "http://[fd00::1]/x",
    "http://[FD00::1]:81/x?y",
    "http://[fd00::1/x",
    "http://[fd00::1]x/",
    "http://fd00::1/",
    "http://user:pw@10.0.0.1:82/p",
    "HTTP://10.0.0.1/",
    "http://Example.COM/Path",
    "https://10.0.0.1/",
    "HTTPS://10.0.0.1/",
    "ftp://10.0.0.1/",
    "10.0.0.1/x",
    "http:/10.0.0.1/",
    "http:///x",
    "http://:80/",
    "http://@/x",
    "",
    "  http://10.0.0.1/x  ",
    "http://10.0.0.1/a b",
    "http://10.0.0.1/?",
    "http://10.0.0.1/%41?%42",
]


# Where split_url is meant to differ: stricter after "]", and spaces
# around the whole URL dropped (a path ending in spaces is refused later).
DIFFERENT: dict[str, object] = {
    "http://[fd00::1]x/": ConfigError,
    "  http://10.0.0.1/x  ": ("10.0.0.1", 80, "/x"),
}


@pytest.mark.parametrize("url", URLS)
def test_split_url_agrees_with_urllib(url):
    try:
        want: object = _reference(url)
    except ConfigError:
        want = ConfigError
    want = DIFFERENT.get(url, want)
    try:
        got: object = split_url(url)
    except ConfigError:
        got = ConfigError
    assert got == want


def test_messages_say_what_to_fix():
    with pytest.raises(ConfigError, match="https inside the tunnel is not built in"):
        split_url("https://10.0.0.1/")
    with pytest.raises(ConfigError, match="bad port"):
        split_url("http://10.0.0.1:99999/")
    with pytest.raises(ConfigError, match=r"is not http://host\[:port\]/path"):
        split_url("10.0.0.1/x")
