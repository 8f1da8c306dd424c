"""Live analytics: the figures, defined once, and their batched delivery to subscribers.

Figures (README "Analytics figures" documents each):

- ``dashboard_stats``: messages and recipients today and in total, sent,
  delivered, failed, delivery rate, cost today / this month / in total,
  messages in flight, unread notifications;
- ``message_stats``: messages and recipients by status, and sent / delivered /
  failed per hour over the last 24 hours;
- ``usage_stats``: segments and cost per day over the last 30 days;
- global (admins): the same over every user, plus online users, live
  connections per node and events in and out per second.

They are computed from counters kept on each message row (recipient,
success, failed and delivered counts, cost), through the ``(user_id, id)``
and ``created_at`` indexes; per-recipient rows are read only for messages
still in flight and for the last day's hourly series.

Delivery is batched: a change bumps the user's mark in ``analytics_marks`` in
its own transaction; once per ``ANALYTICS_INTERVAL`` each node compares the
marks of the users it has subscribers for with what it last sent, recomputes
only those, and emits one ``analytics_update`` per type to its own sockets
(latest state wins). Users with no subscriber cost nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, bindparam, case, func, select
from sqlalchemy.dialects import postgresql, sqlite

from extensions import db
from models import AnalyticsMark, Message, Recipient
from models.analytics import ALL_USERS, ANY_CHANGE
from models.message import (
    MESSAGE_FAILED,
    MESSAGE_SENDING,
    MESSAGE_SENT,
    RECIPIENT_DELIVERED,
    RECIPIENT_FAILED,
    RECIPIENT_PENDING,
    RECIPIENT_SENDING,
    RECIPIENT_SENT,
)
from services import connections, notifications, realtime, rooms
from services.auth import Identity
from services.connections import LiveConnection, registry

DASHBOARD, MESSAGES, USAGE = "dashboard_stats", "message_stats", "usage_stats"
FIGURE_TYPES = (DASHBOARD, MESSAGES, USAGE)
HOURS, DAYS = 24, 30


_MARK_STATEMENTS: dict[str, Any] = {}


def _mark_statement(dialect: str) -> Any:
    """The upsert that bumps one mark, built once per dialect (it is on every write path)."""
    statement = _MARK_STATEMENTS.get(dialect)
    if statement is None:
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = insert(AnalyticsMark).values(
            user_id=bindparam("user_id"), version=1, changed_at=bindparam("changed_at"))
        statement = statement.on_conflict_do_update(
            index_elements=[AnalyticsMark.user_id],
            set_={"version": AnalyticsMark.version + 1,
                  "changed_at": statement.excluded.changed_at},
        )
        _MARK_STATEMENTS[dialect] = statement
    return statement


def mark_changed(user_ids: set[int] | list[int]) -> None:
    """Note, inside the caller's transaction, that these users' figures changed.

    Keys are bumped in sorted order, so concurrent writers on PostgreSQL
    never wait on each other's rows in opposite orders.
    """
    connection = db.session.connection()
    now = datetime.now(UTC)
    connection.execute(_mark_statement(connection.dialect.name), [
        {"user_id": key, "changed_at": now} for key in sorted({*user_ids, ANY_CHANGE})])


def mark_everyone_changed() -> None:
    mark_changed([ALL_USERS])


def _money(value: Any) -> float:
    return round(float(value or Decimal("0")), 4)


def _scope(user_id: int | None):
    return Message.user_id == user_id if user_id is not None else True


def dashboard_stats(user_id: int | None) -> dict[str, Any]:
    """The headline figures of one user, or of everyone with ``None``."""
    now = datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month = today.replace(day=1)

    def since(start: datetime, column):
        return func.coalesce(func.sum(case((Message.created_at >= start, column), else_=0)), 0)

    row = db.session.execute(
        select(
            func.count(Message.id),
            since(today, 1),
            func.coalesce(func.sum(Message.recipient_count), 0),
            since(today, Message.recipient_count),
            func.coalesce(func.sum(Message.success_count), 0),
            func.coalesce(func.sum(Message.delivered_count), 0),
            func.coalesce(func.sum(Message.failed_count), 0),
            func.coalesce(func.sum(Message.cost), 0),
            since(today, Message.cost),
            since(month, Message.cost),
            func.coalesce(func.sum(case((Message.status == MESSAGE_SENDING, 1), else_=0)), 0),
        ).where(_scope(user_id))
    ).one()
    (total, today_count, recipients, recipients_today, sent, delivered, failed,
     cost, cost_today, cost_month, in_flight) = row
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
    }
    if user_id is not None:
        figures["unreadNotifications"] = notifications.unread_count(user_id)
    return figures


def _hour_bucket(column):
    if db.engine.dialect.name == "postgresql":
        return func.to_char(func.date_trunc("hour", func.timezone("UTC", column)),
                            "YYYY-MM-DD\"T\"HH24")
    return func.strftime("%Y-%m-%dT%H", column)


def _day_bucket(column):
    if db.engine.dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", column)


def message_stats(user_id: int | None) -> dict[str, Any]:
    """Messages and recipients by status, and the last 24 hours hour by hour."""
    by_status = dict(db.session.execute(
        select(Message.status, func.count()).where(_scope(user_id)).group_by(Message.status)
    ).all())
    finished = db.session.execute(
        select(func.coalesce(func.sum(Message.success_count - Message.delivered_count), 0),
               func.coalesce(func.sum(Message.delivered_count), 0),
               func.coalesce(func.sum(Message.failed_count), 0))
        .where(_scope(user_id), Message.status != MESSAGE_SENDING)
    ).one()
    live = dict(db.session.execute(
        select(Recipient.status, func.count())
        .join(Message, Message.id == Recipient.message_id)
        .where(_scope(user_id), Message.status == MESSAGE_SENDING)
        .group_by(Recipient.status)
    ).all())
    recipients = {status: int(live.get(status, 0)) for status in (
        RECIPIENT_PENDING, RECIPIENT_SENDING, RECIPIENT_SENT, RECIPIENT_DELIVERED,
        RECIPIENT_FAILED)}
    recipients[RECIPIENT_SENT] += int(finished[0])
    recipients[RECIPIENT_DELIVERED] += int(finished[1])
    recipients[RECIPIENT_FAILED] += int(finished[2])
    return {
        "messagesByStatus": {status: int(by_status.get(status, 0))
                             for status in (MESSAGE_SENDING, MESSAGE_SENT, MESSAGE_FAILED)},
        "recipientsByStatus": recipients,
        "hourly": _hourly_series(user_id),
    }


def _hourly_series(user_id: int | None) -> list[dict[str, Any]]:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    first_hour = now - timedelta(hours=HOURS - 1)
    hours = [(first_hour + timedelta(hours=i)).strftime("%Y-%m-%dT%H") for i in range(HOURS)]
    series = {hour: {"sent": 0, "delivered": 0, "failed": 0} for hour in hours}
    recent = and_(_scope(user_id), Message.created_at >= first_hour - timedelta(days=1))
    sent_bucket = _hour_bucket(Recipient.sent_at)
    for hour, status, count in db.session.execute(
        select(sent_bucket, Recipient.status, func.count())
        .join(Message, Message.id == Recipient.message_id)
        .where(recent, Recipient.sent_at >= first_hour)
        .group_by(sent_bucket, Recipient.status)
    ).all():
        if hour in series:
            series[hour]["failed" if status == RECIPIENT_FAILED else "sent"] += int(count)
    delivered_bucket = _hour_bucket(Recipient.delivered_at)
    for hour, count in db.session.execute(
        select(delivered_bucket, func.count())
        .join(Message, Message.id == Recipient.message_id)
        .where(recent, Recipient.delivered_at >= first_hour)
        .group_by(delivered_bucket)
    ).all():
        if hour in series:
            series[hour]["delivered"] += int(count)
    return [{"hour": f"{hour}:00:00.000Z", **counts} for hour, counts in series.items()]


def usage_stats(user_id: int | None) -> dict[str, Any]:
    """Segments and cost per day over the last 30 days (days in UTC)."""
    today = datetime.now(UTC).date()
    first_day = today - timedelta(days=DAYS - 1)
    start = datetime.combine(first_day, datetime.min.time(), UTC)
    bucket = _day_bucket(Message.created_at)
    rows = db.session.execute(
        select(bucket, func.sum(Message.segments * Message.success_count),
               func.sum(Message.cost))
        .where(_scope(user_id), Message.created_at >= start)
        .group_by(bucket)
    ).all()
    by_day = {day: (int(segments or 0), _money(cost)) for day, segments, cost in rows}
    daily = []
    for offset in range(DAYS):
        day = (first_day + timedelta(days=offset)).isoformat()
        segments, cost = by_day.get(day, (0, 0.0))
        daily.append({"day": day, "segments": segments, "cost": cost})
    return {"daily": daily}


def global_stats() -> dict[str, Any]:
    """Everyone's dashboard figures, plus who is online and how busy each node is."""
    figures = dashboard_stats(None)
    live = connections.connection_stats()
    figures.update({
        "onlineUsers": live["onlineUsers"],
        "connectionsByNode": [{"id": node["id"], "connections": node["connections"]}
                              for node in live["nodes"]],
        "eventsInPerSecond": round(sum(n["eventsInPerSecond"] for n in live["nodes"]), 2),
        "eventsOutPerSecond": round(sum(n["eventsOutPerSecond"] for n in live["nodes"]), 2),
    })
    return figures


