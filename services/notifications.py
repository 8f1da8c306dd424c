"""Notifications: stored first, then announced to the user's sockets.

Personal notifications are rows per user. A broadcast is a single row with no
user, visible to every user who existed when it was sent, with per-user read
markers, so a broadcast to any number of users is one insert and one emit.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Integer, TextClause, and_, bindparam, func, insert, select, text, update

from extensions import db
from models import Notification, NotificationRead, User
from models.base import UTCDateTime
from schemas.common import isoformat
from services import analytics_marks
from services.auth import user_created_at
from services.errors import NotFound
from services.realtime import emitter, gaps, rooms
from services.realtime.presence import count_user_connections


def to_payload(
    notification: Notification, *, read: bool, unread_count: int | None
) -> dict[str, Any]:
    """The ``notification`` event shape; ``data`` only when there is some."""
    payload: dict[str, Any] = {
        "id": str(notification.id),
        "type": notification.type,
        "title": notification.title,
        "message": notification.message,
        "timestamp": isoformat(notification.created_at),
        "read": read,
        "unreadCount": unread_count,
    }
    if notification.data is not None:
        payload["data"] = notification.data
    return payload


def _user_created_at(user_id: int) -> datetime:
    created = user_created_at(user_id)
    if created is None:
        raise NotFound("User not found")
    return created


def _visible_broadcasts(user_created_at: datetime):
    return and_(Notification.user_id.is_(None), Notification.created_at >= user_created_at)


# Statements on the notify path are built once: building and hashing a statement
# costs more than running it on an index. The unread count is one text, so that
# PostgreSQL's one-statement notify reads exactly what ``unread_count`` does.
_UNREAD_COUNT_SQL = (
    "(SELECT count(*) FROM notifications WHERE user_id = :user_id AND read_at IS NULL)"
    " + (SELECT count(*) FROM notifications WHERE user_id IS NULL AND created_at >= :since)"
    " - (SELECT count(*) FROM notification_reads WHERE user_id = :user_id)")
_BIND_TYPES = {"user_id": Integer(), "since": UTCDateTime(), "created_at": UTCDateTime(),
               "data": Notification.__table__.c.data.type}


def _typed_text(sql: str) -> TextClause:
    return text(sql).bindparams(*(bindparam(name, type_=type_) for name, type_ in
                                  _BIND_TYPES.items() if f":{name}" in sql))


_UNREAD_COUNT = _typed_text(f"SELECT {_UNREAD_COUNT_SQL}")
# A Core insert on the table: the ORM's bulk path compiles an entity insert anew each time.
_INSERT_NOTIFICATION = insert(Notification.__table__).returning(Notification.__table__.c.id)
# PostgreSQL stores the notification, bumps the user's analytics mark and counts the
# unread in one statement: one round trip to the database instead of four, each of
# which waits for another process to be scheduled on a busy machine. It reads the
# account too, so that it needs nothing cached: an unknown user gets no row. The
# count reads the snapshot the statement started from, without the new row: ``1 +``.
_NOTIFY_IN_ONE_STATEMENT = _typed_text(
    "WITH account AS (SELECT id, created_at FROM users WHERE id = :user_id),"
    " note AS (INSERT INTO notifications (user_id, type, title, message, data, created_at)"
    " SELECT id, :type, :title, :message, :data, :created_at FROM account RETURNING id),"
    " mark AS (INSERT INTO analytics_marks (user_id, version, changed_at)"
    f" SELECT id, 1, :created_at FROM account{analytics_marks.ON_CONFLICT_BUMP_MARK})"
    " SELECT note.id, 1 + "
    + _UNREAD_COUNT_SQL.replace(":since", "(SELECT created_at FROM account)") + " FROM note")


def unread_count(user_id: int, user_created_at: datetime | None = None) -> int:
    """Unread personal notifications plus visible broadcasts without a read marker."""
    since = user_created_at or _user_created_at(user_id)
    return db.session.scalar(_UNREAD_COUNT, {"user_id": user_id, "since": since}) or 0


def unread_counts(user_ids: list[int]) -> dict[int, int]:
    """``unread_count`` of many users in one statement; users that do not exist are left out."""
    personal = (select(func.count()).select_from(Notification)
                .where(Notification.user_id == User.id, Notification.read_at.is_(None))
                .correlate(User).scalar_subquery())
    broadcasts = (select(func.count()).select_from(Notification)
                  .where(_visible_broadcasts(User.created_at))
                  .correlate(User).scalar_subquery())
    read = (select(func.count()).select_from(NotificationRead)
            .where(NotificationRead.user_id == User.id)
            .correlate(User).scalar_subquery())
    return {user_id: count or 0 for user_id, count in db.session.execute(
        select(User.id, personal + broadcasts - read).where(User.id.in_(user_ids))).all()}


def notify_user(
    user_id: int, *, title: str, message: str, type: str = "system", data: Any = None
) -> tuple[dict[str, Any], int]:
    """Store a notification for one user, then emit it; returns it and the sockets reached."""
    notification = Notification(user_id=user_id, type=type, title=title, message=message,
                                data=data, created_at=datetime.now(UTC))
    values = {"user_id": user_id, "type": type, "title": title, "message": message,
              "data": data, "created_at": notification.created_at}
    if db.engine.dialect.name == "postgresql":
        notification.id, unread = _notify_on_postgresql(values)
    else:
        since = _user_created_at(user_id)
        notification.id = db.session.connection().scalar(_INSERT_NOTIFICATION, values)
        analytics_marks.mark_changed({user_id})
        # Counted inside the transaction, so it includes this one and needs no second one.
        unread = unread_count(user_id, since)
        db.session.commit()
    payload = to_payload(notification, read=False, unread_count=unread)
    emitter.emit_to_user(user_id, event="notification", payload=payload)
    return payload, count_user_connections(user_id)


def _notify_on_postgresql(values: dict[str, Any]) -> tuple[int, int]:
    """The stored notification's id and the user's unread count, after one round trip.

    The statement is atomic on its own, so outside a transaction it needs no
    BEGIN and no COMMIT, each a round trip of its own. A caller's transaction
    in progress (an idempotency key's claim, which must commit with the
    notification) takes the statement in and commits.
    """
    session = db.session()
    if session.in_transaction():
        row = session.connection().execute(_NOTIFY_IN_ONE_STATEMENT, values).one_or_none()
        if row is not None:
            session.commit()
    else:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            row = connection.execute(_NOTIFY_IN_ONE_STATEMENT, values).one_or_none()
    if row is None:
        raise NotFound("User not found")
    return row.tuple()


def catch_up(since: datetime, held: set[str]) -> int:
    """The personal notifications made since ``since`` to this process's sockets in their
    users' rooms among ``held``, again, with the users' unread counts now; how many
    (``services.realtime.gaps``). Broadcasts are not: their ``unreadCount`` is null and
    clients count each one they are given."""
    users = sorted({user_id for room in held if (user_id := rooms.user_of_room(room))})
    sent = 0
    for chunk in gaps.chunks(users):
        made = db.session.scalars(select(Notification).where(
            Notification.user_id.in_(chunk), Notification.created_at > since)
            .order_by(Notification.id)).all()
        unread = unread_counts(sorted({notification.user_id for notification in made}))
        for notification in made:
            emitter.emit_to_local_room(
                rooms.user_room(notification.user_id), event="notification",
                payload=to_payload(notification, read=notification.read_at is not None,
                                   unread_count=unread.get(notification.user_id, 0)))
        sent += len(made)
    return sent


def broadcast(title: str, *, message: str, type: str = "system") -> tuple[dict[str, Any], int]:
    """One stored row for everyone, one emit to every authenticated socket.

    The event carries ``unreadCount: null``: it is one packet for all sockets,
    and each user's count differs, so clients add one or refetch.
    """
    notification = Notification(user_id=None, type=type, title=title, message=message)
    db.session.add(notification)
    analytics_marks.mark_everyone_changed()
    db.session.commit()
    audience = db.session.scalar(
        select(func.count()).select_from(User).where(
            User.active.is_(True), User.created_at <= notification.created_at
        )
    ) or 0
    payload = to_payload(notification, read=False, unread_count=None)
    emitter.emit_to_authenticated("notification", payload)
    return payload, audience


def list_for_user(
    user_id: int, *, unread_only: bool = False, limit: int = 20, before: int | None = None
) -> dict[str, Any]:
    """The user's notifications and broadcasts, newest first, with read state."""
    since = _user_created_at(user_id)
    personal = select(Notification).where(Notification.user_id == user_id)
    if unread_only:
        personal = personal.where(Notification.read_at.is_(None))
    shared = (
        select(Notification, NotificationRead.read_at)
        .outerjoin(
            NotificationRead,
            and_(NotificationRead.notification_id == Notification.id,
                 NotificationRead.user_id == user_id),
        )
        .where(_visible_broadcasts(since))
    )
    if unread_only:
        shared = shared.where(NotificationRead.notification_id.is_(None))
    if before is not None:
        personal = personal.where(Notification.id < before)
        shared = shared.where(Notification.id < before)
    personal_rows = db.session.scalars(personal.order_by(Notification.id.desc()).limit(limit))
    shared_rows = db.session.execute(shared.order_by(Notification.id.desc()).limit(limit))
    merged = [(n, n.read_at is not None) for n in personal_rows]
    merged += [(n, read_at is not None) for n, read_at in shared_rows]
    merged.sort(key=lambda item: item[0].id, reverse=True)
    page = merged[:limit]
    return {
        "notifications": [to_payload(n, read=read, unread_count=None) for n, read in page],
        "unreadCount": unread_count(user_id),
        "nextCursor": str(page[-1][0].id) if len(page) == limit else None,
    }


