"""The five outcomes, receipts per part, validity, receipt timeout and retry, in process.

Called on a real database (both backends) with the clock passed in (``now=``)
where time matters, so an hour or three days pass in a statement.
"""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy import text as sa_text

from extensions import db
from models import Message, Recipient
from services import auth
from services.messaging import messages, queue
from services.messaging.providers import Outcome, ProviderReceipt, SubmitResult
from tests.support import app_on, migrate_database, seed_admin

PRICE = Decimal("0.0075")
ADMIN_ID = 1


@pytest.fixture
def app_context(database_url):
    """An app context on a migrated database; every claim is stale at once (timeout 0)."""
    migrate_database(database_url)
    seed_admin(database_url)
    with app_on(database_url, DISPATCH_CLAIM_TIMEOUT=0.0) as app:
        yield app


def _recipients(message_id: int) -> dict[str, Recipient]:
    db.session.expire_all()
    return {r.phone: r for r in db.session.scalars(
        select(Recipient).where(Recipient.message_id == message_id))}


def _message(message_id: int) -> Message:
    db.session.expire_all()
    return db.session.get(Message, message_id)


def _create(phones: list[str], body: str = "hello") -> int:
    recipients = messages.read_recipients(phones)
    return int(messages.create(ADMIN_ID, body=body, recipients=recipients)["id"])


def _submit(node: str, answers: dict[str, SubmitResult], now: datetime | None = None,
            exactly_once: bool = True) -> list[int]:
    claimed = queue.claim_batch(node, 100, exactly_once=exactly_once, now=now)
    return queue.record_outcomes(node, [(row, answers[row.phone]) for row in claimed], now=now)


def test_each_outcome_ends_in_its_status_with_its_cost(app_context):
    answers = {
        "+15550000001": SubmitResult(Outcome.ACCEPTED, "p-1", parts=2, provider_status="queued"),
        "+15550000002": SubmitResult(Outcome.REJECTED, provider_error_code="21211",
                                     provider_status="failed"),
        "+15550000003": SubmitResult(Outcome.THROTTLED, retry_after=30),
        "+15550000004": SubmitResult(Outcome.OPTED_OUT, provider_error_code="21610"),
        "+15550000005": SubmitResult(Outcome.UNKNOWN),
    }
    message_id = _create(list(answers))
    now = datetime.now(UTC)
    assert _submit("node-a", answers, now) == []
    stored = _recipients(message_id)
    view = {phone: (r.status, r.error_code, r.provider_error_code, r.cost, r.parts)
            for phone, r in stored.items()}
    assert view == {
        "+15550000001": ("SENT", None, None, 2 * PRICE, 2),
        "+15550000002": ("FAILED", "rejected", "21211", 0, 1),
        "+15550000003": ("PENDING", None, None, 0, None),
        "+15550000004": ("SUPPRESSED", "opted_out", "21610", 0, 1),
        "+15550000005": ("UNKNOWN", "ambiguous_submit", None, 0, 1),
    }
    assert stored["+15550000003"].not_before == now + timedelta(seconds=30)
    message = _message(message_id)
    assert (message.status, message.settled_count, message.success_count,
            message.failed_count, message.cost) == ("SENDING", 4, 1, 1, 2 * PRICE)
    # Throttled: not claimed before its time, then sent like any other.
    assert queue.claim_batch("node-a", 100, now=now + timedelta(seconds=29)) == []
    answers["+15550000003"] = SubmitResult(Outcome.ACCEPTED, "p-3")
    assert _submit("node-a", answers, now + timedelta(seconds=31)) == [message_id]
    message = _message(message_id)
    assert (message.status, message.success_count, message.cost) == ("SENT", 2, 3 * PRICE)


def test_a_message_with_nothing_accepted_is_failed(app_context):
    message_id = _create(["+15550000011", "+15550000012"])
    assert _submit("node-a", {"+15550000011": SubmitResult(Outcome.UNKNOWN),
                              "+15550000012": SubmitResult(Outcome.OPTED_OUT)}) == [message_id]
    assert _message(message_id).status == "FAILED"


def test_a_marked_claim_taken_over_becomes_unknown_and_an_unmarked_one_is_sent(app_context):
    message_id = _create(["+15550000021", "+15550000022", "+15550000023"])
    first = queue.claim_batch("node-a", 10, exactly_once=False)
    ids = {row.phone: row.id for row in first}
    assert queue.mark_submitting("node-a", [ids["+15550000021"]]) == {ids["+15550000021"]}
    assert queue.mark_submitting("node-a", [ids["+15550000021"]]) == set(), "marked once only"
    taken = queue.claim_batch("node-b", 10, exactly_once=False)
    assert sorted(row.phone for row in taken) == ["+15550000022", "+15550000023"]
    # node-a may no longer submit what node-b holds now.
    assert queue.mark_submitting("node-a", [ids["+15550000022"]]) == set()
    stored = _recipients(message_id)
    assert (stored["+15550000021"].status, stored["+15550000021"].error_code) == (
        "UNKNOWN", "ambiguous_submit")
    assert {stored[p].claimed_by for p in ("+15550000022", "+15550000023")} == {"node-b"}


