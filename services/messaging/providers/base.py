"""The contract between the dispatcher and every SMS provider.

A real provider has no idempotency key: a submission that may have reached it
must never be repeated by the hub on its own. So ``submit`` never raises for a
provider fault; it says which of five outcomes happened, and the dispatcher
acts on the outcome the same way whatever the provider (``../SMS.md``
section 1, "What a send can come back with"). Receipts and inbound messages
come back through the callbacks given to ``start``, or through a webhook that
builds the same ``ProviderReceipt`` / ``InboundSms``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol


class Outcome(StrEnum):
    """What a submission came back with."""

    ACCEPTED = "accepted"  # the provider took it: SENT, cost counted
    REJECTED = "rejected"  # refused for good (or retryable on request): FAILED, no cost
    THROTTLED = "throttled"  # not taken, slow down: queued again, never FAILED for it
    OPTED_OUT = "opted_out"  # the number opted out at the provider: SUPPRESSED
    UNKNOWN = "unknown"  # may have been taken (timeout, lost link, 5xx): never resent on its own


@dataclass(frozen=True, slots=True)
class OutgoingSms:
    """One SMS to submit: the recipient it is for, where it goes and what it says."""

    recipient_id: int
    phone: str
    body: str


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """A submission's outcome, in the provider's words and the hub's.

    ``part_ids`` holds the provider id of every part when the provider submits
    a long text as several (SMPP); ``provider_message_id`` is then the first.
    ``parts`` is the provider's own segment count when it reports one.
    """

    outcome: Outcome
    provider_message_id: str | None = None
    part_ids: tuple[str, ...] = ()
    parts: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    provider_error_code: str | None = None
    provider_status: str | None = None
    retry_after: float | None = None
    retryable: bool = False


@dataclass(frozen=True, slots=True)
class ProviderReceipt:
    """A provider's report on one submitted part (or the whole SMS when it has one id).

    ``status`` is the recipient status it leads to (``DELIVERED``, ``FAILED``,
    ``UNKNOWN``) or ``None`` when it changes nothing (``queued``, ``ENROUTE``).
    ``billable`` is ``False`` when the provider does not charge for it (Twilio's
    ``failed``). ``recipient_id`` is set when the provider can tie the id to the
    recipient whose submission came back ``unknown`` (a ``submit_sm_resp`` after
    the window gave up, a callback URL carrying the recipient): the receipt then
    settles that recipient, records the id, and counts its cost.

    ``replaces`` marks a word of progress (``status`` ``None``) that the recipient's
    ``providerStatus`` should show: it takes the place of no word or of one of these
    (``provider_statuses.record_progress``), never of a final one.

    ``acknowledge`` is set by a provider that must not let go of a receipt until the
    hub holds it (SMPP answers its ``deliver_sm`` only then): the dispatcher calls it
    once, with ``True`` when the receipt is committed or given up on, ``False`` when it
    could not be stored and the provider should send it again.
    """

    provider_message_id: str
    status: str | None
    provider_status: str | None = None
    provider_error_code: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    parts: int | None = None
    billable: bool = True
    occurred_at: datetime | None = None
    recipient_id: int | None = None
    replaces: tuple[str, ...] | None = None
    acknowledge: Acknowledge | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class InboundSms:
    """A message a person sent to one of the hub's senders."""

    sender: str  # the person's number, as the provider wrote it
    to: str  # the hub's number or sender id it was sent to
    body: str
    provider_message_id: str | None = None
    received_at: datetime | None = None
    # The sender the hub sends as that ``to`` belongs to, when that is not ``to`` itself:
    # a Twilio Messaging Service, which sends from any number of its pool. A STOP to one
    # of those numbers opts out of the service, as the hub's sends come from it.
    sent_as: str | None = None


Acknowledge = Callable[[bool], None]
ReceiptHandler = Callable[[ProviderReceipt], None]
InboundHandler = Callable[[InboundSms], None]


class SmsProvider(Protocol):
    """What the dispatcher sends through.

    ``exactly_once``: the provider deduplicates by recipient id (the
    simulator), so a claim taken over after a crash may be submitted again;
    ``False`` for every real provider, whose possibly-submitted recipients
    become ``UNKNOWN`` instead. ``max_in_flight`` bounds concurrent submits on
    this node (an SMPP window times its binds). ``sender`` is the number or
    sender id it sends from: ``SMS_MAX_PER_SECOND`` paces each sender across
    the deployment.
    """

    name: str
    sender: str
    exactly_once: bool
    max_in_flight: int

    def start(self, on_receipt: ReceiptHandler, on_inbound: InboundHandler) -> None: ...

    def submit(self, sms: OutgoingSms) -> SubmitResult: ...

    def stop(self) -> None: ...
