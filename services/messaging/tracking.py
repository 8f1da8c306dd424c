"""Following a message live: its trackers' rooms, their snapshots, and resuming after a reconnect.

A tracker joins the message's room first and then gets the current state, so
a change racing the snapshot arrives with a higher version and wins. Two
kinds of tracker:

- per recipient (``track_message`` with the id, the seed's form): a
  ``recipient_update`` per change, and a snapshot of at most
  ``TRACK_SNAPSHOT_LIMIT`` of them (REST pages the rest);
- batched (``{messageId, batch: true}``): ``recipient_updates`` batches
  (``services.messaging.recipient_batches``), and a snapshot of every
  recipient in batches of ``SNAPSHOT_BATCH_SIZE``, shared with the message's
  other batched trackers on this process
  (``services.messaging.shared_snapshots``). With ``sinceVersion``,
  the highest batch version it saw before losing its socket, it gets only
  the recipients changed since, plus ``RECIPIENT_RESUME_OVERLAP`` seconds of
  changes again (a change stamped before a batch may commit after it, and
  node clocks differ); the per-recipient versions make the repeats harmless.
  A version it cannot resume from (none, older than the message, or ahead
  of this server's clock) gets the full snapshot.

When this process's message queue listener comes back from a gap, in which
emits from anywhere were lost to it, ``catch_up`` sends its sockets again what
changed since the gap began (less ``RECIPIENT_RESUME_OVERLAP``), as a resume
would: a ``message_update`` of each message they track or own that changed,
and the changed recipients to its trackers.

Snapshots are charged to the user's budget (``services.realtime.snapshots``):
a row per event for per-recipient ones, a row per ``ROWS_PER_BATCHED_CHARGE``
recipients for batched ones, which cost about that much less to send.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from flask import current_app
from sqlalchemy import func, select

from extensions import db
from models import Message, Recipient
from services.auth import Identity
from services.messaging.messages import get_visible
from services.messaging.payloads import (
    message_update_payload,
    recipient_update_payload,
    recipient_updates_payload,
)
from services.messaging.recipient_batches import clock_version
from services.messaging.shared_snapshots import full_snapshot, in_batches, recipient_rows
from services.messaging.status_counts import status_counts
from services.realtime import emitter, gaps, rooms, snapshots

TRACK_SNAPSHOT_LIMIT = 1_000
ROWS_PER_BATCHED_CHARGE = 10


def track(identity: Identity, *, sid: str, message_id: int, batch: bool = False,
          since_version: int | None = None) -> dict[str, Any]:
    """Make ``sid`` a tracker of the message and send it the current state; the ack's fields."""
    message = get_visible(identity, message_id)
    if batch:
        return _track_batched(identity, sid, message, since_version)
    return _track_each(identity, sid, message)


def untrack(sid: str, message_id: int) -> None:
    emitter.leave_room(sid, rooms.message_room(message_id))
    emitter.leave_room(sid, rooms.recipient_batch_room(message_id))


def _track_each(identity: Identity, sid: str, message: Message) -> dict[str, Any]:
    snapshots.charge_snapshot(identity.user_id,
                              1 + min(message.recipient_count, TRACK_SNAPSHOT_LIMIT))
    emitter.enter_room(sid, rooms.message_room(message.id))
    emitter.emit_to_sid(sid, event="message_update", payload=message_update_payload(
        message, status_counts([message.id])[message.id]))
    recipients = recipient_rows(message.id, since=None, limit=TRACK_SNAPSHOT_LIMIT + 1)
    truncated = len(recipients) > TRACK_SNAPSHOT_LIMIT
    recipients = recipients[:TRACK_SNAPSHOT_LIMIT]
    emitter.emit_each(((sid, recipient_update_payload(r)) for r in recipients),
                      "recipient_update")
    return {**_acknowledged(message, len(recipients)), "truncated": truncated,
            "nextCursor": str(recipients[-1].id) if truncated else None}


def _track_batched(identity: Identity, sid: str, message: Message,
                   since_version: int | None) -> dict[str, Any]:
    version = clock_version()
    since = _resume_point(message, since_version, now=version)
    changed = message.recipient_count if since is None else _count_changed(message.id, since)
    snapshots.charge_snapshot(identity.user_id, 1 + math.ceil(changed / ROWS_PER_BATCHED_CHARGE))
    emitter.enter_room(sid, rooms.recipient_batch_room(message.id))
    emitter.emit_to_sid(sid, event="message_update", payload=message_update_payload(
        message, status_counts([message.id])[message.id]))
    if since is None:
        batches, sent = full_snapshot(message.id, version)
    else:
        recipients = recipient_rows(message.id, since=since, limit=None)
        batches = [recipient_updates_payload(message.id, states, version)
                   for states in in_batches(recipients)]
        sent = len(recipients)
    emitter.emit_each(((sid, batch) for batch in batches), "recipient_updates")
    return {**_acknowledged(message, sent), "truncated": False, "nextCursor": None,
            "version": version, "resumed": since is not None}


def catch_up(since: datetime, held: set[str]) -> int:
    """A ``message_update`` of each message that changed since ``since`` to this process's
    sockets in ``held`` that track or own it, and the changed recipients to its trackers;
    the number of messages (``services.realtime.gaps``)."""
    tracked = sorted({message_id for room in held
                      if (message_id := rooms.message_of_room(room))})
    owners = sorted({user_id for room in held if (user_id := rooms.user_of_room(room))})
    changed: dict[int, Message] = {}
    for column, ids in ((Message.id, tracked), (Message.user_id, owners)):
        for chunk in gaps.chunks(ids):
            changed.update((message.id, message) for message in db.session.scalars(
                select(Message).where(Message.updated_at > since, column.in_(chunk))))
    counts = status_counts(sorted(changed))
    for message_id, message in sorted(changed.items()):
        emitter.emit_to_local_room(
            [rooms.user_room(message.user_id), rooms.message_room(message_id),
             rooms.recipient_batch_room(message_id)],
            event="message_update", payload=message_update_payload(message, counts[message_id]))
        _resend_recipients(message_id, since, held)
    return len(changed)


def _resend_recipients(message_id: int, since: datetime, held: set[str]) -> None:
    """The recipients changed since ``since`` to the message's local trackers of each kind."""
    each_room, batch_room = rooms.message_room(message_id), rooms.recipient_batch_room(message_id)
    if each_room not in held and batch_room not in held:
        return
    recipients = recipient_rows(message_id, since=since, limit=None)
    if each_room in held:
        emitter.emit_each(((each_room, recipient_update_payload(recipient))
                           for recipient in recipients), "recipient_update", local=True)
    if batch_room in held:
        version = clock_version()
        emitter.emit_each(((batch_room, recipient_updates_payload(message_id, states, version))
                           for states in in_batches(recipients)), "recipient_updates",
                          local=True)


def _resume_point(message: Message, since_version: int | None, *, now: int) -> datetime | None:
    """From when to send changes again, or None for the full snapshot."""
    created = message.created_at.timestamp() * 1000
    if since_version is None or not created <= since_version <= now:
        return None
    overlap = current_app.config["RECIPIENT_RESUME_OVERLAP"]
    return datetime.fromtimestamp(since_version / 1000 - overlap, UTC)


def _count_changed(message_id: int, since: datetime) -> int:
    return db.session.scalar(select(func.count()).select_from(Recipient).where(
        Recipient.message_id == message_id, Recipient.updated_at > since)) or 0


def _acknowledged(message: Message, sent: int) -> dict[str, Any]:
    return {"messageId": str(message.id), "status": message.status,
            "recipientCount": message.recipient_count, "snapshotRecipients": sent}
