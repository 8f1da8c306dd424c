"""Field types shared by the schemas: ids as strings, UTC timestamps with ``Z``."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

from marshmallow import Schema, ValidationError, fields

MAX_ID = 2**63 - 1
MAX_USER_ID = 2**31 - 1  # ``users.id`` is a 32-bit integer on PostgreSQL


def isoformat(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with millisecond precision and a ``Z``, as the API promises."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Timestamp(fields.Field):
    """Dumps a datetime as ISO 8601 UTC with ``Z``."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return isoformat(value)


class Id(fields.Field):
    """An id: accepted as a string or an integer, always emitted as a string."""

    default_error_messages = {"invalid": "Must be a positive integer id (as a string or number)."}

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else str(value)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool):
            raise self.make_error("invalid")
        if isinstance(value, int):
            number = value
        elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
            number = int(value)
        else:
            raise self.make_error("invalid")
        if not 1 <= number <= MAX_ID:
            raise self.make_error("invalid")
        return number


class StrictBoolean(fields.Boolean):
    """Only ``true``/``false`` (and their query-string spellings), not 1, "yes" or "on"."""

    truthy = {True, "true", "True", "1"}
    falsy = {False, "false", "False", "0"}


@functools.cache
def schema_instance(schema_class: type[Schema]) -> Schema:
    """One shared instance per schema class: building one deep-copies all its fields.

    Schemas hold no per-call state, so handlers on every request and event can
    share them.
    """
    return schema_class()


def load_or_raise(schema: Schema | type[Schema], data: Any) -> Any:
    """Validate with ``schema`` (a class or an instance); ``InvalidPayload`` carries
    marshmallow's messages."""
    from services.errors import InvalidPayload

    try:
        return (schema_instance(schema) if isinstance(schema, type) else schema).load(data)
    except ValidationError as exc:
        raise InvalidPayload("Invalid payload", details=exc.messages) from None