def _visible_notification(user_id: int, notification_id: int) -> Notification:
    notification = db.session.get(Notification, notification_id)
    if notification is None:
        raise NotFound("Notification not found")
    if notification.user_id == user_id:
        return notification
    if notification.user_id is None and notification.created_at >= _user_created_at(user_id):
        return notification
    raise NotFound("Notification not found")


def mark_read(user_id: int, *, notification_id: int, origin_sid: str | None = None) -> int:
    """Mark one notification read (idempotent); the user's other sockets are told."""
    notification = _visible_notification(user_id, notification_id)
    now = datetime.now(UTC)
    if notification.user_id is None:
        changed = db.session.get(NotificationRead, (notification.id, user_id)) is None
        if changed:
            db.session.add(NotificationRead(notification_id=notification.id, user_id=user_id,
                                            read_at=now))
    else:
        changed = notification.read_at is None
        if changed:
            notification.read_at = now
    if changed:
        analytics_marks.mark_changed({user_id})
    db.session.commit()
    count = unread_count(user_id)
    if changed:
        emitter.emit_to_user(user_id, event="notification_read",
                             payload={"id": str(notification.id), "unreadCount": count},
                             skip_sid=origin_sid)
    return count


def mark_all_read(user_id: int, origin_sid: str | None = None) -> int:
    """Mark everything read; returns how many notifications changed."""
    now = datetime.now(UTC)
    personal = db.session.execute(
        update(Notification)
        .where(Notification.user_id == user_id, Notification.read_at.is_(None))
        .values(read_at=now)
    ).rowcount or 0
    unread_broadcast_ids = list(db.session.scalars(
        select(Notification.id)
        .outerjoin(
            NotificationRead,
            and_(NotificationRead.notification_id == Notification.id,
                 NotificationRead.user_id == user_id),
        )
        .where(_visible_broadcasts(_user_created_at(user_id)),
               NotificationRead.notification_id.is_(None))
    ))
    if unread_broadcast_ids:
        db.session.execute(insert(NotificationRead), [
            {"notification_id": nid, "user_id": user_id, "read_at": now}
            for nid in unread_broadcast_ids
        ])
    shared = len(unread_broadcast_ids)
    if personal or shared:
        analytics_marks.mark_changed({user_id})
    db.session.commit()
    changed = personal + shared
    if changed:
        emitter.emit_to_user(user_id, event="notification_read",
                             payload={"all": True, "unreadCount": 0}, skip_sid=origin_sid)
    return changed
