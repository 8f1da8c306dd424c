"""Socket.IO shapes: what clients send, the acks they get back, and what the server pushes.

The incoming payloads that are single values are wrapped so marshmallow
validates them (``RoomPayload`` checks the string sent to ``join_room``). The
acks and the server's events are described here for the AsyncAPI document,
and ``tests/test_api_documents.py`` checks real traffic against them.
"""

from typing import Any

from marshmallow import Schema, ValidationError, fields, pre_load, validate, validates_schema

from schemas.common import Id
from schemas.documentation import example_of
from schemas.messages import RECIPIENT_STATUSES
from schemas.responses import (
    MESSAGE_STATUSES,
    WHEN,
    DashboardStatsSchema,
    GlobalStatsSchema,
    MessageStatsSchema,
    NotificationPageSchema,
    ProviderWordsSchema,
    UsageStatsSchema,
)

FIGURE_TYPES = ("dashboard_stats", "message_stats", "usage_stats")


# Client -> server payloads ------------------------------------------------------

class RoomPayload(Schema):
    room = fields.String(required=True, metadata={
        "description": "user:<id>, message:<id> of your own message, or room:<name>",
        "example": "room:lobby"})


class IdPayload(Schema):
    id = Id(required=True, metadata={"example": "42"})


class TrackPayload(Schema):
    """``track_message``'s payload: the message id alone (per-recipient events), or an object."""

    messageId = Id(required=True, metadata={"example": "42"})
    batch = fields.Boolean(load_default=False, truthy={True}, falsy={False}, metadata={
        "description": "true: recipient_updates batches instead of a recipient_update each",
        "example": True})
    sinceVersion = fields.Integer(load_default=None, strict=True,
                                  validate=validate.Range(min=0, max=2**53), metadata={
        "description": "With batch: the highest recipient_updates version seen, to get only "
                       "what changed since", "example": 1764514800000})

    @pre_load
    def wrap_bare_id(self, data: Any, **kwargs: Any) -> Any:
        return data if isinstance(data, dict) else {"messageId": data}

    @validates_schema
    def since_only_when_batched(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["sinceVersion"] is not None and not data["batch"]:
            raise ValidationError("sinceVersion needs batch: true", "sinceVersion")


# As documented: the bare id (the seed's form) or the object ``TrackPayload`` reads.
TRACK_MESSAGE_PAYLOAD = fields.Raw(metadata={
    "oneOf": [{"type": ["string", "integer"], "description": "The message id alone: a "
               "recipient_update per recipient"},
              {"$ref": "#/components/schemas/TrackPayload"}],
    "example": {"messageId": "42", "batch": True}})


class TokenPayload(Schema):
    token = fields.String(required=True, validate=validate.Length(min=1, max=8192),
                          metadata={"description": "A new access token of the same user",
                                    "example": "eyJhbGciOiJIUzI1NiJ9.e30.x"})


class PongPayload(Schema):
    timestamp = fields.Raw(load_default=None, allow_none=True, metadata={
        "description": "The timestamp of the ping being answered", "example": WHEN})


# Acknowledgements -------------------------------------------------------------

class AckSchema(Schema):
    ok = fields.Boolean(required=True, metadata={"example": True})


class AckErrorBodySchema(Schema):
    code = fields.String(required=True, validate=validate.OneOf((
        "invalid_payload", "forbidden", "not_found", "rate_limited", "unauthenticated",
        "unavailable", "internal_error")), metadata={"example": "forbidden"})
    message = fields.String(required=True, metadata={"example": "You may not join that room"})


class AckFailureSchema(Schema):
    ok = fields.Boolean(required=True, metadata={"example": False})
    error = fields.Nested(AckErrorBodySchema, required=True)


class RoomAckSchema(AckSchema):
    room = fields.String(required=True, metadata={"example": "room:lobby"})


class MarkReadAckSchema(AckSchema):
    id = fields.String(required=True, metadata={"example": "12"})
    unreadCount = fields.Integer(required=True, metadata={"example": 2})


class CountAckSchema(AckSchema):
    count = fields.Integer(required=True, metadata={"example": 3})


class NotificationsAckSchema(AckSchema, NotificationPageSchema):
    pass


class PongAckSchema(AckSchema):
    rttMs = fields.Float(required=True, allow_none=True, metadata={
        "description": "The round trip, when the timestamp echoed a ping's", "example": 3.2})


class TrackAckSchema(AckSchema):
    messageId = fields.String(required=True, metadata={"example": "42"})
    status = fields.String(required=True, metadata={"enum": list(MESSAGE_STATUSES),
                                                    "example": "SENDING"})
    recipientCount = fields.Integer(required=True, metadata={"example": 2})
    snapshotRecipients = fields.Integer(required=True, metadata={
        "description": "recipient_update events sent as the snapshot", "example": 2})
    truncated = fields.Boolean(required=True, metadata={"example": False})
    nextCursor = fields.String(required=True, allow_none=True, metadata={
        "description": "When truncated: `after` for GET /api/messages/<id>/recipients",
        "example": None})
    version = fields.Integer(metadata={
        "description": "Batched only: the snapshot's version, the sinceVersion to resume from "
                       "when no recipient_updates arrive", "example": 1764514800000})
    resumed = fields.Boolean(metadata={
        "description": "Batched only: true when only the changes since sinceVersion were sent",
        "example": False})


class UntrackAckSchema(AckSchema):
    messageId = fields.String(required=True, metadata={"example": "42"})


class AuthenticateAckSchema(AckSchema):
    expiresAt = fields.String(required=True, metadata={"example": WHEN})


# Server -> client events ----------------------------------------------------------

class MessageUpdateSchema(Schema):
    messageId = fields.String(required=True, metadata={"example": "42"})
    status = fields.String(required=True, metadata={"enum": list(MESSAGE_STATUSES),
                                                    "example": "SENT"})
    successCount = fields.Integer(required=True, metadata={"example": 1})
    failedCount = fields.Integer(required=True, metadata={"example": 1})
    deliveredCount = fields.Integer(required=True, metadata={"example": 1})
    recipientCount = fields.Integer(required=True, metadata={"example": 2})
    statusCounts = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True,
                               metadata={"description": "Recipients per status, for each "
                                                        "status present",
                                         "example": {"DELIVERED": 1, "FAILED": 1}})
    cost = fields.Float(required=True, metadata={"example": 0.0075})
    version = fields.Integer(required=True, metadata={
        "description": "Grows by one per change: keep the highest seen", "example": 4})


