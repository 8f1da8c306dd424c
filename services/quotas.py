"""Daily recipient quotas: how many recipients one user's messages may have per UTC day.

Every SMS costs the operator money, so an account in the wrong hands (a sign-up
by an attacker, a stolen token) must not be able to send to unlimited numbers
(SMS pumping). Each user may address ``DAILY_RECIPIENT_QUOTA`` recipients per
UTC day, duplicates removed, sent or not; an admin may give one user another
quota (``users.daily_recipient_quota``; None is the default). The day's use is
read from ``message_daily_totals``, which the triggers of migration 0003 keep
exact in every writing transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select

from extensions import db
from models import MessageDailyTotal, User
from schemas.common import isoformat
from services.errors import NotFound, QuotaExceeded


def _renews_at(now: datetime) -> datetime:
    """The next UTC midnight, when every quota starts afresh."""
    return datetime.combine(now.date() + timedelta(days=1), time(), tzinfo=UTC)


def _effective(user: User) -> int:
    quota = user.daily_recipient_quota
    return current_app.config["DAILY_RECIPIENT_QUOTA"] if quota is None else quota


def _used(user_id: int, now: datetime) -> int:
    return db.session.scalar(select(MessageDailyTotal.recipients).where(
        MessageDailyTotal.user_id == user_id, MessageDailyTotal.day == now.date())) or 0


def _user(user_id: int, *, for_update: bool = False) -> User:
    query = select(User).where(User.id == user_id)
    user = db.session.scalar(query.with_for_update() if for_update else query)
    if user is None:
        raise NotFound("User not found")
    return user


def reserve(user_id: int, recipients: int) -> None:
    """Refuse with ``QuotaExceeded`` unless ``recipients`` more fit in today's quota.

    Called in the transaction that stores the message. The user's row is locked
    first, so two messages of one user are counted one after the other
    (PostgreSQL; SQLite has one writer anyway) and cannot both squeeze in.
    """
    user = _user(user_id, for_update=True)
    now = datetime.now(UTC)
    quota, used = _effective(user), _used(user_id, now)
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
    user = _user(user_id)
    now = datetime.now(UTC)
    quota, used = _effective(user), _used(user_id, now)
    return {
        "userId": str(user_id),
        "dailyRecipientQuota": quota,
        "isDefault": user.daily_recipient_quota is None,
        "usedToday": used,
        "remainingToday": max(0, quota - used),
        "renewsAt": isoformat(_renews_at(now)),
    }


def set_quota(user_id: int, quota: int | None) -> dict[str, Any]:
    """Give one user their own daily quota, or the default again with None."""
    user = _user(user_id)
    user.daily_recipient_quota = quota
    db.session.commit()
    return describe(user_id)
