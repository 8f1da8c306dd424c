"""HTTP/1.1 connections of the hub's own server: request heads on a deadline, closes announced.

gevent's pywsgi waits for a request head as long as the client takes: a
thousand connections that each send half a header (slowloris) stay open
forever, a greenlet and a descriptor each, and under gunicorn they fill the
worker's connection pool. Here a connection has ``HTTP_HEADER_TIMEOUT``
seconds, from its accept or from its previous response, to send a whole
request head; a late one is answered 408 if it had begun a request, and
closed. Long-lived requests are not affected: the deadline ends with the
head, before the application runs (long-polling, WebSockets).

A response that keeps the connection says how long it may sit idle
(``Keep-Alive: timeout=N``), so keep-alive clients drop it before the server
does instead of reusing it as it closes. A response to a request that asked
for ``Connection: close`` says ``Connection: close``, as HTTP/1.1 asks:
pywsgi closed such connections without saying so, and Node's keep-alive
agents put the socket back in their pool, so the next request on it failed
with ``ECONNRESET``.

Heads are read strictly (``RequestHead``): what HTTP/1.1 tells a server to
refuse is answered 400, and a bare request runs a ninth fewer instructions
than with gevent's own parser (``make bench-requests``).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from typing import Any

import gevent

DEFAULT_HEADER_TIMEOUT = 10.0
REQUEST_TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
                            b"Content-Length: 0\r\n\r\n")


MAX_HEADER_LINE = 65536
MAX_HEADER_FIELDS = 100
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_DIGITS = re.compile(r"[0-9]+")


class RequestHead:
    """A request's header fields, as pywsgi asks ``MessageClass`` for them, read strictly.

    gevent reads a head with ``http.client.parse_headers``, which runs every one
    through the ``email`` package's parser: about a ninth of a bare request's
    instructions. This reads the same lines under the same limits (at most
    ``MAX_HEADER_FIELDS`` fields of ``MAX_HEADER_LINE`` bytes) and refuses, with
    a 400, what HTTP/1.1 tells a server to refuse rather than guess at (RFC 9112
    §5): a line that is not ``name: value``, whitespace before the colon, an
    obsolete folded line, and (§6.3) differing Content-Length values. The
    ``email`` parser took each of these some way: a line without a colon ended
    the head there, keeping the fields after it from the application.
    """

    __slots__ = ("status", "fields")

    def __init__(self, rfile: Any, *_: Any) -> None:
        self.status = ""
        self.fields: list[tuple[str, str]] = []
        while True:
            line = rfile.readline(MAX_HEADER_LINE + 1)
            if len(line) > MAX_HEADER_LINE:
                self.status = "Line too long"
                return
            if line in (b"\r\n", b"\n", b""):
                break
            if len(self.fields) == MAX_HEADER_FIELDS:
                self.status = f"More than {MAX_HEADER_FIELDS} header fields"
                return
            name, colon, value = line.decode("latin-1").partition(":")
            if not colon or not _FIELD_NAME.fullmatch(name):
                self.status = "Malformed header field"
                return
            self.fields.append((name, value.strip(" \t\r\n")))
        lengths = {value for name, value in self.fields if name.lower() == "content-length"}
        if len(lengths) > 1 or any(not _DIGITS.fullmatch(length) for length in lengths):
            self.status = "Invalid Content-Length"

    def get(self, name: str, default: Any = None) -> Any:
        name = name.lower()
        return next((value for field, value in self.fields if field.lower() == name), default)

    getheader = get

    def __delitem__(self, name: str) -> None:
        name = name.lower()
        self.fields = [(field, value) for field, value in self.fields if field.lower() != name]

    @property
    def typeheader(self) -> str | None:
        return self.get("content-type")

    @property
    def headers(self) -> Iterator[str]:
        return (f"{name}: {value}\r\n" for name, value in self.fields)


class RequestHeadTimeout(socket.timeout):
    """Raised into a connection's greenlet when its request head is late.

    A socket error, so that pywsgi closes the connection quietly when no
    request has begun.
    """


class RequestHeadDeadline:
    """Mixed into a gevent ``WSGIHandler`` (before it): the deadline and headers above, and
    heads read by ``RequestHead``."""

    header_timeout = DEFAULT_HEADER_TIMEOUT
    _head_deadline: gevent.Timeout | None = None

    def handle(self) -> None:
        try:
            super().handle()
        finally:
            self._end_head_deadline()

    def read_requestline(self) -> str:
        self._end_head_deadline()
        self._head_deadline = gevent.Timeout.start_new(
            self.header_timeout, RequestHeadTimeout("request head timed out"))
        return super().read_requestline()

    def MessageClass(self, *args: Any) -> RequestHead:  # noqa: N802 (pywsgi's name)
        return RequestHead(*args)

    def read_request(self, raw_requestline: str) -> bool:
        try:
            return super().read_request(raw_requestline)
        finally:
            self._end_head_deadline()

    def _end_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.close()
            self._head_deadline = None

    def _handle_client_error(self, ex: Exception) -> tuple[str, bytes]:
        if isinstance(ex, RequestHeadTimeout):
            self.close_connection = True
            return "408", REQUEST_TIMEOUT_RESPONSE
        return super()._handle_client_error(ex)

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Any:
        if (self.request_version == "HTTP/1.1" and not status.startswith("101")
                and not any(name.lower() == "connection" for name, _ in headers)):
            if self.close_connection:
                headers = [*headers, ("Connection", "close")]
            else:
                headers = [*headers, ("Keep-Alive", f"timeout={int(self.header_timeout)}")]
        return super().start_response(status, headers, exc_info)
