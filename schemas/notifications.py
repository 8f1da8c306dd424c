"""Notification bodies (notify, broadcast, list queries) and the notification shape."""

import orjson
from marshmallow import Schema, ValidationError, fields, validate, validates

from schemas.common import Id, StrictBoolean

NOTIFICATION_TYPES = ("message_sent", "message_failed", "delivery_update", "system", "warning")
MAX_DATA_BYTES = 8 * 1024


class BroadcastSchema(Schema):
    title = fields.String(required=True, validate=validate.Length(min=1, max=200),
                          metadata={"example": "Invoice ready"})
    message = fields.String(required=True, validate=validate.Length(min=1, max=5000),
                            metadata={"example": "Your invoice for May"})
    type = fields.String(load_default="system", validate=validate.OneOf(NOTIFICATION_TYPES),
                         metadata={"example": "system"})


class NotifySchema(BroadcastSchema):
    data = fields.Raw(load_default=None, allow_none=True,
                      metadata={"description": "Any JSON, at most 8 KB",
                                "example": {"invoiceId": 7}})

    @validates("data")
    def _data_is_small_json(self, value, **kwargs):
        try:
            encoded = orjson.dumps(value)
        except TypeError:
            raise ValidationError("Must be JSON.") from None
        if len(encoded) > MAX_DATA_BYTES:
            raise ValidationError(f"Must be at most {MAX_DATA_BYTES} bytes of JSON.")


class NotificationQuerySchema(Schema):
    """``get_notifications`` payload and ``GET /api/notifications`` query."""

    unreadOnly = StrictBoolean(load_default=False, metadata={"example": False})
    limit = fields.Integer(
        load_default=20, strict=False, validate=validate.Range(min=1, max=100),
        metadata={"example": 20},
    )
    before = Id(load_default=None, allow_none=True,
                metadata={"description": "nextCursor of the previous page", "example": "12"})
