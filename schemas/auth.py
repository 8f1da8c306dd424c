"""Bodies of the authentication routes and the user shape they return."""

from marshmallow import Schema, fields, validate

from schemas.common import Id, Timestamp


class RegisterSchema(Schema):
    email = fields.Email(required=True, validate=validate.Length(max=254),
                         metadata={"example": "ada@example.com"})
    password = fields.String(required=True, validate=validate.Length(min=8, max=256),
                             metadata={"example": "correct horse battery"})
    name = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=120),
                         metadata={"example": "Ada"})


class LoginSchema(Schema):
    email = fields.String(required=True, validate=validate.Length(min=1, max=254),
                          metadata={"example": "admin@example.com"})
    password = fields.String(required=True, validate=validate.Length(min=1, max=256),
                             metadata={"example": "the password make run printed"})


class UserSchema(Schema):
    id = Id(metadata={"example": "1"})
    email = fields.String(metadata={"example": "admin@example.com"})
    name = fields.String(allow_none=True, metadata={"example": "Admin"})
    role = fields.String(validate=validate.OneOf(("user", "admin")),
                         metadata={"example": "admin"})
    createdAt = Timestamp(attribute="created_at", metadata={"example": "2026-05-01T09:30:00.000Z"})
