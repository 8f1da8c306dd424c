"""The pipeline's batch statements, called in process on a real database (both backends).

A batch of send results or receipts is one statement: these tests hold it to
what applying the rows one by one would do, including claims that changed
hands and receipts that repeat, conflict or would move a recipient backwards.
"""

from decimal import Decimal

import pytest
from flask import current_app
from sqlalchemy import select

from extensions import db
from models import Message, Recipient
from services.messaging import messages, queue
from services.messaging.providers import Outcome, ProviderReceipt, SubmitResult

PRICE = Decimal("0.0075")
ADMIN_ID = 1


def _recipients(message_id: int) -> list[Recipient]:
    db.session.expire_all()
    return list(db.session.scalars(
        select(Recipient).where(Recipient.message_id == message_id).order_by(Recipient.id)))


def _message(message_id: int) -> Message:
    db.session.expire_all()
    return db.session.get(Message, message_id)


def _sent_message(count: int, tag: str) -> tuple[int, list[str]]:
    """A message whose recipients are all SENT (version 3); returns it and their provider ids."""
    recipients = messages.read_recipients([f"+1555700{i:04d}" for i in range(count)])
    message_id = int(messages.create(ADMIN_ID, body=f"batch {tag}", recipients=recipients)["id"])
    claimed = queue.claim_batch("node-a", count)
    queue.record_outcomes("node-a", [(row, _accepted(f"sim-{tag}-{row.id}"))
                                     for row in claimed])
    return message_id, [f"sim-{tag}-{row.id}" for row in claimed]


def _state(message_id: int) -> list[tuple]:
    return [(r.status, r.version, r.error_code, r.error_message, r.delivered_at is not None)
            for r in _recipients(message_id)]


def _accepted(provider_id: str) -> SubmitResult:
    return SubmitResult(Outcome.ACCEPTED, provider_message_id=provider_id)


def _receipts(ids: list[str]) -> list[ProviderReceipt]:
    return [
        ProviderReceipt(ids[0], "FAILED", error_code="carrier_rejected",
                        error_message='Opérateur: "refusé"'),
        ProviderReceipt(ids[0], "DELIVERED"),
        ProviderReceipt(ids[1], "DELIVERED"),
        ProviderReceipt(ids[1], "DELIVERED"),
        ProviderReceipt(ids[2], "FAILED"),
        ProviderReceipt(ids[1], None, provider_status="sent"),
        ProviderReceipt("sim-nobody", "DELIVERED"),
    ]


def test_a_claim_taken_over_is_recorded_by_its_new_holder_only(queue_app):
    phones = [f"+1555600{i:04d}" for i in range(5)] + ["+15005550001"]
    message_id = int(messages.create(ADMIN_ID, body="takeover",
                                     recipients=messages.read_recipients(phones))["id"])
    first = queue.claim_batch("node-a", 10)
    taken = queue.claim_batch("node-b", 10)
    assert [row.id for row in taken] == [row.id for row in first]
    assert {row.version for row in taken} == {3}

    def results(rows, node):
        return [(row, _accepted(f"{node}-{row.id}") if row.phone != "+15005550001"
                 else SubmitResult(Outcome.REJECTED, error_code="invalid_number",
                                   error_message="Invalid phone number")) for row in rows]

    assert queue.record_outcomes("node-a", results(first, "a")) == []
    assert {(r.status, r.claimed_by, r.version) for r in _recipients(message_id)} == {
        ("SENDING", "node-b", 3)}
    assert _message(message_id).success_count == 0

    assert queue.record_outcomes("node-b", results(taken, "b")) == [message_id]
    stored = _recipients(message_id)
    assert [(r.status, r.version, r.provider_message_id) for r in stored] == [
        ("SENT", 4, f"b-{r.id}") for r in stored[:5]] + [("FAILED", 4, None)]
    assert stored[-1].error_code == "invalid_number" and stored[-1].cost == 0
    assert {r.cost for r in stored[:5]} == {PRICE}
    message = _message(message_id)
    assert (message.status, message.success_count, message.failed_count) == ("SENT", 5, 1)
    assert message.cost == 5 * PRICE


