"""The schemas as readers see them: JSON Schema through apispec, and whole examples.

The OpenAPI and AsyncAPI documents are both built from the marshmallow schemas
that validate and shape the real traffic, so neither can describe a field the
code does not have. Each field carries one ``example`` in its metadata, beside
its rules; the example of a whole body or event is composed from those, so
there is no second hand-written copy of any shape to drift from the first.
"""

from __future__ import annotations

from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema, fields

from schemas.common import Id, StrictBoolean, Timestamp, schema_instance

TITLE = "Realtime messaging hub"
VERSION = "1.0.0"


def json_schema_spec(**options: Any) -> tuple[APISpec, MarshmallowPlugin]:
    """An OpenAPI 3.1 document whose marshmallow plugin knows this project's own field types.

    3.1 because its schemas are plain JSON Schema (``type: [string, "null"]``
    rather than 3.0's ``nullable``), which the AsyncAPI document can carry as
    they are and any JSON Schema validator checks. ``options`` are apispec's
    top-level keys (``info``, ``servers``...).
    """
    plugin = MarshmallowPlugin()
    spec = APISpec(title=TITLE, version=VERSION, openapi_version="3.1.0", plugins=[plugin],
                   **options)
    plugin.map_to_openapi_type(Id, "string", None)
    plugin.map_to_openapi_type(Timestamp, "string", "date-time")
    plugin.map_to_openapi_type(StrictBoolean, "boolean", None)
    return spec, plugin


def example_of(schema: Schema | type[Schema]) -> dict[str, Any]:
    """A whole example of ``schema``, every field included."""
    instance = schema_instance(schema) if isinstance(schema, type) else schema
    return {field.data_key or name: example_of_field(field, f"{type(instance).__name__}.{name}")
            for name, field in instance.fields.items()}


def example_of_field(field: fields.Field, where: str = "field") -> Any:
    """The field's own ``example``, or one composed from what it nests.

    A field with neither is a mistake in the schema, not something to paper
    over with a made-up value: it raises, so building the documents fails.
    """
    if "example" in field.metadata:
        return field.metadata["example"]
    if isinstance(field, fields.Nested):
        nested = field.schema
        return [example_of(nested)] if field.many else example_of(nested)
    if isinstance(field, fields.List):
        return [example_of_field(field.inner, where)]
    raise ValueError(f"{where} has no example: add metadata={{'example': ...}}")