def test_a_provider_that_deduplicates_gets_a_marked_claim_again(app_context):
    _create(["+15550000031"])
    first = queue.claim_batch("node-a", 10, exactly_once=False)
    queue.mark_submitting("node-a", [first[0].id])
    assert [row.id for row in queue.claim_batch("node-b", 10, exactly_once=True)] == [
        first[0].id]


def test_a_restarted_node_leaves_what_it_may_have_submitted_unknown(app_context):
    app_context.config["DISPATCH_CLAIM_TIMEOUT"] = 30.0
    message_id = _create(["+15550000041", "+15550000042"])
    claimed = queue.claim_batch("node-a", 10, exactly_once=False)
    queue.mark_submitting("node-a", [claimed[0].id])
    assert queue.release_own_claims("node-a", exactly_once=False) == 1
    stored = _recipients(message_id)
    assert stored[claimed[0].phone].status == "UNKNOWN"
    assert [row.id for row in queue.claim_batch("node-b", 10, exactly_once=False)] == [
        claimed[1].id]


def test_parts_settle_the_recipient_when_all_are_final(app_context):
    phones = ["+15550000051", "+15550000052"]
    message_id = _create(phones, body="x" * 400)  # three GSM-7 segments
    _submit("node-a", {
        phones[0]: SubmitResult(Outcome.ACCEPTED, part_ids=("0A", "0B", "0C"), parts=3),
        phones[1]: SubmitResult(Outcome.ACCEPTED, part_ids=("1A", "1B", "1C"), parts=3)})
    stored = _recipients(message_id)
    assert (stored[phones[0]].provider_message_id, stored[phones[0]].cost) == ("0A", 3 * PRICE)
    # Out of order, duplicated, an intermediate one that changes nothing.
    assert queue.apply_receipts([
        ProviderReceipt("0C", "DELIVERED", provider_status="DELIVRD"),
        ProviderReceipt("0A", "DELIVERED", provider_status="DELIVRD"),
        ProviderReceipt("0A", "DELIVERED", provider_status="DELIVRD"),
        ProviderReceipt("1B", "FAILED", provider_status="UNDELIV", provider_error_code="0x0b"),
        ProviderReceipt("1A", "DELIVERED", provider_status="DELIVRD"),
        ProviderReceipt("0B", None, provider_status="ENROUTE"),
    ]) == (0, set())
    assert {r.status for r in _recipients(message_id).values()} == {"SENT"}
    assert queue.apply_receipts([ProviderReceipt("0B", "DELIVERED"),
                                 ProviderReceipt("1C", "DELIVERED")])[0] == 2
    stored = _recipients(message_id)
    assert stored[phones[0]].status == "DELIVERED"
    assert (stored[phones[1]].status, stored[phones[1]].provider_status,
            stored[phones[1]].provider_error_code) == ("FAILED", "UNDELIV", "0x0b")
    assert stored[phones[1]].cost == 3 * PRICE, "undelivered keeps its cost"
    # A final part never changes, and a settled recipient stays settled.
    assert queue.apply_receipts([ProviderReceipt("1B", "DELIVERED")]) == (0, set())
    assert _message(message_id).delivered_count == 1


def test_an_ambiguous_submit_proved_accepted_by_a_receipt_counts_its_cost(app_context):
    message_id = _create(["+15550000061"])
    assert _submit("node-a", {"+15550000061": SubmitResult(Outcome.UNKNOWN)}) == [message_id]
    assert (_message(message_id).status, _message(message_id).cost) == ("FAILED", 0)
    recipient = _recipients(message_id)["+15550000061"]
    assert queue.apply_receipts([ProviderReceipt("late-1", "DELIVERED",
                                                 recipient_id=recipient.id)])[0] == 1
    recipient = _recipients(message_id)["+15550000061"]
    assert (recipient.status, recipient.provider_message_id, recipient.cost,
            recipient.error_code) == ("DELIVERED", "late-1", PRICE, None)
    message = _message(message_id)
    assert (message.status, message.success_count, message.cost) == ("SENT", 1, PRICE)


