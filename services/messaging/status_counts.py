"""How many of a message's recipients are in each status: ``statusCounts``.

Read from the recipients when a message's figures go out (at most a few times a
second per sending message, through its ``(message_id, id)`` index) rather than
kept in counters that every claim, outcome and receipt would have to move.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import func, select

from extensions import db
from models import Recipient


def status_counts(message_ids: Iterable[int]) -> dict[int, dict[str, int]]:
    """Each message's ``{status: recipients}``, only the statuses present."""
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    ids = list(message_ids)
    if ids:
        for message_id, status, count in db.session.execute(
                select(Recipient.message_id, Recipient.status, func.count())
                .where(Recipient.message_id.in_(ids))
                .group_by(Recipient.message_id, Recipient.status)).all():
            counts[message_id][status] = count
    return counts
