"""Request heads read strictly: what HTTP/1.1 tells a server to refuse is a 400, not a guess.

gevent read heads through the ``email`` package, which took a line without
a colon as the end of the head (the fields after it never reached the hub),
and Python's ``int`` took Content-Length values such as ``+5`` or ``5_0``.
``RequestHead`` reads the same lines faster (``make bench-requests``) and
refuses these, as RFC 9112 §5 and §6.3 ask.
"""

import io
import socket

import pytest
from gevent.pywsgi import headers_factory

from services.transport.http_connections import MAX_HEADER_FIELDS, MAX_HEADER_LINE, RequestHead

VALID_HEADS = [
    b"Host: hub\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n",
    b"Host: hub\r\nContent-Type: application/json\r\nContent-Length: 17\r\n"
    b"Authorization: Bearer a.b.c\r\nX_Underscored: dropped by pywsgi\r\n\r\n",
    b"host:hub\r\ncontent-length:   0   \r\nConnection: keep-alive\r\n"
    b"Accept: a\r\nAccept: b\r\n\r\n",
    b"Host: hub\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
    b"Host: hub\nUpgrade: websocket\nConnection: Upgrade\n\n",
    b"\r\n",
]


@pytest.mark.parametrize("head", VALID_HEADS)
def test_a_valid_head_reads_as_gevents_own_parser_reads_it(head):
    ours, gevents = RequestHead(io.BytesIO(head)), headers_factory(io.BytesIO(head))
    assert ours.status == gevents.status == ""
    assert [line.replace(" ", "") for line in ours.headers] == \
        [line.replace(" ", "") for line in gevents.headers]
    for name in ("host", "Content-Length", "CONTENT-TYPE", "accept", "connection", "absent"):
        assert ours.get(name) == (gevents.get(name).strip() if gevents.get(name) else None)
        assert ours.getheader(name) == ours.get(name)
    assert ours.typeheader == gevents.typeheader
    del ours["content-length"], gevents["content-length"]
    assert ours.get("content-length") is gevents.get("content-length") is None


REFUSED_HEADS = {
    "a line without a colon": b"Host: hub\r\nnot a field\r\nX-After: 1\r\n\r\n",
    "whitespace before the colon": b"Host: hub\r\nContent-Length : 0\r\n\r\n",
    "an obsolete folded line": b"Host: hub\r\nX-Long: one\r\n  two\r\n\r\n",
    "an empty field name": b"Host: hub\r\n: value\r\n\r\n",
    "differing Content-Length values":
        b"Host: hub\r\nContent-Length: 0\r\nContent-Length: 4\r\n\r\n",
    "a signed Content-Length": b"Host: hub\r\nContent-Length: +0\r\n\r\n",
    "a Content-Length with an underscore": b"Host: hub\r\nContent-Length: 1_0\r\n\r\n",
    "a superscript Content-Length": "Host: hub\r\nContent-Length: ²\r\n\r\n".encode("latin-1"),
    "too many fields": b"Host: hub\r\n" + b"X-A: 1\r\n" * MAX_HEADER_FIELDS + b"\r\n",
    "a line too long": b"Host: hub\r\nX-Big: " + b"a" * MAX_HEADER_LINE + b"\r\n\r\n",
}


@pytest.mark.parametrize("head", REFUSED_HEADS.values(), ids=REFUSED_HEADS.keys())
def test_a_head_http_tells_servers_to_refuse_has_a_reason(head):
    assert RequestHead(io.BytesIO(head)).status


def _exchange(hub, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", hub.port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize("head", REFUSED_HEADS.values(), ids=REFUSED_HEADS.keys())
def test_the_hub_answers_a_refused_head_400_and_closes(sqlite_hub, head):
    answer = _exchange(sqlite_hub, b"GET /healthz HTTP/1.1\r\n" + head)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]


def test_the_largest_head_allowed_is_served(sqlite_hub):
    fields = b"".join(b"X-F%d: %s\r\n" % (n, b"v" * 1000) for n in range(MAX_HEADER_FIELDS - 2))
    answer = _exchange(sqlite_hub, b"GET /healthz HTTP/1.1\r\nHost: hub\r\n" + fields
                       + b"Connection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
