"""spanza._http1's framing on crafted bytes: the responses a server may
send (well-formed, odd, hostile) and the requests the client writes."""

from __future__ import annotations

import io

import pytest

from spanza import _http1
from spanza.errors import ConfigError, HTTPProtocolError


def read(raw: bytes, method: str = "GET") -> tuple[int, str, list[tuple[str, str]], bytes]:
    return _http1.read_response(io.BytesIO(raw), method, "GET http://x/")


def test_content_length_body_and_headers():
    status, reason, headers, body = read(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 5\r\n\r\nhelloEXTRA"
    )
    assert (status, reason, body) == (200, "OK", b"hello")
    assert ("Content-Type", "text/plain") in headers
    assert _http1._field(headers, "x-a") == "1, 2"


def test_chunked_body_with_extensions_and_trailer():
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\nTrailer: x\r\n\r\n"
    assert read(raw)[3] == b"hello!"


def test_body_to_the_end_without_length():
    assert read(b"HTTP/1.0 200 OK\r\n\r\nuntil close")[3] == b"until close"


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses(status):
    assert read(f"HTTP/1.1 {status} X\r\nContent-Length: 9\r\n\r\n".encode())[3] == b""


def test_head_has_no_body():
    assert read(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", "HEAD")[::3] == (200, b"")


def test_interim_responses_are_skipped():
    raw = (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n"
        b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
    )
    assert read(raw)[::3] == (201, b"ok")


def test_folded_header_lines_are_joined():
    _, _, headers, body = read(b"HTTP/1.1 200 OK\r\nX-Long: one\r\n two\r\n\tthree\r\nContent-Length: 2\r\n\r\nok")
    assert headers == [("X-Long", "one two three"), ("Content-Length", "2")] and body == b"ok"
    with pytest.raises(HTTPProtocolError, match="not a header line"):
        read(b"HTTP/1.1 200 OK\r\n folded first\r\n\r\n")


def test_repeated_equal_content_length_is_one():
    assert read(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok")[3] == b"ok"


@pytest.mark.parametrize(
    "raw, says",
    [
        (b"", "without a response"),
        (b"SSH-2.0-OpenSSH\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/2 200 OK\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "not a header line"),
        (b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "not a header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", "inside the header"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nab", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\nab", "bad Content-Length"),  # latin-1 superscript 2
        (b"HTTP/1.1 2\xb20 OK\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "after 5 of 10 body bytes"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "unsupported Transfer-Encoding"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n", "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n", "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1_0\r\n", "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX", "no line end after a chunk"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nab", "after 2 of 9 body bytes"),
        # a huge length is not allocated up front: it ends when the data does
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1152921504606846976\r\n\r\nab", "after 2 of 1152921504606846976"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffff\r\nab", "after 2 of"),
    ],
)
def test_malformed_responses_say_what(raw, says):
    with pytest.raises(HTTPProtocolError, match=says) as e:
        read(raw)
    assert "GET http://x/" in str(e.value)
    assert isinstance(e.value, ConnectionError)


def test_limits_on_line_length_and_header_count():
    with pytest.raises(HTTPProtocolError, match="longer than"):
        read(b"HTTP/1.1 200 OK\r\nX: " + b"a" * _http1.MAX_LINE + b"\r\n\r\n")
    many = b"".join(b"X-%d: 1\r\n" % i for i in range(_http1.MAX_HEADERS + 1))
    with pytest.raises(HTTPProtocolError, match="more than 100 header lines"):
        read(b"HTTP/1.1 200 OK\r\n" + many + b"\r\n")
    # exactly at the limit is fine
    ok = b"".join(b"X-%d: 1\r\n" % i for i in range(_http1.MAX_HEADERS))
    assert read(b"HTTP/1.1 200 OK\r\n" + ok + b"\r\n")[::3] == (200, b"")


def test_request_head():
    head = _http1.request_head("POST", "192.168.4.1", 8080, "/a?b=1", {"X-Y": "z"}, b"{}")
    assert head == (
        b"POST /a?b=1 HTTP/1.1\r\nHost: 192.168.4.1:8080\r\nAccept-Encoding: identity\r\n"
        b"X-Y: z\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
    )
    assert _http1.request_head("GET", "fd00::1", 80, "/", {}, None).startswith(b"GET / HTTP/1.1\r\nHost: [fd00::1]\r\n")
    assert b"Content-Length: 0" in _http1.request_head("PUT", "h", 80, "/", {}, None)
    given = _http1.request_head("GET", "h", 80, "/", {"host": "other", "Accept-Encoding": "gzip"}, None)
    assert given.count(b"ost:") == 1 and b"identity" not in given


@pytest.mark.parametrize(
    "method, path, headers, says",
    [
        ("GET\r\nX: y", "/", {}, "method"),
        ("", "/", {}, "method"),
        ("GET", "/a b", {}, "path"),
        ("GET", "/a\r\nX: y", {}, "path"),
        ("GET", "/", {"X": "a\r\nInjected: 1"}, "line break"),
        ("GET", "/", {"Bad Name": "a"}, "header name"),
        ("GET", "/", {"X": "a\0"}, "line break or NUL"),
        ("GET", "/", {"X": "5 €"}, "not latin-1 text"),
        ("GET", "/caf\u00e9", {}, "not ASCII: percent-encode it"),
    ],
)
def test_request_head_refuses_injection(method, path, headers, says):
    with pytest.raises(ConfigError, match=says):
        _http1.request_head(method, "h", 80, path, headers, None)


def test_http_date_is_imf_fixdate():
    assert _http1.http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"  # RFC 9110's example


_VALID = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nT: 1\r\n\r\n"
)


def _mutants(seed: int, count: int) -> list[bytes]:
    import random

    rng = random.Random(seed)
    out = [_VALID[:i] for i in range(len(_VALID))]  # cut at every byte
    for _ in range(count):
        b = bytearray(_VALID)
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(3)
            i = rng.randrange(len(b))
            if op == 0:
                b[i] = rng.randrange(256)
            elif op == 1:
                del b[i]
            else:
                b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        out.append(bytes(b))
    out += [bytes(rng.randrange(256) for _ in range(rng.randint(0, 300))) for _ in range(count)]
    return out


def test_mangled_responses_end_in_a_result_or_a_protocol_error():
    # Whatever the bytes, the reader returns or raises HTTPProtocolError:
    # no other exception, and (the input being finite) no hang.
    for raw in _mutants(seed=9, count=2000):
        try:
            read(raw)
        except HTTPProtocolError:
            pass


def test_json_body_keeps_the_callers_content_type():
    from spanza.web import encode_body

    assert encode_body(None, {"a": 1}, None) == (b'{"a": 1}', {"Content-Type": "application/json"})
    body, hdrs = encode_body(None, [1], {"content-type": "application/vnd.x+json"})
    assert body == b"[1]" and hdrs == {"content-type": "application/vnd.x+json"}
    with pytest.raises(ConfigError, match="give body or json, not both"):
        encode_body(b"x", 1, None)
