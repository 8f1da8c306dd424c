"""The Socket.IO events as an AsyncAPI 3.0 document, built from the same schemas as the code.

Socket.IO maps onto AsyncAPI this way: the namespace ``/`` is the one channel;
each event is a message named after it; an event the hub listens for is a
``receive`` operation whose ``reply`` is the acknowledgement (the success
shape, or the shared failure shape); an event the hub emits is a ``send``
operation. The payload schemas are JSON Schema converted from the marshmallow
schemas that validate the payloads (``schemas/events.py``), so the document
cannot promise a field the code does not have.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from marshmallow import Schema, fields

from blueprints.socket_events import EVENT_PAYLOADS, OPTIONAL
from schemas import events
from schemas.documentation import TITLE, VERSION, example_of, example_of_field, json_schema_spec
from schemas.notifications import NotificationQuerySchema
from schemas.responses import InboundMessageSchema, NotificationSchema

CHANNEL = "socket"
FAILURE = "ack_failure"

Shape = type[Schema] | fields.Field


@dataclass(frozen=True)
class ClientEvent:
    """An event the hub listens for; ``payload`` None when it takes none."""

    name: str
    summary: str
    payload: Shape | None
    ack: Shape


@dataclass(frozen=True)
class ServerEvent:
    """An event the hub emits, and to whom."""

    name: str
    summary: str
    payload: type[Schema]


def _field(schema: type[Schema], name: str) -> fields.Field:
    """A wrapped single-value payload, as it travels: the field itself, not the wrapper."""
    return schema._declared_fields[name]


ROOMS = fields.List(fields.String(), metadata={"example": ["admins", "user:1"]})

CLIENT_EVENTS = [
    ClientEvent("join_room", "Join a room: your own user:<id>, message:<id> of a message you "
                "own (admins: any), or an open room:<name>", _field(events.RoomPayload, "room"),
                events.RoomAckSchema),
    ClientEvent("leave_room", "Leave a room (not your own user:<id>)",
                _field(events.RoomPayload, "room"), events.RoomAckSchema),
    ClientEvent("get_rooms", "The rooms this socket is in; the ack is the list itself",
                None, ROOMS),
    ClientEvent("subscribe_analytics", "Receive analytics_update (admins also "
                "global_analytics_update), the current figures at once; charged to your "
                "snapshot budget, else rate_limited", None, events.AckSchema),
    ClientEvent("unsubscribe_analytics", "Stop the analytics updates", None, events.AckSchema),
    ClientEvent("track_message", "Follow a message of your own (admins: any): its current "
                "message_update at once, then every change. The id alone: a recipient_update "
                "per recipient (at most 1,000 at once, then REST pages the rest) and per "
                "change. {messageId, batch: true}: recipient_updates batches, the snapshot of "
                "every recipient first; add sinceVersion after a reconnect to get only what "
                "changed since. Charged to your snapshot budget, else rate_limited",
                events.TRACK_MESSAGE_PAYLOAD, events.TrackAckSchema),
    ClientEvent("untrack_message", "Leave message:<id>", _field(events.IdPayload, "id"),
                events.UntrackAckSchema),
    ClientEvent("mark_notification_read", "Mark one of your notifications read; your other "
                "connections get notification_read", _field(events.IdPayload, "id"),
                events.MarkReadAckSchema),
    ClientEvent("mark_all_notifications_read", "Mark all your notifications read", None,
                events.CountAckSchema),
    ClientEvent("get_notifications", "Your notifications, newest first (payload optional)",
                NotificationQuerySchema, events.NotificationsAckSchema),
    ClientEvent("pong", "Answer a ping with its timestamp: records the round trip",
                events.PongPayload, events.PongAckSchema),
    ClientEvent("authenticate", "Renew the connection's token without reconnecting (the "
                "token, or {token})", _field(events.TokenPayload, "token"),
                events.AuthenticateAckSchema),
]

SERVER_EVENTS = [
    ServerEvent("session", "Once, right after connecting: who the server thinks you are",
                events.SessionSchema),
    ServerEvent("message_update", "A message's status and counts changed (to its owner and "
                "its trackers)", events.MessageUpdateSchema),
    ServerEvent("recipient_update", "A recipient's status changed (to the message's trackers)",
                events.RecipientUpdateSchema),
    ServerEvent("recipient_updates", "Recipients' latest states, to the message's batched "
                "trackers: at most one batch per RECIPIENT_BATCH_INTERVAL, the first change at "
                "once", events.RecipientUpdatesSchema),
    ServerEvent("inbound_message", "A person texted one of the hub's numbers (to admins and "
                "to the owner of the latest message sent to that number)",
                InboundMessageSchema),
    ServerEvent("notification", "A new notification (a broadcast carries unreadCount: null)",
                NotificationSchema),
    ServerEvent("notification_read", "Notifications were marked read on another connection",
                events.NotificationReadSchema),
    ServerEvent("auth_expiring", "About 60 s before the token expires: send authenticate",
                events.AuthExpiringSchema),
    ServerEvent("auth_expired", "The token expired: authenticate within the grace or be "
                "disconnected", events.AuthExpiredSchema),
    ServerEvent("analytics_update", "Figures of the subscriber, at most one per type per "
                "ANALYTICS_INTERVAL", events.AnalyticsUpdateSchema),
    ServerEvent("global_analytics_update", "System-wide figures, to subscribed admins",
                events.GlobalAnalyticsUpdateSchema),
    ServerEvent("ping", "From POST /api/socket/ping: answer with pong {timestamp}",
                events.PingSchema),
    ServerEvent("error", "A failed event that had no ack callback", events.ErrorEventSchema),
]


class _Converter:
    """Marshmallow shapes to JSON Schema, collecting the named schemas they use."""

    def __init__(self) -> None:
        self.spec, plugin = json_schema_spec()
        self.converter = plugin.converter
        for schema in (*events.ANALYTICS_DATA, events.TrackPayload):
            self.converter.resolve_nested_schema(schema)

    def schema(self, shape: Shape) -> dict[str, Any]:
        if isinstance(shape, fields.Field):
            return self.converter.field2property(shape)
        return self.converter.resolve_nested_schema(shape)

    def components(self) -> dict[str, Any]:
        return self.spec.to_dict()["components"]["schemas"]


def _example(shape: Shape) -> Any:
    return example_of_field(shape) if isinstance(shape, fields.Field) else example_of(shape)


def _message(converter: _Converter, name: str, summary: str, shape: Shape) -> dict[str, Any]:
    return {"name": name, "summary": summary, "contentType": "application/json",
            "payload": converter.schema(shape),
            "examples": [{"name": name, "payload": _example(shape)}]}


def _ref(message: str) -> dict[str, str]:
    return {"$ref": f"#/channels/{CHANNEL}/messages/{message}"}


@functools.cache
def _document() -> dict[str, Any]:
    converter = _Converter()
    messages: dict[str, Any] = {
        FAILURE: _message(converter, "ack (failure)", "Any event that failed: the ack, or "
                          "the error event when there was no ack callback",
                          events.AckFailureSchema)}
    operations: dict[str, Any] = {}
    channel_ref = {"$ref": f"#/channels/{CHANNEL}"}
    for event in CLIENT_EVENTS:
        arity = EVENT_PAYLOADS[event.name]
        if event.payload is None:
            payload_note = "Takes no payload."
            messages[event.name] = {"name": event.name, "summary": event.summary,
                                    "payload": {"type": "null"},
                                    "examples": [{"name": event.name, "payload": None}]}
        else:
            payload_note = ("The payload may be left out." if arity == OPTIONAL
                            else "Takes one payload.")
            messages[event.name] = _message(converter, event.name, event.summary, event.payload)
        messages[f"{event.name}_ack"] = _message(converter, f"{event.name} (ack)",
                                                 f"The acknowledgement of {event.name}",
                                                 event.ack)
        operations[event.name] = {
            "action": "receive", "channel": channel_ref, "summary": event.summary,
            "description": f"Client → hub. {payload_note} Emit it with an ack callback; "
                           "without one, a failure arrives as the error event.",
            "messages": [_ref(event.name)],
            "reply": {"channel": channel_ref,
                      "messages": [_ref(f"{event.name}_ack"), _ref(FAILURE)]},
        }
    for event in SERVER_EVENTS:
        messages[event.name] = _message(converter, event.name, event.summary, event.payload)
        operations[event.name] = {"action": "send", "channel": channel_ref,
                                  "summary": event.summary,
                                  "description": "Hub → client.",
                                  "messages": [_ref(event.name)]}
    return {
        "asyncapi": "3.0.0",
        "info": {"title": TITLE, "version": VERSION, "description": (
            "The Socket.IO half of the hub's interface (`docs/API.md`): one namespace, `/`. "
            "Connect with the official client and the access token in `auth.token`; a "
            "refused connection's `connect_error` carries `err.data.code`. Payload keys "
            "are camelCase, ids are strings, timestamps ISO 8601 UTC with `Z`.")},
        "defaultContentType": "application/json",
        "channels": {CHANNEL: {"address": "/", "title": "Namespace /",
                               "messages": messages}},
        "operations": operations,
        "components": {
            "schemas": converter.components(),
            "securitySchemes": {"token": {
                "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "The access token, in the Socket.IO handshake's auth.token "
                               "(non-browser clients: an Authorization: Bearer header or a "
                               "token query parameter)"}},
        },
    }


def build_asyncapi(host: str) -> dict[str, Any]:
    """The AsyncAPI document, with this hub (as the caller reached it) as its server."""
    return {**_document(), "servers": {"hub": {
        "host": host, "protocol": "ws", "pathname": "/socket.io/",
        "description": "Socket.IO 5 over Engine.IO 4 (websocket, or long-polling first)",
        "security": [{"$ref": "#/components/securitySchemes/token"}]}}}
