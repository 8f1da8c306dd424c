"""HMAC-SHA256 signatures of webhook bodies, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac


def sign_webhook_body(raw: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def verify_webhook_signature(raw: bytes, *, signature: str | None, secret: str) -> bool:
    """Whether ``signature`` (hex, optionally ``sha256=``-prefixed) signs ``raw``.

    A header with non-ASCII bytes is simply wrong: ``compare_digest`` raises
    ``TypeError`` on non-ASCII text, which once answered 500.
    """
    if not signature or not secret or not signature.isascii():
        return False
    if signature.startswith("sha256="):
        signature = signature[len("sha256="):]
    return hmac.compare_digest(sign_webhook_body(raw, secret), signature.strip().lower())
