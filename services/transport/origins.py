"""Which browser origins may open a socket or call the API from script.

The page's own origin always may; others only when listed exactly in
``CORS_ALLOWED_ORIGINS`` (no wildcards, prefixes or suffixes). The page's
own origin is the request's scheme and host as ``services.transport.proxies`` left
them: forwarded ones only from trusted proxies, so a client talking to the
hub directly cannot make a foreign origin look like its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def origin_policy(allowed: list[str]) -> Callable[[str, dict], bool]:
    listed = frozenset(allowed)

    def is_allowed(origin: str | None, environ: dict[str, Any]) -> bool:
        if origin is None:
            return True
        if origin in listed:
            return True
        return origin == own_origin(environ)

    return is_allowed


def own_origin(environ: dict[str, Any]) -> str | None:
    """The hub's own origin as this request reached it (None without a ``Host``)."""
    host = environ.get("HTTP_HOST")
    if not host:
        return None
    return f"{environ.get('wsgi.url_scheme', 'http')}://{host}"
