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
"""

from __future__ import annotations

import socket
from typing import Any

import gevent

DEFAULT_HEADER_TIMEOUT = 10.0
REQUEST_TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
                            b"Content-Length: 0\r\n\r\n")


class RequestHeadTimeout(socket.timeout):
    """Raised into a connection's greenlet when its request head is late.

    A socket error, so that pywsgi closes the connection quietly when no
    request has begun.
    """


class RequestHeadDeadline:
    """Mixed into a gevent ``WSGIHandler`` (before it): the deadline and headers above."""

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