def test_an_unbilled_failure_costs_nothing(app_context):
    message_id = _create(["+15550000071"])
    _submit("node-a", {"+15550000071": SubmitResult(Outcome.ACCEPTED, "tw-1")})
    assert queue.apply_receipts([ProviderReceipt("tw-1", "FAILED", provider_status="failed",
                                                 provider_error_code="30008",
                                                 billable=False)])[0] == 1
    assert _recipients(message_id)["+15550000071"].cost == 0
    assert _message(message_id).cost == 0


def test_a_recipient_past_its_validity_expires_unsent(app_context):
    message_id = _create(["+15550000081"])
    later = datetime.now(UTC) + timedelta(seconds=app_context.config["SMS_VALIDITY_SECONDS"] + 1)
    assert queue.claim_batch("node-a", 10, now=later) == [], "never claimed once expired"
    assert queue.expire(now=later) == 1
    recipient = _recipients(message_id)["+15550000081"]
    assert (recipient.status, recipient.error_code, recipient.cost) == ("EXPIRED", "expired", 0)
    assert _message(message_id).status == "FAILED"


def test_a_messages_own_validity_overrides_the_setting_and_holds_again_for_a_retry(
        app_context):
    now = datetime.now(UTC)
    short = int(messages.create(ADMIN_ID, body="soon or never", validity_seconds=60,
                                recipients=messages.read_recipients(["+15550000082"]))["id"])
    default = _create(["+15550000083"])
    assert queue.expire(now=now + timedelta(seconds=55)) == 0
    claimed = queue.claim_batch("node-a", 10, now=now + timedelta(seconds=65))
    assert [row.phone for row in claimed] == ["+15550000083"], "the expired one is not sent"
    assert queue.expire(now=now + timedelta(seconds=65)) == 1
    assert _recipients(short)["+15550000082"].status == "EXPIRED"
    assert _recipients(default)["+15550000083"].status == "SENDING"
    # A retry gives it the message's 60 s again, from the retry on.
    assert queue.retry(_message(short), now=now + timedelta(seconds=100)) == 1
    assert queue.expire(now=now + timedelta(seconds=155)) == 0
    assert queue.expire(now=now + timedelta(seconds=165)) == 1
    assert _message(short).validity_seconds == 60
    assert _message(default).validity_seconds == app_context.config["SMS_VALIDITY_SECONDS"]


def test_no_receipt_in_time_is_unknown_and_a_late_receipt_still_settles(app_context):
    message_id = _create(["+15550000091"])
    now = datetime.now(UTC)
    _submit("node-a", {"+15550000091": SubmitResult(Outcome.ACCEPTED, "r-1")}, now)
    timeout = timedelta(seconds=app_context.config["RECEIPT_TIMEOUT_SECONDS"])
    assert queue.time_out_receipts(now=now + timeout - timedelta(seconds=1)) == 0
    assert queue.time_out_receipts(now=now + timeout) == 1
    recipient = _recipients(message_id)["+15550000091"]
    assert (recipient.status, recipient.error_code, recipient.cost) == (
        "UNKNOWN", "no_receipt", PRICE)
    assert queue.apply_receipts([ProviderReceipt("r-1", "DELIVERED")])[0] == 1
    assert _recipients(message_id)["+15550000091"].status == "DELIVERED"
    message = _message(message_id)
    assert (message.success_count, message.delivered_count, message.cost) == (1, 1, PRICE)


def test_retry_queues_unknown_expired_and_retryable_failed_only(app_context):
    phones = ["+15550000101", "+15550000102", "+15550000103", "+15550000104"]
    message_id = _create(phones)
    _submit("node-a", {
        phones[0]: SubmitResult(Outcome.UNKNOWN),
        phones[1]: SubmitResult(Outcome.REJECTED, error_code="provider_unavailable",
                                retryable=True),
        phones[2]: SubmitResult(Outcome.REJECTED, error_code="invalid_number"),
        phones[3]: SubmitResult(Outcome.ACCEPTED, "ok-1")})
    before = {phone: r.version for phone, r in _recipients(message_id).items()}
    assert _message(message_id).status == "SENT"
    assert queue.retry(_message(message_id)) == 2
    after = _recipients(message_id)
    assert {p: after[p].status for p in phones} == {
        phones[0]: "PENDING", phones[1]: "PENDING", phones[2]: "FAILED", phones[3]: "SENT"}
    assert after[phones[0]].version == before[phones[0]] + 1
    message = _message(message_id)
    assert (message.status, message.settled_count, message.failed_count) == ("SENDING", 2, 1)
    _submit("node-a", {phones[0]: SubmitResult(Outcome.ACCEPTED, "ok-2"),
                       phones[1]: SubmitResult(Outcome.ACCEPTED, "ok-3")})
    message = _message(message_id)
    assert (message.status, message.success_count, message.failed_count, message.cost) == (
        "SENT", 3, 1, 3 * PRICE)
    assert queue.retry(message) == 0


