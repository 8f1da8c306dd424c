"""The Socket.IO namespace: the socket twin of the REST blueprints, just as thin.

Each ``on_<event>`` validates its payload with a schema, calls one service
function and returns the acknowledgement. ``dispatch_event`` wraps them all:
payload arity, the error shape, ``error`` events when there is no ack, and
the guarantee that an exception never kills the connection.

Events bypass Flask-SocketIO's request context. This is python-socketio's
``Namespace``, not Flask-SocketIO's, and the hub's server
(``services.transport.socket_server``) hands each event straight to
``dispatch_event``: Flask-SocketIO would push a request context for every
event (a copy of the handshake's environ, a session), which the hub needs for
nothing, and the events that touch neither the database nor the settings
(``NO_APP_CONTEXT``) run without even an app context. So ``flask.request``,
``flask.session`` and Flask-SocketIO's ``emit``, ``join_room`` and ``rooms``
do not work here. Use instead the ``LiveConnection`` each handler is given
(its ``sid``, ``identity`` and ``rooms``), ``services.realtime.emitter`` to
emit and to move sockets between rooms, and ``current_app`` inside the app
context the other handlers run in.
"""

from __future__ import annotations

import logging
from typing import Any

import socketio
from flask import Flask
from sqlalchemy.exc import DBAPIError, OperationalError

from schemas.common import load_or_raise
from schemas.events import IdPayload, PongPayload, RoomPayload, TokenPayload, TrackPayload
from schemas.notifications import NotificationQuerySchema
from services import notifications
from services.analytics import publisher
from services.auth import Identity
from services.errors import (
    AppError,
    AuthRefused,
    InvalidPayload,
    RateLimited,
    Unauthenticated,
    Unavailable,
)
from services.messaging import messages, tracking
from services.observability import metrics
from services.observability.log_context import connection_context, leave_connection_context
from services.realtime import emitter, rooms, sessions
from services.realtime.connections import LiveConnection, registry
from services.transport import rate_limits

log = logging.getLogger(__name__)

_MISSING = object()
REQUIRED, OPTIONAL, NONE = "required", "optional", "none"

# How many arguments each client event takes; anything else is invalid_payload.
EVENT_PAYLOADS: dict[str, str] = {
    "join_room": REQUIRED,
    "leave_room": REQUIRED,
    "get_rooms": NONE,
    "mark_notification_read": REQUIRED,
    "mark_all_notifications_read": NONE,
    "get_notifications": OPTIONAL,
    "pong": OPTIONAL,
    "authenticate": REQUIRED,
    "subscribe_analytics": NONE,
    "unsubscribe_analytics": NONE,
    "track_message": REQUIRED,
    "untrack_message": REQUIRED,
}


# Events that touch neither the database nor Flask: run without pushing an app context.
NO_APP_CONTEXT = frozenset({"get_rooms", "pong", "leave_room", "untrack_message",
                            "unsubscribe_analytics"})


def _failure(error: AppError) -> dict[str, Any]:
    return {"ok": False, "error": {"code": error.code, "message": _describe(error)}}


def _describe(error: AppError) -> str:
    """The message, with marshmallow's field messages folded in for invalid payloads."""
    if not isinstance(error.details, dict):
        return error.message
    parts = []
    for name, problems in error.details.items():
        text = "; ".join(problems) if isinstance(problems, list) else str(problems)
        parts.append(text if name in {"room", "id", "token", "_schema"} else f"{name}: {text}")
    return f"{error.message}: {'; '.join(parts)}"[:500]


def _payload_or_empty(payload: Any) -> Any:
    return {} if payload is _MISSING or payload is None else payload