_COMPUTE = {DASHBOARD: dashboard_stats, MESSAGES: message_stats, USAGE: usage_stats}


def figures_for(user_id: int | None, kind: str) -> dict[str, Any]:
    return _COMPUTE[kind](user_id)


def subscribe(conn: LiveConnection) -> None:
    """Join the analytics rooms and send the current figures at once."""
    identity: Identity = conn.identity
    publisher.note_snapshot(identity.user_id)
    realtime.enter_room(conn.sid, rooms.analytics_user_room(identity.user_id))
    for kind in FIGURE_TYPES:
        realtime.emit_to_sid(conn.sid, "analytics_update",
                             {"type": kind, "data": figures_for(identity.user_id, kind)})
    if identity.is_admin:
        realtime.enter_room(conn.sid, rooms.ANALYTICS_GLOBAL_ROOM)
        realtime.emit_to_sid(conn.sid, "global_analytics_update",
                             {"type": DASHBOARD, "data": global_stats()})


def unsubscribe(conn: LiveConnection) -> None:
    realtime.leave_room(conn.sid, rooms.analytics_user_room(conn.identity.user_id))
    realtime.leave_room(conn.sid, rooms.ANALYTICS_GLOBAL_ROOM)


class AnalyticsPublisher:
    """This node's scheduler: what it last sent, so only changed figures go out."""

    def __init__(self) -> None:
        self.sent_versions: dict[int, int] = {}
        self.last_global: dict[str, Any] | None = None

    def note_snapshot(self, user_id: int) -> None:
        """A subscriber got fresh figures: later rounds compare against the marks read now.

        Read before the snapshot is computed, so a change racing it is sent again.
        """
        if user_id in self.sent_versions:
            return
        marks = dict(db.session.execute(
            select(AnalyticsMark.user_id, AnalyticsMark.version)
            .where(AnalyticsMark.user_id.in_({user_id, ALL_USERS}))
        ).all())
        self.sent_versions[user_id] = marks.get(user_id, 0) + marks.get(ALL_USERS, 0)

    def publish(self) -> None:
        """One round: recompute and emit what changed for this node's subscribers."""
        subscribed, admins_subscribed = self._local_subscribers()
        for user_id in list(self.sent_versions):
            if user_id not in subscribed:
                del self.sent_versions[user_id]
        if subscribed:
            self._publish_users(subscribed)
        if admins_subscribed:
            self._publish_global()
        else:
            self.last_global = None
        db.session.close()

    @staticmethod
    def _local_subscribers() -> tuple[set[int], bool]:
        users, admins = set(), False
        for conn in list(registry.by_sid.values()):
            if rooms.analytics_user_room(conn.identity.user_id) in conn.rooms:
                users.add(conn.identity.user_id)
            if rooms.ANALYTICS_GLOBAL_ROOM in conn.rooms:
                admins = True
        return users, admins

    def _publish_users(self, subscribed: set[int]) -> None:
        marks = dict(db.session.execute(
            select(AnalyticsMark.user_id, AnalyticsMark.version)
            .where(AnalyticsMark.user_id.in_(subscribed | {ALL_USERS}))
        ).all())
        everyone = marks.get(ALL_USERS, 0)
        for user_id in subscribed:
            version = marks.get(user_id, 0) + everyone
            if self.sent_versions.get(user_id) == version:
                continue
            self.sent_versions[user_id] = version
            room = rooms.analytics_user_room(user_id)
            for kind in FIGURE_TYPES:
                realtime.emit_to_local_room(room, "analytics_update",
                                            {"type": kind, "data": figures_for(user_id, kind)})

    def _publish_global(self) -> None:
        figures = global_stats()
        if figures == self.last_global:
            return
        self.last_global = figures
        realtime.emit_to_local_room(rooms.ANALYTICS_GLOBAL_ROOM, "global_analytics_update",
                                    {"type": DASHBOARD, "data": figures})


publisher = AnalyticsPublisher()
