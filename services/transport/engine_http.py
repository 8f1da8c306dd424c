"""The Engine.IO server's HTTP side: long-polling requests that end their own session.

python-engineio closes a session by queueing a CLOSE packet, then waiting
until a long-polling GET has taken it. When the request that ends the session
is a POST (its fifth malformed packet, or a body over ``MAX_MESSAGE_SIZE``)
and no GET is waiting, that wait never ends: the POST is never answered, its
greenlet and socket stay (in ``CLOSE_WAIT`` once the client gives up), and the
next POST on that sid finds the half-closed session and fails with a
``KeyError`` (500). A payload that does not decode (``abc``) was logged with
two tracebacks and answered ``200 OK``, the session kept.

Here:

- closing a session never waits: the CLOSE packet stays queued for a GET that
  may still come, and the session is gone at once;
- a long-polling POST is checked before python-engineio reads it: a body over
  the limit is refused with 413 without being read, one that does not decode
  with 400, and either ends the session, as Node's engine.io does; the line
  it logs is rate limited;
- a request for a session that is gone gets 400, and every refusal is JSON in
  the API's shape, ``{error: {code, message}}``.

Requests reach this server after ``services.transport.engine_socket`` has refused
foreign origins and sessions used by another client.
"""

from __future__ import annotations

import io
import logging
from typing import Any
from urllib.parse import parse_qs

import engineio
import orjson
from engineio import payload

from services.observability.log_throttle import ThrottledLog

log = logging.getLogger(__name__)

INVALID_PAYLOAD_LOG_INTERVAL = 10.0
_invalid_payload_log = ThrottledLog(log, INVALID_PAYLOAD_LOG_INTERVAL)


class HubEngineServer(engineio.Server):
    """python-engineio's server with the long-polling checks above; ``install`` sets it."""

    def disconnect(self, sid: str | None = None) -> None:
        """As python-engineio's, without waiting for a GET to collect the CLOSE packet."""
        for key in [sid] if sid is not None else list(self.sockets):
            sock = self.sockets.get(key)
            if sock is not None:
                sock.close(wait=False, reason=self.reason.SERVER_DISCONNECT)
                self.sockets.pop(key, None)

    def handle_request(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        refusal = self._refusal(environ)
        if refusal is None:
            return super().handle_request(environ, start_response)
        response = _json_error(*refusal)
        start_response(response["status"], response["headers"] + self._cors_headers(environ))
        return [response["response"]]

    def _refusal(self, environ: dict[str, Any]) -> tuple[str, str, str] | None:
        """Why this long-polling request is refused here; None lets python-engineio serve it."""
        query = parse_qs(environ.get("QUERY_STRING", ""))
        sid = query.get("sid", [None])[0]
        if sid is None or query.get("transport", ["polling"]) != ["polling"]:
            return None
        sock = self.sockets.get(sid)
        if sock is None or sock.closed:
            self.sockets.pop(sid, None)
            return "400 BAD REQUEST", "invalid_session", "Invalid session"
        if environ["REQUEST_METHOD"] != "POST" or sock.upgraded or not sock.connected:
            return None
        return self._check_post(sid, environ)

    def _check_post(self, sid: str, environ: dict[str, Any]) -> tuple[str, str, str] | None:
        """Read the body of a POST and decode it once; python-engineio reads it again from memory.

        Without ``Content-Length`` (a chunked body) it reads at most one byte
        past the limit, where python-engineio would have read nothing at all.
        """
        limit = self.max_http_buffer_size
        try:
            declared = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            declared = limit + 1
        if declared > limit:
            self.disconnect(sid)
            return "413 PAYLOAD TOO LARGE", "payload_too_large", "Payload too large"
        body = environ["wsgi.input"].read(declared if declared >= 0 else limit + 1)
        if len(body) > limit:
            self.disconnect(sid)
            return "413 PAYLOAD TOO LARGE", "payload_too_large", "Payload too large"
        sock = self.sockets.get(sid)
        if sock is None or sock.closed:
            return "400 BAD REQUEST", "invalid_session", "Invalid session"
        try:
            payload.Payload(encoded_payload=body.decode("utf-8"))
        except Exception as error:  # any failure to decode is the client's
            _invalid_payload_log.warning(
                "closing a long-polling session: its payload does not decode (%s)",
                type(error).__name__)
            self.disconnect(sid)
            return "400 BAD REQUEST", "invalid_payload", "Invalid Engine.IO payload"
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return None

    def _bad_request(self, message: str | None = None) -> dict[str, Any]:
        return _json_error("400 BAD REQUEST", "bad_request", message or "Bad request")

    def _method_not_found(self) -> dict[str, Any]:
        return _json_error("405 METHOD NOT ALLOWED", "method_not_allowed", "Method not allowed")


def _json_error(status: str, code: str, message: str) -> dict[str, Any]:
    """A response as python-engineio builds them, in the API's error shape."""
    return {"status": status, "headers": [("Content-Type", "application/json")],
            "response": orjson.dumps({"error": {"code": code, "message": message}})}
