"""Message bodies, list queries and delivery receipts."""

from marshmallow import Schema, fields, validate

from models.message import RecipientStatus
from schemas.common import Id

MAX_BODY_LENGTH = 1600
RECIPIENT_STATUSES = tuple(status.value for status in RecipientStatus)


class MessageCreateSchema(Schema):
    body = fields.String(required=True, validate=validate.Length(min=1, max=MAX_BODY_LENGTH),
                         metadata={"example": "Your code is 4821"})
    recipients = fields.List(fields.Raw(), required=True,
                             validate=validate.Length(min=1, max=10_000),
                             metadata={"description": "Phone numbers in E.164",
                                       "example": ["+15551234567", "+15005550001"]})


class MessageListQuerySchema(Schema):
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100),
                           metadata={"example": 20})
    before = Id(load_default=None, allow_none=True,
                metadata={"description": "nextCursor of the previous page", "example": "41"})


class RecipientListQuerySchema(Schema):
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000),
                           metadata={"example": 100})
    after = Id(load_default=None, allow_none=True,
               metadata={"description": "nextCursor of the previous page", "example": "7"})
    status = fields.String(load_default=None, validate=validate.OneOf(RECIPIENT_STATUSES),
                           metadata={"example": "FAILED"})


class DeliveryReceiptSchema(Schema):
    providerMessageId = fields.String(required=True, validate=validate.Length(min=1, max=64),
                                      metadata={"example": "sim-1-2"})
    status = fields.String(required=True, validate=validate.OneOf(("SENT", "DELIVERED",
                                                                   "FAILED")),
                           metadata={"example": "DELIVERED"})
    errorCode = fields.String(load_default=None, allow_none=True,
                              validate=validate.Length(max=64), metadata={"example": None})
    errorMessage = fields.String(load_default=None, allow_none=True,
                                 validate=validate.Length(max=255), metadata={"example": None})
    timestamp = fields.String(load_default=None, allow_none=True,
                              metadata={"example": "2026-05-01T09:30:02.000Z"})
