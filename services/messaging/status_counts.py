"""How many of a message's recipients are in each status: ``statusCounts``.

Read from the recipients when a message's figures go out (at most a few times a
second per sending message, through its ``(message_id, id)`` index) rather than
kept in counters that every claim, outcome and receipt would have to move.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from functools import lru_cache

from sqlalchemy import Select, func, select

from extensions import db
from models import Recipient
from services.messaging.json_rows import among


def status_counts(message_ids: Iterable[int]) -> dict[int, dict[str, int]]:
    """Each message's ``{status: recipients}``, only the statuses present."""
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    ids = list(message_ids)
    if ids:
        for message_id, status, count in db.session.execute(
                _counts_statement(db.engine.dialect.name), {"ids": ids}).all():
            counts[message_id][status] = count
    return counts


@lru_cache(maxsize=2)
def _counts_statement(dialect: str) -> Select:
    """Built once per database: every sending message's figures ask it a few times a second."""
    recipients = Recipient.__table__.c
    return (select(recipients.message_id, recipients.status, func.count())
            .where(among(dialect, recipients.message_id, "ids"))
            .group_by(recipients.message_id, recipients.status))