class RecipientUpdateSchema(ProviderWordsSchema):
    messageId = fields.String(required=True, metadata={"example": "42"})
    recipientId = fields.String(required=True, metadata={"example": "7"})
    phone = fields.String(required=True, metadata={"example": "+15005550001"})
    status = fields.String(required=True, metadata={"enum": list(RECIPIENT_STATUSES),
                                                    "example": "FAILED"})
    errorMessage = fields.String(metadata={"description": "Only when it failed",
                                           "example": "Invalid phone number"})
    errorCode = fields.String(metadata={"description": "Only when it failed",
                                        "example": "invalid_number"})
    version = fields.Integer(required=True, metadata={"example": 3})


class RecipientStateSchema(ProviderWordsSchema):
    recipientId = fields.String(required=True, metadata={"example": "7"})
    phone = fields.String(required=True, metadata={"example": "+15005550001"})
    status = fields.String(required=True, metadata={"enum": list(RECIPIENT_STATUSES),
                                                    "example": "FAILED"})
    errorMessage = fields.String(metadata={"description": "Only when it failed",
                                           "example": "Invalid phone number"})
    errorCode = fields.String(metadata={"description": "Only when it failed",
                                        "example": "invalid_number"})
    version = fields.Integer(required=True, metadata={
        "description": "The recipient's own version: keep the highest seen", "example": 3})


class RecipientUpdatesSchema(Schema):
    messageId = fields.String(required=True, metadata={"example": "42"})
    updates = fields.List(fields.Nested(RecipientStateSchema), required=True, metadata={
        "description": "Each recipient at most once, in its latest state"})
    version = fields.Integer(required=True, metadata={
        "description": "The batch's version (server milliseconds), rising: send the highest "
                       "seen as sinceVersion when tracking again after a reconnect",
        "example": 1764514800250})


class NotificationReadSchema(Schema):
    id = fields.String(metadata={"description": "Absent when all were marked",
                                 "example": "12"})
    all = fields.Boolean(metadata={"description": "Present (true) when all were marked",
                                   "example": True})
    unreadCount = fields.Integer(required=True, metadata={"example": 0})


class SessionSchema(Schema):
    userId = fields.String(required=True, metadata={"example": "1"})
    role = fields.String(required=True, metadata={"enum": ["user", "admin"],
                                                  "example": "admin"})
    expiresAt = fields.String(required=True, allow_none=True, metadata={"example": WHEN})


class AuthExpiringSchema(Schema):
    expiresAt = fields.String(required=True, metadata={"example": WHEN})


class AuthExpiredSchema(Schema):
    message = fields.String(required=True, metadata={
        "example": "Token expired: send a new token with 'authenticate'"})


class AnalyticsUpdateSchema(Schema):
    type = fields.String(required=True, metadata={"enum": list(FIGURE_TYPES),
                                                  "example": "dashboard_stats"})
    data = fields.Raw(required=True, metadata={
        "description": "DashboardStats, MessageStats or UsageStats, by type",
        "oneOf": [{"$ref": f"#/components/schemas/{name}"}
                  for name in ("DashboardStats", "MessageStats", "UsageStats")],
        "example": example_of(DashboardStatsSchema)})


class GlobalAnalyticsUpdateSchema(Schema):
    type = fields.String(required=True, metadata={"enum": ["dashboard_stats"],
                                                  "example": "dashboard_stats"})
    data = fields.Nested(GlobalStatsSchema, required=True)


class PingSchema(Schema):
    timestamp = fields.String(required=True, metadata={"example": WHEN})


class ErrorEventSchema(Schema):
    event = fields.String(required=True, metadata={"example": "join_room"})
    code = fields.String(required=True, metadata={"example": "forbidden"})
    message = fields.String(required=True, metadata={"example": "You may not join that room"})


# The schemas that AnalyticsUpdateSchema's ``data`` refers to by name.
ANALYTICS_DATA = (DashboardStatsSchema, MessageStatsSchema, UsageStatsSchema)
