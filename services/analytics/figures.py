"""The analytics figures, defined once, computed for many users in a few statements.

Figures (README "Analytics figures" documents each):

- ``dashboard_stats``: messages and recipients today and in total, sent,
  delivered, failed, delivery rate, cost today / this month / in total,
  messages in flight, inbound messages today and in total, unread
  notifications;
- ``message_stats``: messages and recipients by status, and sent / delivered /
  failed per hour over the last 24 hours;
- ``usage_stats``: segments and cost per day over the last 30 days;
- global (admins): the same over every user, plus online users, live
  connections per node and events in and out per second.

Totals, status counts and the daily usage are read from
``message_daily_totals``, one row per owner and UTC day that triggers on
``messages`` keep exact, so a round's cost does not grow with each user's
history; per-recipient rows are read only for messages still in flight and
for the last day's hourly series.

How they reach subscribers: ``services.analytics.publisher``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import case, func, or_, select, true

from extensions import db
from models import InboundMessage, Message, Recipient
from models import MessageDailyTotal as Totals
from models.message import UNFINISHED_MESSAGE_STATUSES as UNFINISHED
from models.message import MessageStatus, RecipientStatus
from services import notifications
from services.realtime import presence

DASHBOARD, MESSAGES, USAGE = "dashboard_stats", "message_stats", "usage_stats"
FIGURE_TYPES = (DASHBOARD, MESSAGES, USAGE)
HOURS, DAYS = 24, 30


def _money(value: Any) -> float:
    return round(float(value or Decimal("0")), 4)


# Figures are computed for many users at once: each query groups by owner over
# ``user_id IN (...)`` (the daily totals' key, or the ``(user_id, id)`` index), so
# a round costs a handful of statements however many users changed. ``None``
# instead of a list of users means everyone together (the admins' global view).
Owners = list[int] | None
CHUNK = 500


def _grouping(user_ids: Owners, owner: Any = Message.user_id) -> tuple[list[Any], Any]:
    """The owner column to group by (none for everyone) and the rows it covers."""
    if user_ids is None:
        return [], true()
    return [owner], owner.in_(user_ids)


def _by_owner(user_ids: Owners, rows) -> dict[int | None, list[tuple]]:
    """Rows split by owner (the first column when grouped), the owner column removed."""
    split: dict[int | None, list[tuple]] = {}
    for row in rows:
        if user_ids is None:
            split.setdefault(None, []).append(tuple(row))
        else:
            split.setdefault(row[0], []).append(tuple(row[1:]))
    return split


def _keys(user_ids: Owners) -> list[int | None]:
    return list(user_ids) if user_ids is not None else [None]


class _Clock:
    """One reading of the time for a whole batch, and the labels derived from it."""

    def __init__(self) -> None:
        now = datetime.now(UTC)
        self.today = now.replace(hour=0, minute=0, second=0, microsecond=0)
        self.month = self.today.replace(day=1)
        self.first_hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(
            hours=HOURS - 1)
        self.hours = [(self.first_hour + timedelta(hours=i)).strftime("%Y-%m-%dT%H")
                      for i in range(HOURS)]
        self.first_day = now.date() - timedelta(days=DAYS - 1)
        self.days = [(self.first_day + timedelta(days=i)).isoformat() for i in range(DAYS)]


def _id_floor(since: datetime) -> int | None:
    """The first message id created at ``since`` or later (one step of the ``created_at`` index).

    Ids grow with creation time, so ``id >= floor`` lets a query of recent
    messages walk only the recent end of the ``(user_id, id)`` index instead of
    all of a user's history; the ``created_at`` condition stays beside it, exact.
    An hour's margin covers ids and clocks disagreeing slightly.
    """
    return db.session.scalar(select(func.min(Message.id)).where(
        Message.created_at >= since - timedelta(hours=1)))


def _totals(user_ids: Owners, clock: _Clock) -> dict[int | None, tuple]:
    """The headline figures and the status counts, from the owners' daily totals.

    ``message_daily_totals`` is kept exact by triggers on ``messages``, so this
    reads one row per owner and active day instead of every message ever sent;
    today and this month start at UTC midnight, which is where its days start.
    """
    def since(start: datetime, column):
        return func.coalesce(func.sum(case((Totals.day >= start.date(), column), else_=0)), 0)

    def total(column):
        return func.coalesce(func.sum(column), 0)

    owner, scope = _grouping(user_ids, Totals.user_id)
    statement = select(
        *owner,
        total(Totals.messages),
        since(clock.today, Totals.messages),
        total(Totals.recipients),
        since(clock.today, Totals.recipients),
        total(Totals.success),
        total(Totals.delivered),
        total(Totals.failed),
        total(Totals.cost),
        since(clock.today, Totals.cost),
        since(clock.month, Totals.cost),
        total(Totals.status_sending),
        total(Totals.status_sent),
        total(Totals.status_failed),
        total(Totals.finished_success - Totals.finished_delivered),
        total(Totals.finished_delivered),
        total(Totals.finished_failed),
        total(Totals.status_scheduled),
        total(Totals.status_paused),
        total(Totals.status_canceled),
    ).where(scope).group_by(*owner)
    rows = _by_owner(user_ids, db.session.execute(statement))
    return {key: rows.get(key, [(0,) * 19])[0] for key in _keys(user_ids)}


def _inbound_counts(user_ids: Owners, clock: _Clock) -> dict[int | None, tuple[int, int]]:
    """Inbound messages shown to each owner (everyone's with ``None``): in total, today.

    Walks the ``(user_id, id)`` index; inbound traffic is replies, a small
    fraction of what is sent.
    """
    owner, scope = _grouping(user_ids, InboundMessage.user_id)
    rows = _by_owner(user_ids, db.session.execute(select(
        *owner, func.count(),
        func.coalesce(func.sum(case((InboundMessage.received_at >= clock.today, 1), else_=0)), 0),
    ).where(scope).group_by(*owner)))
    return {key: rows.get(key, [(0, 0)])[0] for key in _keys(user_ids)}


def _dashboards(user_ids: Owners, clock: _Clock,
                totals: dict[int | None, tuple]) -> dict[int | None, dict[str, Any]]:
    """The headline figures of each user, or of everyone with ``None``."""
    unread = notifications.unread_counts(user_ids) if user_ids is not None else {}
    inbound = _inbound_counts(user_ids, clock)
    result = {}
    for key in _keys(user_ids):
        (total, today_count, recipients, recipients_today, sent, delivered, failed,
         cost, cost_today, cost_month, in_flight) = totals[key][:11]
        figures = {
            "messagesToday": int(today_count),
            "messagesTotal": int(total),
            "recipientsToday": int(recipients_today),
            "recipientsTotal": int(recipients),
            "sent": int(sent),
            "delivered": int(delivered),
            "failed": int(failed),
            "deliveryRate": round(int(delivered) / int(sent), 4) if sent else 0.0,
            "costToday": _money(cost_today),
            "costMonth": _money(cost_month),
            "costTotal": _money(cost),
            "inFlight": int(in_flight),
            "scheduled": int(totals[key][16]),
            "paused": int(totals[key][17]),
            "inboundToday": int(inbound[key][1]),
            "inboundTotal": int(inbound[key][0]),
        }
        if key is not None:
            figures["unreadNotifications"] = unread.get(key, 0)
        result[key] = figures
    return result


def _hour_bucket(column):
    if db.engine.dialect.name == "postgresql":
        return func.to_char(func.date_trunc("hour", func.timezone("UTC", column)),
                            "YYYY-MM-DD\"T\"HH24")
    return func.strftime("%Y-%m-%dT%H", column)


def _message_stats(user_ids: Owners, clock: _Clock,
                   totals: dict[int | None, tuple]) -> dict[int | None, dict[str, Any]]:
    """Messages and recipients by status, and the last 24 hours hour by hour.

    Recipients of final messages are counted from the messages' counters;
    recipient rows are read only for the others (scheduled, sending, paused)
    and for the last day's hourly series.
    """
    owner, scope = _grouping(user_ids)
    # In flight: from the status index (few rows), not from each owner's history.
    # (``+ 0`` keeps SQLite's planner off the owner index, which it would otherwise
    # prefer for ``user_id IN (...)`` and then filter every message by status.)
    flying = (Message.user_id + 0).in_(user_ids) if user_ids is not None else true()
    live = _by_owner(user_ids, db.session.execute(
        select(*owner, Recipient.status, func.count())
        .join(Message, Message.id == Recipient.message_id)
        .where(flying, Message.status.in_(UNFINISHED))
        .group_by(*owner, Recipient.status)))
    # The hourly series: recipients sent (or refused) and delivered per hour, read
    # from the last two days' messages in one pass.
    hourly: dict[int | None, list[tuple]] = {}
    floor = _id_floor(clock.first_hour - timedelta(days=1))
    if floor is not None:
        sent_bucket, delivered_bucket = (_hour_bucket(Recipient.sent_at),
                                         _hour_bucket(Recipient.delivered_at))
        hourly = _by_owner(user_ids, db.session.execute(
            select(*owner, sent_bucket, delivered_bucket, Recipient.status, func.count())
            .join(Message, Message.id == Recipient.message_id)
            .where(scope, Message.id >= floor,
                   Message.created_at >= clock.first_hour - timedelta(days=1),
                   or_(Recipient.sent_at >= clock.first_hour,
                       Recipient.delivered_at >= clock.first_hour))
            .group_by(*owner, sent_bucket, delivered_bucket, Recipient.status)))
    result = {}
    for key in _keys(user_ids):
        row = totals[key]
        in_flight = dict(live.get(key, ()))
        recipients = {status: int(in_flight.get(status, 0)) for status in RecipientStatus}
        recipients[RecipientStatus.SENT] += int(row[13])
        recipients[RecipientStatus.DELIVERED] += int(row[14])
        recipients[RecipientStatus.FAILED] += int(row[15])
        series = {hour: [0, 0, 0] for hour in clock.hours}
        for sent_hour, delivered_hour, status, count in hourly.get(key, ()):
            if sent_hour in series:
                series[sent_hour][2 if status == RecipientStatus.FAILED else 0] += int(count)
            if delivered_hour in series:
                series[delivered_hour][1] += int(count)
        result[key] = {
            "messagesByStatus": {MessageStatus.SCHEDULED: int(row[16]),
                                 MessageStatus.SENDING: int(row[10]),
                                 MessageStatus.PAUSED: int(row[17]),
                                 MessageStatus.SENT: int(row[11]),
                                 MessageStatus.FAILED: int(row[12]),
                                 MessageStatus.CANCELED: int(row[18])},
            "recipientsByStatus": recipients,
            "hourly": [{"hour": f"{hour}:00:00.000Z", "sent": sent,
                        "delivered": delivered, "failed": failed}
                       for hour, (sent, delivered, failed) in series.items()],
        }
    return result


def _usage_stats(user_ids: Owners, clock: _Clock) -> dict[int | None, dict[str, Any]]:
    """Segments and cost per day over the last 30 days (days in UTC), from the daily totals."""
    owner, scope = _grouping(user_ids, Totals.user_id)
    rows = _by_owner(user_ids, db.session.execute(
        select(*owner, Totals.day, func.sum(Totals.segments_sent), func.sum(Totals.cost))
        .where(scope, Totals.day >= clock.first_day)
        .group_by(*owner, Totals.day)))
    result = {}
    for key in _keys(user_ids):
        by_day = {day.isoformat(): (int(segments or 0), _money(cost))
                  for day, segments, cost in rows.get(key, ())}
        result[key] = {"daily": [
            {"day": day, "segments": by_day.get(day, (0, 0.0))[0],
             "cost": by_day.get(day, (0, 0.0))[1]} for day in clock.days]}
    return result


def _compute(user_ids: Owners, kinds: tuple[str, ...]) -> dict[int | None, dict[str, Any]]:
    """These figure types for these owners: ``{owner: {type: figures}}``."""
    clock = _Clock()
    result: dict[int | None, dict[str, Any]] = {key: {} for key in _keys(user_ids)}
    totals = _totals(user_ids, clock) if DASHBOARD in kinds or MESSAGES in kinds else {}
    for kind in kinds:
        if kind == DASHBOARD:
            computed = _dashboards(user_ids, clock, totals)
        elif kind == MESSAGES:
            computed = _message_stats(user_ids, clock, totals)
        else:
            computed = _usage_stats(user_ids, clock)
        for key, figures in computed.items():
            result[key][kind] = figures
    return result


def figures_for_many(user_ids: list[int]) -> dict[int, dict[str, dict[str, Any]]]:
    """Every figure type of each of these users: ``{user_id: {type: figures}}``."""
    result: dict[int, dict[str, dict[str, Any]]] = {}
    ordered = sorted(user_ids)
    for start in range(0, len(ordered), CHUNK):
        result.update(_compute(ordered[start:start + CHUNK], FIGURE_TYPES))
    return result


def figures_for(user_id: int | None, kind: str) -> dict[str, Any]:
    """One type of figures of one user, or of everyone with ``None``."""
    return _compute([user_id] if user_id is not None else None, (kind,))[user_id][kind]


def dashboard_stats(user_id: int | None) -> dict[str, Any]:
    return figures_for(user_id, DASHBOARD)


def message_stats(user_id: int | None) -> dict[str, Any]:
    return figures_for(user_id, MESSAGES)


def usage_stats(user_id: int | None) -> dict[str, Any]:
    return figures_for(user_id, USAGE)


def global_stats() -> dict[str, Any]:
    """Everyone's dashboard figures, plus who is online and how busy each node is."""
    figures = dashboard_stats(None)
    live = presence.connection_stats()
    figures.update({
        "onlineUsers": live["onlineUsers"],
        "connectionsByNode": [{"id": node["id"], "connections": node["connections"]}
                              for node in live["nodes"]],
        "eventsInPerSecond": round(sum(n["eventsInPerSecond"] for n in live["nodes"]), 2),
        "eventsOutPerSecond": round(sum(n["eventsOutPerSecond"] for n in live["nodes"]), 2),
    })
    return figures


