"""Message bodies, list queries and delivery receipts."""

from marshmallow import Schema, fields, validate

from schemas.common import Id

MAX_BODY_LENGTH = 1600
RECIPIENT_STATUSES = ("PENDING", "SENDING", "SENT", "DELIVERED", "FAILED")


class MessageCreateSchema(Schema):
    body = fields.String(required=True, validate=validate.Length(min=1, max=MAX_BODY_LENGTH))
    recipients = fields.List(fields.Raw(), required=True,
                             validate=validate.Length(min=1, max=10_000))


class MessageListQuerySchema(Schema):
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    before = Id(load_default=None, allow_none=True)


class RecipientListQuerySchema(Schema):
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    after = Id(load_default=None, allow_none=True)
    status = fields.String(load_default=None, validate=validate.OneOf(RECIPIENT_STATUSES))


class DeliveryReceiptSchema(Schema):
    providerMessageId = fields.String(required=True, validate=validate.Length(min=1, max=64))
    status = fields.String(required=True, validate=validate.OneOf(("SENT", "DELIVERED",
                                                                   "FAILED")))
    errorCode = fields.String(load_default=None, allow_none=True,
                              validate=validate.Length(max=64))
    errorMessage = fields.String(load_default=None, allow_none=True,
                                 validate=validate.Length(max=255))
    timestamp = fields.String(load_default=None, allow_none=True)
