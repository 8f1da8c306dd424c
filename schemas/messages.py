"""Message bodies, list queries and delivery receipts."""

from typing import Any

from marshmallow import Schema, fields, validate

from models.message import RecipientStatus
from schemas.common import Id

MAX_BODY_LENGTH = 1600
MAX_VALIDITY_SECONDS = 30 * 24 * 3600  # as far ahead as sendAt may be
RECIPIENT_STATUSES = tuple(status.value for status in RecipientStatus)


class RawList(fields.List):
    """A JSON array taken as it is, each item left to the service that reads it.

    ``fields.List`` deserialises item by item: 10,000 recipients held the node for
    tens of milliseconds before the phone parsing, which pauses for others, began.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(fields.Raw(), **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[Any]:
        if not isinstance(value, list):
            raise self.make_error("invalid")
        return value


class MessageCreateSchema(Schema):
    body = fields.String(required=True, validate=validate.Length(min=1, max=MAX_BODY_LENGTH),
                         metadata={"example": "Your code is 4821"})
    recipients = RawList(required=True,
                             validate=validate.Length(min=1, max=10_000),
                             metadata={"description": "Phone numbers in E.164",
                                       "example": ["+15551234567", "+15005550001"]})
    sendAt = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=64),
                           metadata={"description": "When to send: ISO 8601 with an offset or "
                                                    "Z, up to 30 days ahead (up to 5 s in the "
                                                    "past is now); absent: at once",
                                     "example": None})
    quietHours = fields.Boolean(load_default=False, metadata={
        "description": "Reach each recipient only outside QUIET_HOURS in its own time zone(s)",
        "example": False})
    validitySeconds = fields.Integer(
        load_default=None, allow_none=True, strict=True,
        validate=validate.Range(min=1, max=MAX_VALIDITY_SECONDS),
        metadata={"description": "How long each recipient may wait to be sent once it could "
                                 "be (overrides SMS_VALIDITY_SECONDS); then it is EXPIRED",
                  "example": None})


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
