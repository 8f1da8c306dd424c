"""Shapes of REST responses, for the OpenAPI document."""

from marshmallow import Schema, fields

from schemas.auth import UserSchema


class ErrorBodySchema(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    details = fields.Raw()


class ErrorSchema(Schema):
    error = fields.Nested(ErrorBodySchema, required=True)


class UserEnvelopeSchema(Schema):
    user = fields.Nested(UserSchema, required=True)


class LoginResponseSchema(Schema):
    accessToken = fields.String(required=True)
    refreshToken = fields.String(required=True)
    user = fields.Nested(UserSchema, required=True)


class AccessTokenSchema(Schema):
    accessToken = fields.String(required=True)


class NotificationSchema(Schema):
    id = fields.String(required=True)
    type = fields.String(required=True)
    title = fields.String(required=True)
    message = fields.String(required=True)
    data = fields.Raw()
    timestamp = fields.String(required=True)
    read = fields.Boolean(required=True)
    unreadCount = fields.Integer(allow_none=True)


class NotificationPageSchema(Schema):
    notifications = fields.List(fields.Nested(NotificationSchema), required=True)
    unreadCount = fields.Integer(required=True)
    nextCursor = fields.String(allow_none=True)


class NotifyResponseSchema(Schema):
    notification = fields.Nested(NotificationSchema, required=True)
    delivered = fields.Integer(required=True)


class BroadcastResponseSchema(Schema):
    notification = fields.Nested(NotificationSchema, required=True)
    recipients = fields.Integer(required=True)


class NodeSchema(Schema):
    id = fields.String(required=True)
    connections = fields.Integer(required=True)
    lastHeartbeat = fields.String(required=True)


class StatsSchema(Schema):
    totalConnections = fields.Integer(required=True)
    onlineUsers = fields.Integer(required=True)
    rooms = fields.Integer(required=True)
    nodes = fields.List(fields.Nested(NodeSchema), required=True)
    uptimeSeconds = fields.Float(required=True)


class OnlineSchema(Schema):
    userId = fields.String(required=True)
    online = fields.Boolean(required=True)
    connections = fields.Integer(required=True)


class CountSchema(Schema):
    count = fields.Integer(required=True)


class PingResponseSchema(Schema):
    sent = fields.Integer(required=True)
    timestamp = fields.String(required=True)


class MessageSchema(Schema):
    id = fields.String(required=True)
    status = fields.String(required=True)
    body = fields.String(required=True)
    encoding = fields.String(required=True)
    segments = fields.Integer(required=True)
    recipientCount = fields.Integer(required=True)
    successCount = fields.Integer(required=True)
    failedCount = fields.Integer(required=True)
    deliveredCount = fields.Integer(required=True)
    cost = fields.Float(required=True)
    version = fields.Integer(required=True)
    createdAt = fields.String(required=True)
    completedAt = fields.String(allow_none=True)


class MessagePageSchema(Schema):
    messages = fields.List(fields.Nested(MessageSchema), required=True)
    nextCursor = fields.String(allow_none=True)


class RecipientSchema(Schema):
    id = fields.String(required=True)
    recipientId = fields.String(required=True)
    messageId = fields.String(required=True)
    phone = fields.String(required=True)
    status = fields.String(required=True)
    version = fields.Integer(required=True)
    providerMessageId = fields.String(allow_none=True)
    errorCode = fields.String()
    errorMessage = fields.String()
    cost = fields.Float(required=True)
    sentAt = fields.String(allow_none=True)
    deliveredAt = fields.String(allow_none=True)


class RecipientPageSchema(Schema):
    recipients = fields.List(fields.Nested(RecipientSchema), required=True)
    nextCursor = fields.String(allow_none=True)


class ReceiptResultSchema(Schema):
    received = fields.Integer(required=True)
    applied = fields.Integer(required=True)
    unknown = fields.Integer(required=True)


class QuotaSchema(Schema):
    userId = fields.String(required=True)
    dailyRecipientQuota = fields.Integer(required=True)
    isDefault = fields.Boolean(required=True)
    usedToday = fields.Integer(required=True)
    remainingToday = fields.Integer(required=True)
    renewsAt = fields.String(required=True)
