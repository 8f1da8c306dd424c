"""The suppression list: numbers that must not be sent to, checked before every submission.

An entry names a number and the sender it opted out of (``*``: every sender)
and why: ``keyword`` (the person texted STOP), ``provider`` (the provider
refused the send as opted out, Twilio 21610), ``manual`` (an admin) or
``erased`` (the number was erased while it had an opt-out). Entries are found
by a keyed hash of the number (``phone_hash``), never by the number itself, so
erasure can clear the number and the entry keeps matching: a person who said
STOP and was then erased is still never messaged.

The dispatcher asks ``SendGate`` right before each submission; the gate looks
the batch up again whenever its last look is older than ``RECHECK_SECONDS``,
so an opt-out committed on any node stops sends on every node within a
second, at the cost of one indexed query per batch every half second rather
than one per recipient. The same look says which of the batch's messages were
paused or canceled since it was claimed, for the same one-second promise.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any

from flask import current_app
from gevent.lock import BoundedSemaphore
from sqlalchemy import Engine, Select, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from extensions import db
from models import Message, Suppression
from models.message import HELD_MESSAGE_STATUSES
from schemas.common import isoformat
from services.errors import InvalidPayload
from services.messaging.json_rows import among
from services.messaging.phones import InvalidPhoneNumber, normalise_phone
from services.messaging.providers.base import Outcome, SubmitResult

ANY_SENDER = "*"
# What replaces an erased number in recipients and inbound messages: this, then its hash.
ERASED_PREFIX = "erased:"
RECHECK_SECONDS = 0.5
# What the dispatcher records for a recipient the list stopped: no provider call was made.
ON_LIST = SubmitResult(Outcome.OPTED_OUT, error_code="opted_out",
                       error_message="The number is on the suppression list")


class SuppressionReason(StrEnum):
    KEYWORD = "keyword"
    PROVIDER = "provider"
    MANUAL = "manual"
    ERASED = "erased"


# What a person's START undoes: only what their STOP or the provider's opt-out made.
LIFTED_BY_KEYWORD = (SuppressionReason.KEYWORD, SuppressionReason.PROVIDER)


def phone_hash(phone: str) -> str:
    """The keyed hash an E.164 number is known by once erased (hex HMAC-SHA256).

    An already erased number (``erased:<hash>``) is its own hash, so a queued
    recipient erased mid-send still meets its opt-out.
    """
    if phone.startswith(ERASED_PREFIX):
        return phone[len(ERASED_PREFIX):]
    key = current_app.config["PHONE_HASH_KEY"].encode()
    return hmac.new(key, phone.encode(), hashlib.sha256).hexdigest()


def erased_phone(phone: str) -> str:
    """What a number becomes where it is erased: the prefix and its keyed hash."""
    return ERASED_PREFIX + phone_hash(phone)


def normalise_sender(raw: str) -> str:
    """A sender as the list names it: E.164 when it is a number, else the text as given
    (an alphanumeric sender id, a Messaging Service sid, ``*``)."""
    try:
        return normalise_phone(raw)
    except InvalidPhoneNumber:
        return raw.strip()


@lru_cache(maxsize=2)
def _matching_statement(dialect: str) -> Select:
    """The entries for some hashes and senders; built once per database, since a send
    batch asks it every ``RECHECK_SECONDS`` with hundreds of hashes, which a statement
    built per call would coerce one by one."""
    return select(Suppression.phone_hash).where(
        among(dialect, Suppression.phone_hash, "hashes"),
        among(dialect, Suppression.sender, "senders"))


def _matching(hashes: Iterable[str], sender: str) -> dict[str, Any]:
    """``_matching_statement``'s parameters: these hashes, for ``sender`` or every sender."""
    return {"hashes": list(set(hashes)), "senders": [sender, ANY_SENDER]}


def suppressed_phones(phones: Iterable[str], *, sender: str) -> set[str]:
    """Which of ``phones`` may not be sent to from ``sender``."""
    by_hash = {phone_hash(phone): phone for phone in phones}
    if not by_hash:
        return set()
    return {by_hash[found]
            for found in db.session.scalars(_matching_statement(db.engine.dialect.name),
                                                _matching(by_hash, sender))}


