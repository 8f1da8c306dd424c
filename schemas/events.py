"""Socket.IO shapes: what clients send, the acks they get back, and what the server pushes.

The incoming payloads that are single values are wrapped so marshmallow
validates them (``RoomPayload`` checks the string sent to ``join_room``). The
acks and the server's events are described here for the AsyncAPI document,
and ``tests/test_api_documents.py`` checks real traffic against them.
"""

from marshmallow import Schema, fields, validate

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
