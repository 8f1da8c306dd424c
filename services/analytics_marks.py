"""Analytics marks: each user's counter of changes to their figures, bumped by every writer.

Every service that changes what a user's figures count (messages created,
sent, delivered; notifications stored or read) bumps the user's row in
``analytics_marks`` inside its own transaction, so the mark commits with the
change; a change that concerns everyone bumps ``ALL_USERS``. Each node's
analytics publisher (``services.analytics.publisher``) compares the marks
with the versions it last sent and recomputes only the users that changed.

The writers are messaging and notifications, and the figures read
notifications: the marks sit below all of them, apart from the figures.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Integer, bindparam, select, text

from extensions import db
from models import AnalyticsMark
from models.analytics import ALL_USERS
from models.base import UTCDateTime

# Users whose marks are read in one statement.
MARKS_PER_READ = 500


# The upsert on every write path, as one fixed text for SQLite and PostgreSQL: the
# dialects' ``on_conflict_do_update`` constructs are compiled anew for every call.
# Other statements that bump a mark end their insert with the same clause.
ON_CONFLICT_BUMP_MARK = (
    " ON CONFLICT (user_id) DO UPDATE"
    " SET version = analytics_marks.version + 1, changed_at = excluded.changed_at")
_BUMP_MARK = text(
    "INSERT INTO analytics_marks (user_id, version, changed_at) VALUES (:user_id, 1, :changed_at)"
    + ON_CONFLICT_BUMP_MARK).bindparams(
    bindparam("user_id", type_=Integer()), bindparam("changed_at", type_=UTCDateTime()))


def mark_changed(user_ids: set[int] | list[int]) -> None:
    """Note, inside the caller's transaction, that these users' figures changed.

    Keys are bumped in sorted order, so concurrent writers on PostgreSQL
    never wait on each other's rows in opposite orders.
    """
    if not user_ids:
        return
    now = datetime.now(UTC)
    db.session.connection().execute(_BUMP_MARK, [
        {"user_id": key, "changed_at": now} for key in sorted(set(user_ids))])


def mark_everyone_changed() -> None:
    """A change every user's figures count (a broadcast notification)."""
    mark_changed([ALL_USERS])


def versions_of(user_ids: list[int]) -> dict[int, int]:
    """Each user's version: their own mark plus everyone's; it grows with every change."""
    ordered = sorted(user_ids)
    marks: dict[int, int] = {}
    for start in range(0, len(ordered), MARKS_PER_READ):
        marks.update(db.session.execute(
            select(AnalyticsMark.user_id, AnalyticsMark.version)
            .where(AnalyticsMark.user_id.in_([ALL_USERS, *ordered[start:start + MARKS_PER_READ]]))
        ).all())
    everyone = marks.get(ALL_USERS, 0)
    return {user_id: marks.get(user_id, 0) + everyone for user_id in ordered}
