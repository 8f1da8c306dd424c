"""A batched tracker's full snapshot, shared with the message's next trackers on this process.

A full snapshot reads every recipient of the message, builds each one's state
and encodes it: for 10,000 recipients most of what ten trackers of one
message cost the hub (``bench/recipient_batches.py``). The last one built for
a message is kept here, its batches already encoded (``orjson.Fragment``, so
a payload carrying one costs nothing more to encode), with each recipient's
``version`` and phone. A later full snapshot of the message reads only the
recipients' ids and versions, sends the kept batches, and then, in batches
of its own, the current state of every recipient whose version differs or
that the kept one lacks.

Why that is the state the tracker would have got from a fresh snapshot:

- every write of a recipient's row raises its ``version`` (the send queue,
  receipts, provider statuses, erasure), so a recipient whose version is the
  kept one is still as kept, and the later state of any other comes after
  the kept batches: clients keep each recipient's highest version;
- a recipient whose number was erased since must never be shown with it: a
  changed recipient whose phone differs from the kept one makes the snapshot
  a fresh one (erasure is rare);
- the reads all happen before the first emit, as for a fresh snapshot, so a
  live batch of the message's room (joined before) comes before or after
  the snapshot's, never between them; a change after the reads arrives
  through the room;
- the versions are the database's, so changes made on other nodes, or by
  processes that serve no sockets, count as any other.

The kept batches carry the ``version`` of the snapshot they were built for,
older than the new tracker's (its ack's and its own batches'). A client
that resumes with ``sinceVersion`` from the highest batch version it saw
gets every change since that version, less the overlap: a lower version
only makes it resume earlier and receive more again. One that saw all the
batches saw the tracker's own last, or, when nothing had changed, has the
states read after its ack's version was taken, as with a fresh snapshot.

More than half of the recipients changed, a kept snapshot older than
``SHARED_SECONDS`` or none kept: the snapshot is built afresh and replaces
the kept one. At most ``SHARED_MESSAGES`` messages are kept, the least
recently tracked forgotten first. A payload carrying a ``Fragment`` also
goes through the message queue when its sid is another process's (it left
meanwhile): python-socketio's managers encode with the server's JSON,
``services.transport.packets.PacketJson``, which is orjson.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import select

from extensions import db
from models import Recipient
from services.messaging.payloads import (
    SNAPSHOT_FIELDS,
    recipient_updates_payload,
    snapshot_states,
)

SNAPSHOT_BATCH_SIZE = 1_000
SHARED_MESSAGES = 4
SHARED_SECONDS = 5.0

_TABLE = Recipient.__table__
# The snapshot's columns from the table, as plain rows: a select of ORM attributes goes
# through the ORM's loading, and ORM objects take longer still.
_SNAPSHOT_COLUMNS = tuple(_TABLE.c[name] for name in SNAPSHOT_FIELDS)
_ID, _PHONE, _VERSION = (SNAPSHOT_FIELDS.index(name) for name in ("id", "phone", "version"))


@dataclass
class _Kept:
    built_at: float
    versions: dict[int, int]
    phones: dict[int, str]
    batches: list[dict[str, Any]]


# By database and message: a process that works on several databases (the tests, a
# command) never serves one database's recipients from another's snapshot.
_kept: OrderedDict[tuple[str, int], _Kept] = OrderedDict()


def recipient_rows(message_id: int, *, since: datetime | None,
                   limit: int | None) -> Sequence[Any]:
    """The message's recipients as rows of the ``SNAPSHOT_FIELDS`` columns, by id; with
    ``since``, only those changed after it."""
    query = select(*_SNAPSHOT_COLUMNS).where(_TABLE.c.message_id == message_id)
    if since is not None:
        query = query.where(_TABLE.c.updated_at > since)
    return db.session.execute(query.order_by(_TABLE.c.id).limit(limit)).all()


def in_batches(recipients: Sequence[Any]) -> Iterator[list[dict[str, Any]]]:
    """The states of ``recipients``, ``SNAPSHOT_BATCH_SIZE`` to a batch."""
    for start in range(0, len(recipients), SNAPSHOT_BATCH_SIZE):
        yield snapshot_states(recipients[start:start + SNAPSHOT_BATCH_SIZE])


def full_snapshot(message_id: int, version: int) -> tuple[list[dict[str, Any]], int]:
    """The ``recipient_updates`` payloads of every recipient's state, and how many
    recipients they cover; ``version`` is the tracker's, for the batches built for it."""
    kept = _kept.get(_key(message_id))
    if kept is not None and time.monotonic() - kept.built_at < SHARED_SECONDS:
        _kept.move_to_end(_key(message_id))
        shared = _from_kept(message_id, kept, version)
        if shared is not None:
            return shared
    return _built(message_id, version)


def _key(message_id: int) -> tuple[str, int]:
    return str(db.engine.url), message_id


def _from_kept(message_id: int, kept: _Kept,
               version: int) -> tuple[list[dict[str, Any]], int] | None:
    """The kept batches and the changes since; None when a fresh snapshot is due."""
    current = db.session.execute(
        select(_TABLE.c.id, _TABLE.c.version).where(_TABLE.c.message_id == message_id)
        .order_by(_TABLE.c.id)).all()
    known = kept.versions.get
    changed = [id_ for id_, row_version in current if known(id_) != row_version]
    still_there = len(current) - sum(1 for id_ in changed if id_ not in kept.versions)
    if still_there != len(kept.versions) or len(changed) * 2 > len(current):
        return None
    rows = [row for start in range(0, len(changed), SNAPSHOT_BATCH_SIZE)
            for row in _rows_of(message_id, changed[start:start + SNAPSHOT_BATCH_SIZE])]
    phone = kept.phones.get
    if any(phone(row[_ID], row[_PHONE]) != row[_PHONE] for row in rows):
        return None
    return kept.batches + [recipient_updates_payload(message_id, states, version)
                           for states in in_batches(rows)], len(current)


def _rows_of(message_id: int, ids: list[int]) -> Sequence[Any]:
    return db.session.execute(
        select(*_SNAPSHOT_COLUMNS)
        .where(_TABLE.c.message_id == message_id, _TABLE.c.id.in_(ids))
        .order_by(_TABLE.c.id)).all()


def _built(message_id: int, version: int) -> tuple[list[dict[str, Any]], int]:
    """A fresh snapshot, kept for the message's next trackers."""
    rows = recipient_rows(message_id, since=None, limit=None)
    batches = [recipient_updates_payload(message_id, orjson.Fragment(orjson.dumps(states)),
                                         version)
               for states in in_batches(rows)]
    _kept[_key(message_id)] = _Kept(built_at=time.monotonic(),
                              versions={row[_ID]: row[_VERSION] for row in rows},
                              phones={row[_ID]: row[_PHONE] for row in rows},
                              batches=batches)
    _kept.move_to_end(_key(message_id))
    while len(_kept) > SHARED_MESSAGES:
        _kept.popitem(last=False)
    return batches, len(rows)
