"""Inbound messages, the suppression list and erasure: queries, bodies and answers."""

from marshmallow import Schema, fields, validate

from schemas.common import Id
from schemas.messages import MAX_BODY_LENGTH

WHEN = "2026-05-01T09:30:00.000Z"
SUPPRESSION_REASONS = ("keyword", "provider", "manual", "erased")
KEYWORDS = ("STOP", "START", "HELP")
PHONE = {"description": "E.164", "example": "+15551234567"}
SENDER = {"description": "The hub's number or sender id; `*` is every sender",
          "example": "+15005550006"}


class InboundListQuerySchema(Schema):
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100),
                           metadata={"example": 20})
    before = Id(load_default=None, allow_none=True,
                metadata={"description": "nextCursor of the previous page", "example": "41"})


class SimulatedInboundSchema(Schema):
    sender = fields.String(required=True, data_key="from",
                           validate=validate.Length(min=1, max=80),
                           metadata={"description": "The person's number, as a provider "
                                                    "would write it (kept and flagged when "
                                                    "it does not parse)",
                                     "example": "+15551234567"})
    to = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=80),
                       metadata={"description": "The hub's number it was sent to; default "
                                                "SIMULATED_SMS_FROM",
                                 "example": "+15005550006"})
    body = fields.String(required=True, validate=validate.Length(max=MAX_BODY_LENGTH),
                         metadata={"example": "STOP"})
    providerMessageId = fields.String(load_default=None, allow_none=True,
                                      validate=validate.Length(min=1, max=64),
                                      metadata={"description": "A repeat is stored once",
                                                "example": "SMsim0001"})


class SuppressionListQuerySchema(Schema):
    phone = fields.String(load_default=None, validate=validate.Length(min=1, max=32),
                          metadata=PHONE)
    sender = fields.String(load_default=None, validate=validate.Length(min=1, max=80),
                           metadata=SENDER)
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100),
                           metadata={"example": 20})
    before = Id(load_default=None, allow_none=True,
                metadata={"description": "nextCursor of the previous page", "example": "41"})


class SuppressionCreateSchema(Schema):
    phone = fields.String(required=True, validate=validate.Length(min=1, max=32),
                          metadata=PHONE)
    sender = fields.String(load_default=None, allow_none=True,
                           validate=validate.Length(min=1, max=80), metadata=SENDER)
    reason = fields.String(load_default=None, allow_none=True,
                           validate=validate.OneOf(SUPPRESSION_REASONS),
                           metadata={"description": "Default manual", "example": "manual"})


class SuppressionDeleteQuerySchema(Schema):
    sender = fields.String(load_default=None, validate=validate.Length(min=1, max=80),
                           metadata={**SENDER, "description": "Only this sender's entry; "
                                                             "without it every entry of the "
                                                             "number"})
