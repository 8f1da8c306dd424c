"""The body that sets a user's daily recipient quota."""

from marshmallow import Schema, fields, validate

MAX_DAILY_RECIPIENT_QUOTA = 100_000_000


class QuotaUpdateSchema(Schema):
    """``null`` gives the user the configured default again."""

    dailyRecipientQuota = fields.Integer(
        required=True, allow_none=True, strict=True,
        validate=validate.Range(min=0, max=MAX_DAILY_RECIPIENT_QUOTA),
        metadata={"example": 5000})