def test_a_restarted_node_offers_its_claims_again_without_moving_them_back(queue_app):
    queue_app.config["DISPATCH_CLAIM_TIMEOUT"] = 30.0
    recipients = messages.read_recipients(["+15556100001", "+15556100002"])
    message_id = int(messages.create(ADMIN_ID, body="restart", recipients=recipients)["id"])
    claimed = queue.claim_batch("node-a", 10)
    assert queue.claim_batch("node-b", 10) == []  # a fresh claim is not taken over
    assert queue.release_own_claims("node-a") == 2
    assert {(r.status, r.claimed_by) for r in _recipients(message_id)} == {("SENDING", None)}
    again = queue.claim_batch("node-b", 10)
    assert [row.id for row in again] == [row.id for row in claimed]
    assert [row.version for row in again] == [row.version + 1 for row in claimed]


def test_a_receipt_batch_does_what_the_receipts_one_by_one_would(queue_app):
    batched, batched_ids = _sent_message(4, "batch")
    single, single_ids = _sent_message(4, "single")
    assert queue.apply_receipts(_receipts(batched_ids)) == (3, {"sim-nobody"})
    applied = [queue.apply_receipts([receipt])[0] for receipt in _receipts(single_ids)]
    assert sum(applied) == 3
    expected = [("FAILED", 4, "carrier_rejected", 'Opérateur: "refusé"', False),
                ("DELIVERED", 4, None, None, True),
                ("FAILED", 4, "delivery_failed", "Delivery failed", False),
                ("SENT", 3, None, None, False)]
    assert _state(batched) == _state(single) == expected
    assert _message(batched).delivered_count == _message(single).delivered_count == 1


def test_a_repeated_receipt_batch_changes_nothing(queue_app):
    message_id, ids = _sent_message(4, "again")
    queue.apply_receipts(_receipts(ids))
    before, version = _state(message_id), _message(message_id).version
    assert queue.apply_receipts(_receipts(ids)) == (0, {"sim-nobody"})
    assert queue.apply_receipts([ProviderReceipt(i, "DELIVERED") for i in ids[:3]]) == (0, set())
    assert _state(message_id) == before
    assert _message(message_id).version == version


def test_a_message_update_reads_its_figures_and_its_counts_in_one_snapshot(queue_app,
                                                                           monkeypatch):
    """An outcome another node commits between the update's two reads shows in neither.

    Read in two snapshots, the final update of a message said ``failedCount`` 1 with no
    ``FAILED`` in its ``statusCounts``. SQLite is left out: one process's reads of it run
    without a switch to another greenlet, so nothing can commit between them.
    """
    if db.engine.dialect.name == "sqlite":
        pytest.skip("one process's SQLite reads cannot interleave with a commit")
    recipients = messages.read_recipients(["+15557100001", "+15557100002"])
    message_id = int(messages.create(ADMIN_ID, body="snapshot", recipients=recipients)["id"])
    claimed = queue.claim_batch("node-a", 2)
    db.session.close()
    read_counts = queue.status_counts

    def counts_then_a_failure_elsewhere(message_ids):
        counts = read_counts(message_ids)
        with current_app.app_context():  # another session, on another connection
            queue.record_outcomes("node-a", [(claimed[0], SubmitResult(Outcome.REJECTED))])
        return counts

    monkeypatch.setattr(queue, "status_counts", counts_then_a_failure_elsewhere)
    [(message, counts)] = queue.messages_with_counts({message_id})
    db.session.close()
    assert message.failed_count == counts.get("FAILED", 0) == 0
    assert _message(message_id).failed_count == 1  # the failure was committed meanwhile