def test_the_pace_spaces_slots_halves_when_throttled_and_recovers():
    from services.messaging.pace import LocalTimeline, Pace

    clock = [100.0]
    pace = Pace(10.0, LocalTimeline(lambda: clock[0]), "k", clock=lambda: clock[0])
    waits = [pace.timeline.reserve("k", 1 / (pace.rate * pace.factor())) for _ in range(3)]
    assert waits == pytest.approx([0.0, 0.1, 0.2])
    pace.throttled()
    assert pace.factor() == pytest.approx(0.5)
    pace.throttled()
    assert pace.factor() == pytest.approx(0.25)
    clock[0] += 5
    assert pace.factor() == pytest.approx(0.25 * 1.1 ** 5)
    clock[0] += 60
    assert pace.factor() == 1.0


def test_a_pace_woken_late_takes_a_new_slot_rather_than_bursting(monkeypatch):
    from services.messaging import pace as pace_module

    clock = [100.0]
    timeline = pace_module.LocalTimeline(lambda: clock[0])
    pace = pace_module.Pace(10.0, timeline, "k", clock=lambda: clock[0])
    overslept = iter([0.3, 0.0])

    def sleep(seconds):
        clock[0] += seconds + next(overslept)
    monkeypatch.setattr(pace_module.gevent, "sleep", sleep)
    timeline.reserve("k", 0.1)  # another submission holds the slot now
    pace.wait()
    # Its first slot (at 100.1) was 0.3 s gone when it woke: it took the next free one
    # (now), so the timeline moved past both.
    assert clock[0] == pytest.approx(100.4)
    assert timeline.reserve("k", 0.1) == pytest.approx(0.1)


def test_recipients_queued_before_the_validity_column_expire_after_the_setting(database_url):
    """Migration 0010: a queued recipient's start of validity becomes its expiry."""
    import flask_migrate

    became_sendable = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    with app_on(database_url, SMS_VALIDITY_SECONDS=3600.0) as app:
        flask_migrate.upgrade(revision="0009")
        owner_id = auth.create_user("old@example.com", "a long password 1").id
        message_id = db.session.execute(sa_text(
            "INSERT INTO messages (user_id, body, status, recipient_count, success_count, "
            "failed_count, delivered_count, cost, version, created_at, updated_at, encoding, "
            "segments, settled_count, quiet_hours) VALUES (:user, 'old', 'SENDING', 2, 1, 0, 0, "
            "0, 1, :at, :at, 'GSM-7', 1, 1, false) RETURNING id"),
            {"user": owner_id, "at": became_sendable}).scalar_one()
        for phone, status in (("+15550000084", "PENDING"), ("+15550000085", "SENT")):
            db.session.execute(sa_text(
                "INSERT INTO recipients (message_id, phone, status, cost, version, attempts, "
                "updated_at, first_sendable_at, retryable, price_per_segment) VALUES "
                "(:message, :phone, :status, 0, 1, 0, :at, :at, false, 0.0075)"),
                {"message": message_id, "phone": phone, "status": status,
                 "at": became_sendable})
        db.session.commit()
        flask_migrate.upgrade()
        stored = _recipients(message_id)
        assert stored["+15550000084"].expires_at == became_sendable + timedelta(hours=1)
        assert stored["+15550000085"].expires_at is None
        assert _message(message_id).validity_seconds is None
        assert app.config["SMS_VALIDITY_SECONDS"] == 3600.0


def test_a_batch_of_progress_words_is_one_commit_applied_in_order(app_context):
    from sqlalchemy import event

    from services.messaging import provider_statuses

    answers = {f"+1555000001{i}": SubmitResult(Outcome.ACCEPTED, f"p-{i}") for i in range(3)}
    message_id = _create(list(answers))
    _submit("node-a", answers)
    commits = []
    session = db.session()

    def committed(_session) -> None:
        commits.append(1)
    event.listen(session, "after_commit", committed)
    try:
        words = [provider_statuses.Progress("ACCEPTD", ("ENROUTE",), f"p-{i}") for i in range(3)]
        # The same recipient twice: the later word replaces the earlier, as one by one.
        words.append(provider_statuses.Progress("ENROUTE", ("ACCEPTD",), "p-0"))
        # A word that may not replace the current one changes nothing.
        words.append(provider_statuses.Progress("ACCEPTD", ("UNDELIV",), "p-1"))
        assert provider_statuses.record_progress(words) == 4
    finally:
        event.remove(session, "after_commit", committed)
    assert len(commits) == 1
    assert {phone: r.provider_status for phone, r in _recipients(message_id).items()} == {
        "+15550000010": "ENROUTE", "+15550000011": "ACCEPTD", "+15550000012": "ACCEPTD"}
