"""Many rows as one bound parameter: a JSON array that the database reads as a table.

An ``UPDATE ... FROM`` or ``INSERT ... SELECT`` over such a table does for a
whole batch what would otherwise take a statement per row (a round trip each
on PostgreSQL) or a ``CASE`` with a branch per row, which SQLAlchemy builds,
cache-keys and compiles anew for every batch. Here the statement's text is
the same whatever the batch holds, so it is compiled once and cached, the
rows travel as one string that orjson encodes in a single call, and
``RETURNING`` still tells exactly which rows changed.

On SQLite each row travels as an array and its values are read by position:
``json_extract`` finds an object's key by scanning the object, so a batch of
500 rows of ten keys cost about 8 ms to read, and by position half that.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Text, any_, bindparam, cast, column, func, select, type_coerce
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.sql.expression import BindParameter, FromClause
from sqlalchemy.types import TypeEngine

from extensions import db


def _encode(value: Any) -> Any:
    """Decimals as strings: exact, and both databases read a string into a numeric column."""
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__} as a JSON row value")


def json_rows(name: str, *, columns: Mapping[str, TypeEngine], rows: list[dict[str, Any]]
              ) -> FromClause:
    """``rows`` as a table called ``name`` with these typed columns, for one statement.

    On PostgreSQL ``jsonb_to_recordset``; on SQLite ``json_each`` with one
    ``json_extract`` per column, by position. Rows keep the order of the list.
    """
    dialect = db.engine.dialect.name
    return _table(dialect, name, columns, bindparam(
        f"{name}_rows", json_rows_value(dialect, columns, rows), type_=Text))


def json_table(dialect: str, name: str, columns: Mapping[str, TypeEngine]) -> FromClause:
    """``json_rows`` without the rows: for a statement built once and run many times, the
    rows bound at each run as ``<name>_rows`` (``json_rows_value``)."""
    return _table(dialect, name, columns, bindparam(f"{name}_rows", type_=Text))


def json_rows_value(dialect: str, columns: Mapping[str, TypeEngine],
                    rows: list[dict[str, Any]]) -> str:
    """The rows as the parameter of a ``json_table``: only their ``columns`` travel."""
    if dialect == "postgresql":
        return orjson.dumps([{key: row[key] for key in columns} for row in rows],
                            default=_encode).decode()
    return orjson.dumps([[row[key] for key in columns] for row in rows],
                        default=_encode).decode()


def _table(dialect: str, name: str, columns: Mapping[str, TypeEngine],
           payload: BindParameter[str]) -> FromClause:
    if dialect == "postgresql":
        return (func.jsonb_to_recordset(cast(payload, JSONB))
                .table_valued(*(column(key, type_) for key, type_ in columns.items()))
                .render_derived(name=name, with_types=True))
    items = func.json_each(payload).table_valued("value").alias(f"{name}_items")
    return select(*(
        type_coerce(func.json_extract(items.c.value, f"$[{position}]"), type_).label(key)
        for position, (key, type_) in enumerate(columns.items())
    )).subquery(name)


def among(dialect: str, target: ColumnElement[Any], name: str) -> ColumnElement[bool]:
    """``target`` equal to one of the list bound as ``name`` when the statement runs.

    On PostgreSQL the list is one array parameter (``= ANY``). An expanding
    ``IN`` there renders a parameter per value at every execution, and psycopg
    caches its conversion of a statement only up to 50 parameters: a batch of
    hundreds of receipt ids, part ids or suppression hashes was rendered and
    parsed anew each time, about a tenth of the hub's CPU on the send path
    (``bench/pipeline.py --profile``). SQLite has no arrays: an expanding ``IN``.
    """
    if dialect == "postgresql":
        return target == any_(bindparam(name, type_=ARRAY(target.type)))
    return target.in_(bindparam(name, expanding=True))
