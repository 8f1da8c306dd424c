"""``Idempotency-Key`` handling: a retried request returns the first response.

The key is per caller and kept ``IDEMPOTENCY_TTL`` (24 h); the same key with a
different body is a ``Conflict``.

The first request owns the key in the database. It inserts the key's record
*before* acting, in the transaction its action commits, so the key's primary
key turns every concurrent retry away at the retry's own insert: PostgreSQL
makes that insert wait until the owner commits or rolls back, SQLite's single
writer does the same. A turned-away retry then waits for the owner's answer
(up to ``WAIT_FOR_FIRST`` seconds) and replays it, or answers ``409``. Checking
for a record before acting and storing it afterwards, as this module once did,
let eight simultaneous retries on PostgreSQL each send the message.

The answer is stored just after the action commits. A node that dies between
the two commits leaves the key "in progress" until it expires: its retries get
``409``, never a second send.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from flask import current_app
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from extensions import db
from models import IdempotencyRecord
from models.idempotency import IN_PROGRESS
from services.errors import Conflict, InvalidPayload

MAX_KEY_LENGTH = 255
WAIT_FOR_FIRST = 10.0
POLL_INTERVAL = 0.05


def _fingerprint(endpoint: str, body: Any) -> str:
    encoded = orjson.dumps({"endpoint": endpoint, "body": body}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(encoded).hexdigest()


def _this_key(user_id: int, key: str):
    return (IdempotencyRecord.user_id == user_id) & (IdempotencyRecord.key == key)


def run_once(
    user_id: int,
    *,
    key: str | None,
    endpoint: str,
    body: Any,
    action: Callable[[], tuple[dict[str, Any], int]],
) -> tuple[dict[str, Any], int]:
    """Run ``action`` unless this caller already ran it with this key; replay its response.

    ``action`` commits its own work; the key's record commits with it.
    """
    if key is None:
        return action()
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidPayload(f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable characters")
    fingerprint = _fingerprint(endpoint, body)
    if not _claim(user_id, key, endpoint, fingerprint):
        return _answer_of_first(user_id, key, fingerprint)
    try:
        response, status = action()
    except Exception:
        # Uncommitted, the claim goes with the rest: the key is free for a retry.
        db.session.rollback()
        raise
    db.session.execute(update(IdempotencyRecord).where(_this_key(user_id, key))
                       .values(status_code=status, response=response))
    db.session.commit()
    return response, status


def _claim(user_id: int, key: str, endpoint: str, fingerprint: str) -> bool:
    """Insert this key's record, in progress; False when another request holds the key."""
    expired_before = datetime.now(UTC) - timedelta(seconds=current_app.config["IDEMPOTENCY_TTL"])
    db.session.execute(delete(IdempotencyRecord).where(
        _this_key(user_id, key), IdempotencyRecord.created_at < expired_before))
    db.session.add(IdempotencyRecord(user_id=user_id, key=key, endpoint=endpoint,
                                     request_hash=fingerprint, status_code=IN_PROGRESS,
                                     response={}))
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        return False
    return True


def _answer_of_first(user_id: int, key: str, fingerprint: str) -> tuple[dict[str, Any], int]:
    """The first request's answer, once it has one; ``Conflict`` if it takes too long."""
    deadline = time.monotonic() + WAIT_FOR_FIRST
    query = select(IdempotencyRecord.request_hash, IdempotencyRecord.status_code,
                   IdempotencyRecord.response).where(_this_key(user_id, key))
    while True:
        first = db.session.execute(query).first()
        db.session.rollback()  # each look is a fresh snapshot, and the connection goes back
        if first is not None and first.request_hash != fingerprint:
            raise Conflict("Idempotency-Key was already used with a different request")
        if first is not None and first.status_code != IN_PROGRESS:
            return first.response, first.status_code
        if time.monotonic() >= deadline:
            raise Conflict("A request with this Idempotency-Key is still in progress")
        time.sleep(POLL_INTERVAL)


def purge_expired(now: datetime | None = None) -> int:
    now = now or datetime.now(UTC)
    ttl = timedelta(seconds=current_app.config["IDEMPOTENCY_TTL"])
    deleted = db.session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.created_at < now - ttl)
    ).rowcount
    db.session.commit()
    return deleted or 0
