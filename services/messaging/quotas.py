"""Daily recipient quotas: how many recipients one user's messages may have per UTC day.

Every SMS costs the operator money, so an account in the wrong hands (a sign-up
by an attacker, a stolen token) must not be able to send to unlimited numbers
(SMS pumping). Each user may address ``DAILY_RECIPIENT_QUOTA`` recipients per
UTC day, duplicates removed, sent or not; an admin may give one user another
quota (a ``user_quotas`` row). The day's use is read from
``message_daily_totals``, which the triggers of migration 0003 keep exact in
every writing transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select

from extensions import db
from models import MessageDailyTotal, User, UserQuota
from schemas.common import isoformat
from services.errors import NotFound, QuotaExceeded


def _renews_at(now: datetime) -> datetime:
    """The next UTC midnight, when every quota starts afresh."""
    return datetime.combine(now.date() + timedelta(days=1), time(), tzinfo=UTC)


def _lock_user(user_id: int) -> None:
    """Hold the user's row to the end of the transaction; ``NotFound`` if there is none.

    Two writers of one user's quota or messages then go one after the other
    (PostgreSQL; SQLite has one writer anyway). FOR NO KEY UPDATE lets other
    writers' foreign-key checks (FOR KEY SHARE on this row) go on: a plain
    FOR UPDATE deadlocked with the dispatcher's trigger updates.
    """
    locked = db.session.scalar(
        select(User.id).where(User.id == user_id).with_for_update(key_share=True))
    if locked is None:
        raise NotFound("User not found")


def _own(user_id: int) -> UserQuota | None:
    return db.session.get(UserQuota, user_id)


def _figures(user_id: int, own: UserQuota | None, now: datetime) -> tuple[int, int]:
    """The user's quota and what today's messages have used of it."""
    quota = current_app.config["DAILY_RECIPIENT_QUOTA"] if own is None else own.daily_recipients
    used = db.session.scalar(select(MessageDailyTotal.recipients).where(
        MessageDailyTotal.user_id == user_id, MessageDailyTotal.day == now.date())) or 0
    return quota, used


def reserve(user_id: int, recipients: int) -> None:
    """Refuse with ``QuotaExceeded`` unless ``recipients`` more fit in today's quota.

    Called in the transaction that stores the message, so two messages of one
    user are counted one after the other and cannot both squeeze in.
    """
    _lock_user(user_id)
    now = datetime.now(UTC)
    quota, used = _figures(user_id, _own(user_id), now)
    if used + recipients <= quota:
        return
    renews = _renews_at(now)
    raise QuotaExceeded(
        f"Daily recipient quota of {quota} reached: {used} used today, "
        f"{recipients} more requested",
        details={"dailyRecipientQuota": quota, "usedToday": used, "requested": recipients,
                 "renewsAt": isoformat(renews)},
        retry_after=max(1, int((renews - now).total_seconds())),
    )


def describe(user_id: int) -> dict[str, Any]:
    """A user's quota, today's use and when it renews (``GET /api/users/<id>/quota``)."""
    if db.session.get(User, user_id) is None:
        raise NotFound("User not found")
    own, now = _own(user_id), datetime.now(UTC)
    quota, used = _figures(user_id, own, now)
    return {
        "userId": str(user_id),
        "dailyRecipientQuota": quota,
        "isDefault": own is None,
        "usedToday": used,
        "remainingToday": max(0, quota - used),
        "renewsAt": isoformat(_renews_at(now)),
    }


def set_quota(user_id: int, quota: int | None) -> dict[str, Any]:
    """Give one user their own daily quota, or the default again with None."""
    _lock_user(user_id)
    own = _own(user_id)
    if quota is None and own is not None:
        db.session.delete(own)
    elif quota is not None and own is None:
        db.session.add(UserQuota(user_id=user_id, daily_recipients=quota))
    elif quota is not None:
        own.daily_recipients = quota
    db.session.commit()
    return describe(user_id)
