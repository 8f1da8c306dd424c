"""What messages and recipients look like on the wire: REST bodies and their live events.

``message_update``, ``recipient_update`` and the batched ``recipient_updates``
carry the figures a tracker needs and a ``version`` that grows with every
change, so clients drop stale updates; the REST shapes are the same figures
plus what was sent and when.
Built here once for every path that sends them: creation, the dispatcher's
announcements, tracking snapshots and the REST listings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from functools import lru_cache
from operator import attrgetter, itemgetter
from typing import Any

import orjson
from sqlalchemy import Row

from models import Message, Recipient
from schemas.common import isoformat


def money(value: Decimal | None) -> float:
    return float(value or 0)


def message_update_payload(message: Message, status_counts: dict[str, int]) -> dict[str, Any]:
    """The ``message_update`` event shape; ``status_counts`` is ``queue.status_counts``'s."""
    return {
        "messageId": str(message.id),
        "status": message.status,
        "successCount": message.success_count,
        "failedCount": message.failed_count,
        "deliveredCount": message.delivered_count,
        "recipientCount": message.recipient_count,
        "statusCounts": status_counts,
        "cost": money(message.cost),
        "version": message.version,
    }


def message_payload(message: Message, status_counts: dict[str, int]) -> dict[str, Any]:
    """A message as REST returns it: the live figures plus what was sent and when."""
    return {
        "id": str(message.id),
        **{k: v for k, v in message_update_payload(message, status_counts).items()
           if k != "messageId"},
        "body": message.body,
        "encoding": message.encoding,
        "segments": message.segments,
        "createdAt": isoformat(message.created_at),
        "completedAt": isoformat(message.completed_at),
        "sendAt": isoformat(message.send_at),
        "quietHours": message.quiet_hours,
        "validitySeconds": message.validity_seconds,
    }


def recipient_state(recipient: Recipient | Row[Any]) -> dict[str, Any]:
    """One recipient as trackers see it; error fields only when there is an error.

    The item of a ``recipient_updates`` batch, and with its message's id a
    ``recipient_update``: every field a recipient event carries is added here.
    ``recipient`` is a recipient, a row or a named tuple with its columns.
    ``providerStatus`` and ``providerErrorCode`` are the provider's own words
    (``null`` until it has said any); ``parts`` is the segment count sent.
    """
    return _state_of(*_fields_reader(type(recipient))(recipient))


_STATE_FIELDS = ("id", "phone", "status", "version", "provider_status", "provider_error_code",
                 "parts", "retryable", "error_message", "error_code")
_state_by_attribute = attrgetter(*_STATE_FIELDS)
_state_by_key = itemgetter(*_STATE_FIELDS)


@lru_cache(maxsize=64)
def _fields_reader(kind: type) -> Callable[[Any], tuple[Any, ...]]:
    """How to read ``_state_of``'s fields of a recipient of this kind in one call.

    A named tuple by position (the queue's rows: an attribute of one is a
    property call); a SQLAlchemy row by its mapping (an attribute is found
    only after a failed class lookup, twenty times slower); anything else
    (a ``Recipient``) by attribute. Every recipient change reads them for
    each of its events.
    """
    if issubclass(kind, tuple) and hasattr(kind, "_fields"):
        return itemgetter(*(kind._fields.index(name) for name in _STATE_FIELDS))
    if issubclass(kind, Row):
        return lambda row: _state_by_key(row._mapping)
    return _state_by_attribute


# What a ``recipient_update`` needs, in the order ``snapshot_states`` reads a row.
SNAPSHOT_FIELDS = ("id", "message_id", "phone", "status", "version", "error_message",
                   "error_code", "provider_status", "provider_error_code", "parts", "retryable")


def snapshot_states(rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    """``recipient_state`` of each row of the ``SNAPSHOT_FIELDS`` columns, read by position.

    A snapshot builds one for every recipient of a message at once (10,000), and
    a row's mapping cost more than the state itself.
    """
    return [_state_of(id_, phone, status, version, provider_status, provider_error_code, parts,
                      retryable, error_message, error_code)
            for (id_, _message_id, phone, status, version, error_message, error_code,
                 provider_status, provider_error_code, parts, retryable) in rows]


def _state_of(id_: int, phone: str, status: str, version: int, provider_status: str | None,
              provider_error_code: str | None, parts: int | None, retryable: Any,
              error_message: str | None, error_code: str | None) -> dict[str, Any]:
    state: dict[str, Any] = {
        "recipientId": str(id_),
        "phone": phone,
        "status": status,
        "version": version,
        "providerStatus": provider_status,
        "providerErrorCode": provider_error_code,
        "parts": parts,
        "retryable": bool(retryable),
    }
    if error_message:
        state["errorMessage"] = error_message
    if error_code:
        state["errorCode"] = error_code
    return state


def recipient_update_payload(recipient: Recipient | Row[Any]) -> dict[str, Any]:
    """The ``recipient_update`` event shape: the recipient's state and its message."""
    return {"messageId": str(recipient.message_id), **recipient_state(recipient)}


def recipient_updates_payload(message_id: int, states: list[dict[str, Any]] | orjson.Fragment,
                              version: int) -> dict[str, Any]:
    """The ``recipient_updates`` event shape: a batch of ``recipient_state`` items, or their
    JSON already encoded, for a batch sent to many trackers."""
    return {"messageId": str(message_id), "updates": states, "version": version}


def recipient_payload(recipient: Recipient) -> dict[str, Any]:
    return {
        **recipient_update_payload(recipient),
        "id": str(recipient.id),
        "providerMessageId": recipient.provider_message_id,
        "cost": money(recipient.cost),
        "sentAt": isoformat(recipient.sent_at),
        "deliveredAt": isoformat(recipient.delivered_at),
    }
