"""Which browser origins may open a socket or call the API from script.

The page's own origin always may; others only when listed exactly in
``CORS_ALLOWED_ORIGINS`` (no wildcards, prefixes or suffixes). Forwarded
host and scheme headers count only behind a trusted proxy, so a client
talking to the hub directly cannot make a foreign origin look like its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def origin_policy(allowed: list[str], trust_proxy: bool) -> Callable[[str, dict], bool]:
    listed = frozenset(allowed)

    def is_allowed(origin: str | None, environ: dict[str, Any]) -> bool:
        if origin is None:
            return True
        if origin in listed:
            return True
        return origin in own_origins(environ, trust_proxy)

    return is_allowed


def own_origins(environ: dict[str, Any], trust_proxy: bool) -> set[str]:
    """The origins of the hub itself, as this request reached it."""
    host = environ.get("HTTP_HOST")
    scheme = environ.get("wsgi.url_scheme", "http")
    if not host:
        return set()
    origins = {f"{scheme}://{host}"}
    if trust_proxy:
        forwarded_scheme = (environ.get("HTTP_X_FORWARDED_PROTO") or scheme).split(",")[0]
        forwarded_host = (environ.get("HTTP_X_FORWARDED_HOST") or host).split(",")[0]
        origins.add(f"{forwarded_scheme.strip()}://{forwarded_host.strip()}")
    return origins
