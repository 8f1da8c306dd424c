"""Engine.IO sessions from their first request: whose each is, how many, how long unauthenticated.

python-engineio opens a session for any request, and python-socketio
authenticates only the CONNECT packet that may follow; before it, and after
it too, the session id is all a request needs. So the hub

- binds each session to the client that opened it: its address (as
  ``client_address`` reads it) and its ``Origin``. A request on the session
  from another address, or with another Origin, is refused;
- counts every session against ``MAX_CONNECTIONS_PER_ADDRESS`` from its first
  request, whether it ever authenticates or not;
- gives each session ``CONNECT_TIMEOUT`` seconds to have an authenticated
  Socket.IO connection, and as long again whenever it is left without one.

Browsers send no Origin on a same-origin GET (the first long-polling request
of a page served by the hub) but do on its POSTs and WebSocket, so a session
opened without one accepts the hub's own origin later; a session opened with
an Origin accepts only that one. A non-browser client chooses its headers:
against it, only the address binds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from services.transport.origins import own_origin

# What a session's environ is read for after its first request: the client's address and
# Origin (here), the hub's own origin (``origins.own_origin``), and the token, address and
# user agent of a Socket.IO CONNECT (``services.realtime.sessions``).
SESSION_ENVIRON_KEYS = ("REMOTE_ADDR", "HTTP_ORIGIN", "HTTP_HOST", "wsgi.url_scheme",
                        "HTTP_AUTHORIZATION", "QUERY_STRING", "HTTP_USER_AGENT")


def compact_environ(environ: dict[str, Any]) -> dict[str, Any]:
    """The keys of ``environ`` a session reads after its first request.

    python-socketio keeps a session's environ for its whole life, and a WSGI
    environ holds every header twice over (its ``HTTP_*`` keys are new
    strings) beside the server's own entries: about 3 KB a connection, for
    seven values.
    """
    return {key: environ[key] for key in SESSION_ENVIRON_KEYS if key in environ}


def client_address(environ: dict[str, Any]) -> str:
    """The client's address, as ``services.transport.proxies`` resolved it behind trusted proxies.

    Never a value the client wrote: one could claim another's address, to use
    its session, or a new one per connection, to evade the cap.
    """
    return (environ.get("REMOTE_ADDR") or "")[:64]


@dataclass(frozen=True, slots=True)
class SessionClient:
    """What a session is bound to."""

    address: str
    origin: str | None


class EngineSessions:
    """This process's Engine.IO sessions: their clients, per-address counts and deadlines.

    ``deadlines`` holds the sessions still waiting to authenticate, in the
    order they will expire: every deadline is "now + ``connect_timeout``" when
    it is set, and setting one moves the session to the end.
    """

    def __init__(self, *, max_per_address: int, connect_timeout: float) -> None:
        self.max_per_address = max_per_address
        self.connect_timeout = connect_timeout
        self.clients: dict[str, SessionClient] = {}
        self.per_address: dict[str, int] = {}
        self.deadlines: dict[str, float] = {}

    def client_of(self, environ: dict[str, Any]) -> SessionClient:
        return SessionClient(client_address(environ),
                             environ.get("HTTP_ORIGIN"))

    def admits(self, environ: dict[str, Any]) -> bool:
        """Whether this request's address may open one more session."""
        address = client_address(environ)
        return self.per_address.get(address, 0) < self.max_per_address

    def open(self, eio_sid: str, environ: dict[str, Any]) -> bool:
        """Count a new session and start its deadline; False when its address is at the cap."""
        if not self.admits(environ):
            return False
        client = self.client_of(environ)
        self.clients[eio_sid] = client
        self.per_address[client.address] = self.per_address.get(client.address, 0) + 1
        self.await_connect(eio_sid)
        return True

    def belongs_to(self, eio_sid: str, environ: dict[str, Any]) -> bool:
        """Whether this request comes from the client that opened the session.

        A sid this process does not know is left to python-engineio, which
        answers 400 for it.
        """
        bound = self.clients.get(eio_sid)
        if bound is None:
            return True
        request = self.client_of(environ)
        if request.address != bound.address:
            return False
        if request.origin is None or request.origin == bound.origin:
            return True
        return bound.origin is None and request.origin == own_origin(environ)

    def await_connect(self, eio_sid: str) -> None:
        """(Re)start the session's ``CONNECT_TIMEOUT``: it has no authenticated connection."""
        self.deadlines.pop(eio_sid, None)
        self.deadlines[eio_sid] = time.monotonic() + self.connect_timeout

    def authenticated(self, eio_sid: str) -> None:
        self.deadlines.pop(eio_sid, None)

    def close(self, eio_sid: str) -> None:
        self.deadlines.pop(eio_sid, None)
        client = self.clients.pop(eio_sid, None)
        if client is None:
            return
        remaining = self.per_address.get(client.address, 1) - 1
        if remaining > 0:
            self.per_address[client.address] = remaining
        else:
            self.per_address.pop(client.address, None)

    def overdue(self, now: float) -> list[str]:
        """Sessions whose deadline has passed, oldest first; their deadlines are dropped."""
        expired = []
        for eio_sid, deadline in self.deadlines.items():
            if deadline > now:
                break
            expired.append(eio_sid)
        for eio_sid in expired:
            del self.deadlines[eio_sid]
        return expired

    def seconds_to_next_deadline(self, now: float) -> float:
        """How long nothing can expire: until the first deadline, or a whole timeout."""
        first = next(iter(self.deadlines.values()), None)
        return self.connect_timeout if first is None else max(0.0, first - now)
