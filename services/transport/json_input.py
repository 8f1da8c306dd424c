"""JSON from clients: every way a document can fail to decode is a ``ValueError``.

Python's own decoder recurses once per level of nesting and raises
``RecursionError`` past the interpreter's limit (about a thousand levels; a
16 KB packet holds eight thousand). Everything that turns bad input into a
clear answer catches ``ValueError``: Werkzeug's ``get_json`` (400), python-
engineio's packet decoder, the hub's count of malformed Socket.IO packets. A
``RecursionError`` went past all of them: a 500 on REST, and on sockets a
traceback per packet, never counted, so the socket was never closed.

orjson refuses documents deeper than 1,024 levels with a ``ValueError`` of its
own, before building them and without using Python's stack.
"""

from __future__ import annotations

from typing import Any

import orjson
from engineio import json as engineio_json
from flask.json.provider import DefaultJSONProvider

TOO_DEEP = "JSON nested too deeply"


def decode(text: str | bytes) -> Any:
    """orjson; what it refuses and Python accepts (integers past 64 bits, NaN) goes to Python.

    python-engineio's decoder also refuses integers of more than 100 digits.
    """
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        try:
            return engineio_json.loads(text)
        except RecursionError:
            raise ValueError(TOO_DEEP) from None


class RequestJSONProvider(DefaultJSONProvider):
    """Flask's JSON, with a nesting too deep for Python's decoder refused as invalid JSON (400)."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError(TOO_DEEP) from None
