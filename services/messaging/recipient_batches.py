"""Batched ``recipient_updates``: a message's recipient changes at most every interval, each once.

A tracker of a 10,000-recipient message used to get 30,000-40,000
``recipient_update`` packets, each a JSON encode here, a frame on the wire
and a DOM update in a page. A batched tracker gets one ``recipient_updates``
per message every ``RECIPIENT_BATCH_INTERVAL`` instead: the first change at
once, then whatever piled up, each recipient once, in its latest state. A
batch is built once, on the node that committed the changes, and like every
emit reaches the message's batched trackers on every node; nothing is built
for a message nobody tracks in batches.

A batch's ``version`` is this server's clock in milliseconds when it was
built, rising per message: what a tracker hands back as ``sinceVersion`` to
resume after a reconnect (``services.messaging.tracking``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import gevent

from services.messaging.payloads import recipient_state, recipient_updates_payload
from services.realtime import emitter, rooms

log = logging.getLogger(__name__)


def clock_version() -> int:
    """Now as a batch version: milliseconds since the epoch."""
    return int(time.time() * 1000)


class RecipientBatches:
    """This node's recipient changes waiting for their message's next batch."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        # Per message, each changed recipient's latest row: its state is built once, when
        # the batch goes, however many times it changed in the interval.
        self.pending: dict[int, dict[int, Any]] = {}
        self.last_sent: dict[int, tuple[float, int]] = {}

    def configure(self, interval: float) -> None:
        self.interval = interval

    def note(self, rows: Sequence[Any], message_ids: set[int]) -> None:
        """Committed recipient changes, of the messages ``message_ids``: sent at once when
        the message had no batch lately.

        Per row only what must be: a change of a message nobody tracks in batches
        is dropped with its message, and one that meets an earlier change of the
        same recipient keeps the higher version (greenlets may note their commits
        out of order).
        """
        tracked = [message_id for message_id in message_ids
                   if emitter.has_listeners(rooms.recipient_batch_room(message_id))]
        if not tracked:
            return
        started = [message_id for message_id in tracked if message_id not in self.pending]
        by_message: dict[int, dict[int, Any]] = {message_id: {} for message_id in tracked}
        for row in rows:
            changed = by_message.get(row.message_id)
            if changed is not None:
                changed[row.id] = row
        for message_id, changed in by_message.items():
            waiting = self.pending.setdefault(message_id, {})
            for recipient_id in changed.keys() & waiting.keys():
                if waiting[recipient_id].version > changed[recipient_id].version:
                    changed[recipient_id] = waiting[recipient_id]
            waiting.update(changed)
        now = time.monotonic()
        for message_id in started:
            sent_at = self.last_sent.get(message_id, (float("-inf"), 0))[0]
            wait = sent_at + self.interval - now
            if wait > 0:
                gevent.spawn_later(wait, self.flush, message_id)
            else:
                self.flush(message_id)

    def flush(self, message_id: int) -> None:
        """The message's batch, to its batched trackers, an interval after the last one.

        A timer set for the rest of the interval can fire early by as long as the
        event loop's turn that set it ran (gevent counts from the turn's start, and a
        turn that applied a batch of receipts is long): then it waits again.
        """
        now = time.monotonic()
        early = self.last_sent.get(message_id, (float("-inf"), 0))[0] + self.interval - now
        if early > 0:
            gevent.spawn_later(early, self.flush, message_id)
            return
        rows = self.pending.pop(message_id, None)
        if not rows:
            return
        previous = self.last_sent.get(message_id, (0.0, 0))[1]
        version = max(clock_version(), previous + 1)
        # Forgotten once the clock alone keeps the next version higher and no wait is owed.
        self.last_sent = {key: sent for key, sent in self.last_sent.items()
                          if now - sent[0] < max(self.interval, 1.0)}
        self.last_sent[message_id] = (now, version)
        payload = recipient_updates_payload(
            message_id, [recipient_state(row) for row in rows.values()], version)
        try:
            emitter.emit_to_room(rooms.recipient_batch_room(message_id), event="recipient_updates",
                                 payload=payload)
        except Exception:
            log.exception("recipient_updates for message %s could not be sent", message_id)


batches = RecipientBatches()
