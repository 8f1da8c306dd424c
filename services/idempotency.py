"""``Idempotency-Key`` handling: a retried request returns the first response.

The key is per caller and kept ``IDEMPOTENCY_TTL`` (24 h); the same key with a
different body is a ``Conflict``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from flask import current_app
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from extensions import db
from models import IdempotencyRecord
from services.errors import Conflict, InvalidPayload

MAX_KEY_LENGTH = 255


def _fingerprint(endpoint: str, body: Any) -> str:
    encoded = orjson.dumps({"endpoint": endpoint, "body": body}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(encoded).hexdigest()


def run_once(
    user_id: int,
    key: str | None,
    endpoint: str,
    body: Any,
    action: Callable[[], tuple[dict[str, Any], int]],
) -> tuple[dict[str, Any], int]:
    """Run ``action`` unless this caller already ran it with this key; replay its response."""
    if key is None:
        return action()
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidPayload(f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable characters")
    fingerprint = _fingerprint(endpoint, body)
    ttl = timedelta(seconds=current_app.config["IDEMPOTENCY_TTL"])
    existing = db.session.get(IdempotencyRecord, (user_id, key))
    if existing is not None and existing.created_at < datetime.now(UTC) - ttl:
        db.session.delete(existing)
        db.session.commit()
        existing = None
    if existing is not None:
        if existing.request_hash != fingerprint:
            raise Conflict("Idempotency-Key was already used with a different request")
        return existing.response, existing.status_code
    response, status = action()
    db.session.add(IdempotencyRecord(user_id=user_id, key=key, endpoint=endpoint,
                                     request_hash=fingerprint, status_code=status,
                                     response=response))
    try:
        db.session.commit()
    except IntegrityError:
        # A concurrent retry with the same key finished first; its answer stands.
        db.session.rollback()
        first = db.session.get(IdempotencyRecord, (user_id, key))
        if first is not None:
            return first.response, first.status_code
    return response, status


def purge_expired(now: datetime | None = None) -> int:
    now = now or datetime.now(UTC)
    ttl = timedelta(seconds=current_app.config["IDEMPOTENCY_TTL"])
    deleted = db.session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.created_at < now - ttl)
    ).rowcount
    db.session.commit()
    return deleted or 0
