"""What messages and recipients look like on the wire: REST bodies and their live events.

``message_update``, ``recipient_update`` and the batched ``recipient_updates``
carry the figures a tracker needs and a ``version`` that grows with every
change, so clients drop stale updates; the REST shapes are the same figures
plus what was sent and when.
Built here once for every path that sends them: creation, the dispatcher's
announcements, tracking snapshots and the REST listings.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

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
    ``recipient`` is a recipient or a row of its ``SNAPSHOT_COLUMNS``.
    ``providerStatus`` and ``providerErrorCode`` are the provider's own words
    (``null`` until it has said any); ``parts`` is the segment count sent.
    """
    state: dict[str, Any] = {
        "recipientId": str(recipient.id),
        "phone": recipient.phone,
        "status": recipient.status,
        "version": recipient.version,
        "providerStatus": recipient.provider_status,
        "providerErrorCode": recipient.provider_error_code,
        "parts": recipient.parts,
        "retryable": bool(recipient.retryable),
    }
    if recipient.error_message:
        state["errorMessage"] = recipient.error_message
    if recipient.error_code:
        state["errorCode"] = recipient.error_code
    return state


def recipient_update_payload(recipient: Recipient | Row[Any]) -> dict[str, Any]:
    """The ``recipient_update`` event shape: the recipient's state and its message."""
    return {"messageId": str(recipient.message_id), **recipient_state(recipient)}


def recipient_updates_payload(message_id: int, states: list[dict[str, Any]],
                              version: int) -> dict[str, Any]:
    """The ``recipient_updates`` event shape: a batch of ``recipient_state`` items."""
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
