"""Bodies of the authentication routes and the user shape they return."""

from marshmallow import Schema, ValidationError, fields, validate

from schemas.common import Id, Timestamp
from services import passwords


def _not_common(password: str) -> None:
    if passwords.is_common(password):
        raise ValidationError("This password is one of the most common ones; choose another.")


class RegisterSchema(Schema):
    """A new account's rules, for ``POST /api/auth/register`` and ``flask users create``."""

    email = fields.Email(required=True, validate=validate.Length(max=254),
                         metadata={"example": "ada@example.com"})
    password = fields.String(required=True,
                             validate=[validate.Length(min=8, max=256), _not_common],
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