class HubNamespace(socketio.Namespace):
    def __init__(self, app: Flask, namespace: str = "/") -> None:
        super().__init__(namespace)
        self.app = app
        self._authenticated: dict[str, tuple[Identity, dict[str, Any]]] = {}
        self._handlers = {event: getattr(self, f"on_{event}") for event in EVENT_PAYLOADS}

    # Connection lifecycle -------------------------------------------------

    def trigger_event(self, event: str, *args: Any) -> Any:
        """Only the server's own lifecycle events come through here, never client events."""
        if event == "connect":
            return self.on_connect(*args)
        if event == "disconnect":
            return self.on_disconnect(*args)
        return self.server.not_handled

    def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
        with self.app.app_context():
            try:
                identity = sessions.authenticate_connect(sid, environ, auth)
            except AuthRefused as refused:
                metrics.connect_refusals.labels(refused.code).inc()
                raise socketio.exceptions.ConnectionRefusedError(
                    refused.message, {"code": refused.code}) from None
            except Exception:
                metrics.connect_refusals.labels("unavailable").inc()
                log.exception("refusing %s: authentication could not be checked", sid)
                raise socketio.exceptions.ConnectionRefusedError(
                    "Service unavailable", {"code": "unavailable"}) from None
        self._authenticated[sid] = (identity, environ)
        return True

    def session_ready(self, sid: str) -> None:
        pending = self._authenticated.pop(sid, None)
        if pending is None:
            return
        identity, environ = pending
        with self.app.app_context():
            sessions.open_session(sid, identity=identity, environ=environ)

    def on_disconnect(self, sid: str, reason: Any = None) -> None:
        self._authenticated.pop(sid, None)
        rate_limits.limiter.forget(sid)
        with self.app.app_context():
            sessions.close_session(sid)

    # Event dispatch -------------------------------------------------------

    def dispatch_event(self, sid: str, *, event: str, args: list[Any], wants_ack: bool) -> Any:
        """Run one client event; always returns an ack value, never raises."""
        conn = registry.get(sid)
        context = connection_context(sid, conn.identity.user_id if conn else None)
        try:
            result = self._run(conn, event, args)
        except AppError as error:
            result = _failure(error)
        except (OperationalError, DBAPIError):
            log.exception("database error in %r from %s", event, sid)
            result = _failure(Unavailable())
        except Exception:
            log.exception("unexpected error in %r from %s", event, sid)
            result = _failure(AppError())
        finally:
            leave_connection_context(context)
        return self._answer(sid, event, result, wants_ack)

    def refuse_event(self, sid: str, *, event: str, wants_ack: bool) -> dict[str, Any]:
        """Over the socket's rate limit: answered, not run."""
        metrics.rate_limited.inc()
        return self._answer(sid, event, _failure(RateLimited(
            "Too many events: slow down")), wants_ack)

    def refuse_binary(self, sid: str, *, event: str, wants_ack: bool) -> dict[str, Any]:
        """Binary data, which no event takes: answered, not run; the connection then closes."""
        return self._answer(sid, event, _failure(InvalidPayload(
            "Binary data is not accepted")), wants_ack)

    def _answer(self, sid: str, event: str, result: Any, wants_ack: bool) -> Any:
        metrics.events_in.inc(event if event in EVENT_PAYLOADS else "unknown")
        failed = isinstance(result, dict) and result.get("ok") is False
        metrics.acks.inc(result["error"]["code"] if failed else "ok")
        if not wants_ack and isinstance(result, dict) and result.get("ok") is False:
            emitter.emit_to_sid(sid, event="error",
                                payload={"event": event[:64], **result["error"]})
        return result

    def _run(self, conn: LiveConnection | None, event: str, args: list[Any]) -> Any:
        mode = EVENT_PAYLOADS.get(event)
        if mode is None:
            raise InvalidPayload(f"Unknown event {event[:64]!r}")
        if conn is None:
            raise Unauthenticated()
        if len(args) > 1:
            raise InvalidPayload("Expected at most one argument")
        payload = args[0] if args else _MISSING
        if mode == REQUIRED and payload is _MISSING:
            raise InvalidPayload("This event needs a payload")
        if mode == NONE and payload not in (_MISSING, None, {}):
            raise InvalidPayload("This event takes no payload")
        handler = self._handlers[event]
        arguments = (conn,) if mode == NONE else (conn, payload)
        if event in NO_APP_CONTEXT:
            return handler(*arguments)
        with self.app.app_context():
            return handler(*arguments)

    # Client events ----------------------------------------------------------

    def on_join_room(self, conn: LiveConnection, payload: Any) -> dict[str, Any]:
        room = load_or_raise(RoomPayload, {"room": payload})["room"]
        return {"ok": True,
                "room": sessions.join_room(conn, room=room, message_owner=messages.owner_of)}

    def on_leave_room(self, conn: LiveConnection, payload: Any) -> dict[str, Any]:
        room = load_or_raise(RoomPayload, {"room": payload})["room"]
        return {"ok": True, "room": sessions.leave_room(conn, room)}

    def on_get_rooms(self, conn: LiveConnection) -> list[str]:
        return rooms.visible_rooms(conn.rooms)

    def on_mark_notification_read(self, conn: LiveConnection, payload: Any) -> dict[str, Any]:
        notification_id = load_or_raise(IdPayload, {"id": payload})["id"]
        unread = notifications.mark_read(conn.identity.user_id, notification_id=notification_id,
                                         origin_sid=conn.sid)
        return {"ok": True, "id": str(notification_id), "unreadCount": unread}

    def on_mark_all_notifications_read(self, conn: LiveConnection) -> dict[str, Any]:
        count = notifications.mark_all_read(conn.identity.user_id, conn.sid)
        return {"ok": True, "count": count}

    def on_get_notifications(self, conn: LiveConnection, payload: Any) -> dict[str, Any]:
        query = load_or_raise(NotificationQuerySchema, _payload_or_empty(payload))
        page = notifications.list_for_user(conn.identity.user_id, unread_only=query["unreadOnly"],
                                           limit=query["limit"], before=query["before"])
        return {"ok": True, **page}

    def on_pong(self, conn: LiveConnection, payload: Any) -> dict[str, Any]:
        timestamp = load_or_raise(PongPayload, _payload_or_empty(payload))["timestamp"]
        return {"ok": True, "rttMs": sessions.record_pong(conn, timestamp)}

    def on_subscribe_analytics(self, conn: LiveConnection) -> dict[str, Any]:
        publisher.subscribe(conn)
        return {"ok": True}

    def on_unsubscribe_analytics(self, conn: LiveConnection) -> dict[str, Any]:
        publisher.unsubscribe(conn)
        return {"ok": True}

    def on_track_message(self, conn: LiveConnection, payload: Any) -> dict[str, Any]:
        request = load_or_raise(TrackPayload, payload)
        return {"ok": True, **tracking.track(
            conn.identity, sid=conn.sid, message_id=request["messageId"],
            batch=request["batch"], since_version=request["sinceVersion"])}

    def on_untrack_message(self, conn: LiveConnection, payload: Any) -> dict[str, Any]:
        message_id = load_or_raise(IdPayload, {"id": payload})["id"]
        tracking.untrack(conn.sid, message_id)
        return {"ok": True, "messageId": str(message_id)}

    def on_authenticate(self, conn: LiveConnection, payload: Any) -> dict[str, Any]:
        token = payload.get("token") if isinstance(payload, dict) else payload
        token = load_or_raise(TokenPayload, {"token": token})["token"]
        return {"ok": True,
                **sessions.renew(conn, token=token, message_owner=messages.owner_of)}
