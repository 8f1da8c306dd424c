"""Twilio's form posts to the webhooks, in Twilio's own parameter names.

Only the parameters the hub acts on are read; Twilio sends many more (and adds
new ones), which are left alone rather than refused.
"""

from marshmallow import EXCLUDE, Schema, fields, validate

from schemas.common import Id

# Every ``MessageStatus`` Twilio reports for an outgoing message.
MESSAGE_STATUSES = ("accepted", "scheduled", "queued", "sending", "sent", "delivered",
                    "undelivered", "failed", "read", "canceled", "partially_delivered")
MESSAGE_SID = validate.Regexp(r"^(SM|MM)[0-9a-f]{32}$",
                              error="Must be a Twilio message SID (SM and 32 hex digits)")
ERROR_CODE = validate.Regexp(r"^\d{1,6}$", error="Must be Twilio's numeric error code")


class TwilioStatusQuerySchema(Schema):
    """The query of the ``StatusCallback`` URL the hub gave with the send."""

    recipient = Id(load_default=None, metadata={
        "description": "the recipient the SMS was sent to", "example": "42"})


class TwilioStatusCallbackSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    MessageSid = fields.String(required=True, validate=MESSAGE_SID,
                               metadata={"example": "SM" + "0f" * 16})
    MessageStatus = fields.String(required=True, validate=validate.OneOf(MESSAGE_STATUSES),
                                  metadata={"example": "undelivered"})
    ErrorCode = fields.String(load_default=None, validate=ERROR_CODE,
                              metadata={"example": "30003"})
    AccountSid = fields.String(metadata={"example": "AC" + "0f" * 16})
    To = fields.String(metadata={"example": "+15558675310"})
    From = fields.String(metadata={"example": "+15017122661"})


class TwilioInboundSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    MessageSid = fields.String(required=True, validate=MESSAGE_SID,
                               metadata={"example": "SM" + "1e" * 16})
    From = fields.String(required=True, validate=validate.Length(min=1, max=64),
                         metadata={"example": "+15558675310"})
    To = fields.String(required=True, validate=validate.Length(min=1, max=64),
                       metadata={"example": "+15017122661"})
    MessagingServiceSid = fields.String(
        load_default=None, validate=validate.Regexp(r"^MG[0-9a-f]{32}$"),
        metadata={"description": "Present when To is a number of a Messaging Service's pool",
                  "example": "MG" + "2d" * 16})
    Body = fields.String(load_default="", validate=validate.Length(max=1600),
                         metadata={"example": "STOP"})
    AccountSid = fields.String(metadata={"example": "AC" + "0f" * 16})
