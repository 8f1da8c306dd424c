"""Log lines that say which socket and user they are about, as text or JSON.

Socket handlers set the current socket id and user in a context variable; a
filter adds them to every record, so every line about a connection carries
``sid`` and ``user`` without each call passing them. The ``sid`` is the
socket id's tag (``services.observability.log_redaction.sid_tag``), never the id itself.
``LOG_FORMAT=json`` writes one JSON object per line.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from services.observability.log_redaction import install_redaction, sid_tag

_connection: contextvars.ContextVar[tuple[str, int | None] | None] = contextvars.ContextVar(
    "hub_connection", default=None)


@contextmanager
def about_connection(sid: str, user_id: int | None) -> Iterator[None]:
    token = connection_context(sid, user_id)
    try:
        yield
    finally:
        leave_connection_context(token)


def connection_context(sid: str, user_id: int | None) -> contextvars.Token:
    """Lines logged from now on are about this socket; for paths too hot for ``with``."""
    return _connection.set((sid, user_id))


def leave_connection_context(token: contextvars.Token) -> None:
    _connection.reset(token)


class ConnectionContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        current = _connection.get()
        record.sid, record.user = (sid_tag(current[0]), current[1]) if current else ("-", None)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if getattr(record, "sid", "-") != "-":
            entry["sid"], entry["user"] = record.sid, record.user
        if record.exc_info:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [sid=%(sid)s user=%(user)s]: %(message)s"


# python-engineio and python-socketio give a logger that has no level a handler of
# their own, which would write its lines a second time without redaction.
LIBRARY_LOGGERS = ("engineio.server", "socketio.server")


def configure(level: str, fmt: str) -> None:
    """Root logging for this process: level, format, connection context, redaction."""
    root = logging.getLogger()
    root.setLevel(level)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    for handler in root.handlers:
        handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
        if not any(isinstance(f, ConnectionContextFilter) for f in handler.filters):
            handler.addFilter(ConnectionContextFilter())
    install_redaction()
