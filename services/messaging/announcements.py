"""What the send pipeline tells clients, once each change has committed.

Every move of a recipient is a ``recipient_update`` to its message's
trackers, and goes into the next ``recipient_updates`` batch of its batched
trackers (``services.messaging.recipient_batches``). A message's figures go
out as ``message_update`` to its owner and trackers: while a dispatcher
runs, the changes are coalesced to one update per message every
``MESSAGE_UPDATE_INTERVAL`` (``MessageUpdates``), and a finished message's
final update goes out at once, followed by a notification to its owner.
"""

from __future__ import annotations

from typing import Any

from models import Message
from models.message import MessageStatus
from services import notifications
from services.messaging.payloads import message_update_payload, money, recipient_update_payload
from services.messaging.recipient_batches import batches
from services.messaging.status_counts import status_counts
from services.realtime import emitter, rooms


class MessageUpdates:
    """Messages whose figures changed since their last ``message_update``.

    Collected only while this node's dispatcher runs, which sends them on its
    own schedule; without one (a CLI, a test) there is nobody to send them.
    """

    def __init__(self) -> None:
        self.changed: set[int] | None = None

    def start(self) -> None:
        if self.changed is None:
            self.changed = set()

    def note(self, message_ids: set[int]) -> None:
        if self.changed is not None:
            self.changed |= message_ids

    def take(self) -> set[int]:
        """The messages changed since the last call, forgotten here."""
        if not self.changed:
            return set()
        taken, self.changed = self.changed, set()
        return taken


message_updates = MessageUpdates()


def emit_recipient_updates(rows: list[Any]) -> None:
    """Each recipient's ``recipient_update`` to its message's trackers; the batches noted."""
    message_ids = {row.message_id for row in rows}
    batches.note(rows, message_ids)
    tracked = {message_id for message_id in message_ids
               if emitter.has_listeners(rooms.message_room(message_id))}
    if tracked:
        emitter.emit_each(((rooms.message_room(row.message_id), recipient_update_payload(row))
                           for row in rows if row.message_id in tracked), "recipient_update")


def claimed(rows: list[Any]) -> None:
    """A batch was claimed: its recipients are ``SENDING``, their messages' counts moved."""
    emit_recipient_updates(rows)
    message_updates.note({row.message_id for row in rows})


def outcomes_recorded(recorded: list[Any], completed: list[Message]) -> None:
    """A batch of sends was recorded: ``completed`` are the messages it finished."""
    emit_recipient_updates(recorded)
    message_updates.note({row.message_id for row in recorded})
    for message in completed:
        _announce_completion(message)


def receipts_applied(changed: list[Any], delivered_message_ids: set[int]) -> None:
    """Delivery receipts moved these recipients; the messages' delivered counts grew."""
    emit_recipient_updates(changed)
    message_updates.note(delivered_message_ids)


def _announce_completion(message: Message) -> None:
    """The final ``message_update`` at once, then the owner's notification."""
    emit_message_update(message)
    if message.status == MessageStatus.SENT:
        title, kind = "Message sent", "message_sent"
        text = f"Sent to {message.success_count} of {message.recipient_count} recipients"
        if message.failed_count:
            text += f"; {message.failed_count} failed"
    else:
        title, kind = "Message failed", "message_failed"
        text = f"None of the {message.recipient_count} recipients could be sent to"
    notifications.notify_user(message.user_id, title=title, message=text, type=kind,
                              data={"messageId": str(message.id), "cost": money(message.cost)})


def emit_message_update(message: Message, counts: dict[str, int] | None = None) -> None:
    """To the owner and to the message's trackers; a socket in several rooms gets it once.

    ``counts`` (``statusCounts``) are read from the recipients when not given.
    """
    if counts is None:
        counts = status_counts([message.id])[message.id]
    emitter.emit_to_rooms([rooms.user_room(message.user_id), rooms.message_room(message.id),
                           rooms.recipient_batch_room(message.id)],
                          event="message_update", payload=message_update_payload(message, counts))