class SendGate:
    """A dispatched batch's last check before each submission, fresh to within
    ``RECHECK_SECONDS``: the suppression list, and whether its messages are held.

    Built in the dispatcher's loop (which has the application); ``blocks`` and
    ``holds`` are asked by the send workers, greenlets without it, so the gate
    holds the hashes and the application's engine and queries through its own
    connection.
    """

    def __init__(self, phones: Iterable[str], *, sender: str,
                 message_ids: Iterable[int] = ()) -> None:
        self.sender = sender
        self.engine: Engine = db.engine
        self.hash_of = {phone: phone_hash(phone) for phone in phones}
        self.message_ids = set(message_ids)
        self._lock = BoundedSemaphore()
        self._blocked: set[str] = set()
        self._held: set[int] = set()
        self._checked_at = float("-inf")
        self._refresh()

    def _refresh(self) -> None:
        started = time.monotonic()
        with self.engine.connect() as connection:
            found = set(connection.scalars(_matching_statement(self.engine.dialect.name),
                                           _matching(self.hash_of.values(), self.sender)))
            self._held = set(connection.scalars(
                select(Message.id).where(Message.id.in_(self.message_ids),
                                         Message.status.in_(HELD_MESSAGE_STATUSES))
            )) if self.message_ids else set()
        self._blocked = {phone for phone, hashed in self.hash_of.items() if hashed in found}
        self._checked_at = started

    def _fresh(self) -> None:
        if time.monotonic() - self._checked_at >= RECHECK_SECONDS:
            with self._lock:
                if time.monotonic() - self._checked_at >= RECHECK_SECONDS:
                    self._refresh()

    def holds(self, message_id: int) -> bool:
        """Whether ``message_id`` was paused or canceled, as of at most ``RECHECK_SECONDS`` ago."""
        self._fresh()
        return message_id in self._held

    def blocks(self, phone: str) -> bool:
        """Whether ``phone`` is suppressed, as of at most ``RECHECK_SECONDS`` ago.

        An erased number is never sent to: the hub no longer knows it.
        """
        if phone.startswith(ERASED_PREFIX):
            return True
        self._fresh()
        return phone in self._blocked


def _insert_ignoring_duplicates(rows: list[dict[str, Any]]) -> None:
    """Add entries; one already there for the same number and sender stays as it is."""
    dialect = postgresql if db.engine.dialect.name == "postgresql" else sqlite
    db.session.execute(dialect.insert(Suppression).values(rows).on_conflict_do_nothing(
        index_elements=["phone_hash", "sender"]))


def _entry(phone: str, sender: str, reason: str) -> dict[str, Any]:
    return {"phone_hash": phone_hash(phone), "phone": phone, "sender": sender,
            "reason": reason, "created_at": datetime.now(UTC)}


def add_opt_outs(phones: Iterable[str], *, sender: str, reason: SuppressionReason) -> None:
    """Suppress ``phones`` for ``sender`` in the caller's transaction (it commits)."""
    rows = [_entry(phone, sender, reason) for phone in set(phones)]
    if rows:
        _insert_ignoring_duplicates(rows)


def lift_opt_out(phone: str, *, sender: str) -> int:
    """START: remove the keyword and provider entries for this number and sender, in the
    caller's transaction; manual and erasure entries stay."""
    return db.session.execute(
        delete(Suppression).where(Suppression.phone_hash == phone_hash(phone),
                                  Suppression.sender.in_((sender, ANY_SENDER)),
                                  Suppression.reason.in_(LIFTED_BY_KEYWORD))
    ).rowcount or 0


def _phone_or_refuse(raw: str) -> str:
    try:
        return normalise_phone(raw)
    except InvalidPhoneNumber as exc:
        raise InvalidPayload(f"Phone number {exc.reason}") from None


def payload(entry: Suppression) -> dict[str, Any]:
    """An entry as the admin API shows it; an erased number shows as its hash."""
    return {"phone": entry.phone or ERASED_PREFIX + entry.phone_hash, "sender": entry.sender,
            "reason": entry.reason, "createdAt": isoformat(entry.created_at)}


def add(raw_phone: str, *, sender: str | None, reason: str | None) -> dict[str, Any]:
    """An admin's entry (``sender`` ``*`` and reason ``manual`` unless told); an existing
    entry for the same number and sender is kept and returned."""
    phone = _phone_or_refuse(raw_phone)
    sender = normalise_sender(sender) if sender else ANY_SENDER
    _insert_ignoring_duplicates([_entry(phone, sender, reason or SuppressionReason.MANUAL)])
    db.session.commit()
    entry = db.session.scalars(select(Suppression).where(
        Suppression.phone_hash == phone_hash(phone), Suppression.sender == sender)).one()
    return payload(entry)


def remove(raw_phone: str, *, sender: str | None) -> int:
    """Remove the number's entry for ``sender``, or every entry of the number without one."""
    query = delete(Suppression).where(Suppression.phone_hash == phone_hash(
        _phone_or_refuse(raw_phone)))
    if sender:
        query = query.where(Suppression.sender == normalise_sender(sender))
    removed = db.session.execute(query).rowcount or 0
    db.session.commit()
    return removed


def list_entries(*, phone: str | None, sender: str | None, limit: int,
                 before: int | None) -> dict[str, Any]:
    """Entries newest first, optionally of one number and/or one sender, paged by id."""
    query = select(Suppression)
    if phone:
        query = query.where(Suppression.phone_hash == phone_hash(_phone_or_refuse(phone)))
    if sender:
        query = query.where(Suppression.sender == normalise_sender(sender))
    if before is not None:
        query = query.where(Suppression.id < before)
    page = list(db.session.scalars(query.order_by(Suppression.id.desc()).limit(limit)))
    return {"suppressions": [payload(entry) for entry in page],
            "nextCursor": str(page[-1].id) if len(page) == limit else None}
