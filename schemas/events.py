"""Socket event payloads that are single values, wrapped so marshmallow validates them."""

from marshmallow import Schema, fields, validate

from schemas.common import Id


class RoomPayload(Schema):
    room = fields.String(required=True)


class IdPayload(Schema):
    id = Id(required=True)


class TokenPayload(Schema):
    token = fields.String(required=True, validate=validate.Length(min=1, max=8192))


class PongPayload(Schema):
    timestamp = fields.Raw(load_default=None, allow_none=True)
