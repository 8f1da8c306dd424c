"""``message_daily_totals`` against the messages it sums, on both backends, in process.

The table is kept by triggers and filled by its migration's backfill; the
analytics figures read it instead of the messages. These tests drive the real
pipeline (create, claim, record outcomes, receipts) and hold every row of the
table to a sum computed here in Python from the message rows themselves.
"""

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import flask_migrate
import pytest
from sqlalchemy import delete, select

from extensions import db
from models import Message, MessageDailyTotal
from services import auth
from services.analytics import figures as analytics
from services.messaging import messages, queue
from services.messaging.providers import Outcome, ProviderReceipt, SubmitResult
from tests.support import app_on

COUNTERS = ("messages", "recipients", "success", "delivered", "failed", "cost",
            "segments_sent", "status_sending", "status_sent", "status_failed",
            "finished_success", "finished_delivered", "finished_failed", "status_scheduled",
            "status_paused", "status_canceled")


@pytest.fixture
def hub_app(database_url):
    """An app context on a database built by the migrations."""
    with app_on(database_url, DISPATCH_CLAIM_TIMEOUT=0.0) as app:
        flask_migrate.upgrade()
        yield app


def _expected() -> dict[tuple, dict[str, object]]:
    """Each owner's messages of each UTC day, summed here from the rows."""
    sums: dict[tuple, dict[str, object]] = defaultdict(
        lambda: {name: Decimal("0") if name == "cost" else 0 for name in COUNTERS})
    db.session.expire_all()
    for m in db.session.scalars(select(Message)):
        row = sums[(m.user_id, m.created_at.astimezone(UTC).date())]
        finished = m.status in ("SENT", "FAILED", "CANCELED")
        for name, value in (
                ("messages", 1), ("recipients", m.recipient_count),
                ("success", m.success_count), ("delivered", m.delivered_count),
                ("failed", m.failed_count), ("cost", m.cost),
                ("segments_sent", m.segments * m.success_count),
                ("status_sending", m.status == "SENDING"), ("status_sent", m.status == "SENT"),
                ("status_failed", m.status == "FAILED"),
                ("finished_success", m.success_count if finished else 0),
                ("finished_delivered", m.delivered_count if finished else 0),
                ("finished_failed", m.failed_count if finished else 0),
                ("status_scheduled", m.status == "SCHEDULED"),
                ("status_paused", m.status == "PAUSED"),
                ("status_canceled", m.status == "CANCELED")):
            row[name] += value
    return dict(sums)


def _stored() -> dict[tuple, dict[str, object]]:
    """The table's rows; a day left with no messages (moved or deleted) must be all zero."""
    rows = {}
    for total in db.session.scalars(select(MessageDailyTotal)):
        values = {name: getattr(total, name) for name in COUNTERS}
        if values["messages"] == 0:
            assert not any(values.values()), values
            continue
        rows[(total.user_id, total.day)] = values
    return rows


def _send_round(node: str, tag: str) -> list[str]:
    """Claim everything pending; every third recipient is refused. Returns accepted ids."""
    claimed = queue.claim_batch(node, 1000)
    outcomes = [(row, SubmitResult(Outcome.ACCEPTED, f"{tag}-{row.id}") if n % 3 else
                 SubmitResult(Outcome.REJECTED, error_code="invalid_number",
                              error_message="Refused"))
                for n, row in enumerate(claimed)]
    queue.record_outcomes(node, outcomes)
    return [result.provider_message_id for _, result in outcomes
            if result.outcome == Outcome.ACCEPTED]


def _activity(users: list[int], tag: str) -> None:
    """Messages of several users through the whole pipeline, some left in flight."""
    for n, user_id in enumerate(users):
        for size in (1, 3, 4):
            messages.create(user_id, body=f"{tag} {'é' * n} " * (size * 20),
                            recipients=messages.read_recipients(
                                [f"+1555{user_id:03d}{size}{i:03d}" for i in range(size)]))
    accepted = _send_round("node-a", tag)
    queue.apply_receipts([ProviderReceipt(pid, "DELIVERED") for pid in accepted[::2]] +
                         [ProviderReceipt(pid, "FAILED", error_code="carrier",
                                          error_message="Lost")
                          for pid in accepted[1::4]])
    messages.create(users[0], body=f"{tag} still in flight",
                    recipients=messages.read_recipients(["+15559990001", "+15559990002"]))


def _move_back(message_ids: list[int], days: int) -> None:
    for message in db.session.scalars(select(Message).where(Message.id.in_(message_ids))):
        message.created_at -= timedelta(days=days)
    db.session.commit()


def test_backfill_and_triggers_keep_the_totals_equal_to_the_messages(hub_app):
    users = [auth.create_user(f"totals{n}@example.com", "a long password 1").id
             for n in range(3)]
    _activity(users, "before")
    # Two messages on earlier days, and one of another day.
    _move_back([1, 2], days=3)

    # Back to before the table, and up again: migration 0003 fills it from the
    # messages that today's code wrote (which the code of 0002 could not write
    # any more: sending now reads the table).
    db.session.remove()
    flask_migrate.downgrade(revision="0002")
    flask_migrate.upgrade()
    backfilled = _stored()
    assert backfilled == _expected()
    assert len({day for _, day in backfilled}) == 2 and len(backfilled) > 3

    _activity(users, "after")
    queue.apply_receipts([ProviderReceipt(f"after-{n}", "DELIVERED") for n in range(200)])
    # A message moved to another day, and one deleted (as a cascade from its user would).
    _move_back([4], days=40)
    db.session.execute(delete(Message).where(Message.id == 5))
    db.session.commit()
    stored = _stored()
    assert stored == _expected()
    assert stored != backfilled
    # The first round's message in flight was sent by the second round.
    assert sum(row["status_sending"] for row in stored.values()) == 1
    assert sum(row["finished_delivered"] for row in stored.values()) > 0


def test_the_figures_read_from_the_totals_match_the_messages(hub_app):
    users = [auth.create_user(f"figures{n}@example.com", "a long password 1").id
             for n in range(2)]
    _activity(users, "figures")
    figures = analytics.figures_for_many(users)
    for user_id in users:
        mine = [m for m in db.session.scalars(select(Message)) if m.user_id == user_id]
        finished = [m for m in mine if m.status != "SENDING"]
        dashboard = figures[user_id]["dashboard_stats"]
        assert dashboard["messagesTotal"] == dashboard["messagesToday"] == len(mine) > 0
        assert dashboard["recipientsTotal"] == sum(m.recipient_count for m in mine)
        assert dashboard["sent"] == sum(m.success_count for m in mine)
        assert dashboard["delivered"] == sum(m.delivered_count for m in mine) > 0
        assert dashboard["failed"] == sum(m.failed_count for m in mine) > 0
        assert dashboard["costTotal"] == dashboard["costMonth"] == float(
            sum(m.cost for m in mine))
        in_flight = len(mine) - len(finished)
        assert dashboard["inFlight"] == in_flight == (1 if user_id == users[0] else 0)
        by_status = figures[user_id]["message_stats"]["recipientsByStatus"]
        assert by_status["DELIVERED"] == sum(m.delivered_count for m in mine)
        assert by_status["FAILED"] == sum(m.failed_count for m in finished)
        assert by_status["PENDING"] == 2 * in_flight
        today = figures[user_id]["usage_stats"]["daily"][-1]
        assert today["segments"] == sum(m.segments * m.success_count for m in mine)
    everyone = analytics.dashboard_stats(None)
    assert everyone["messagesTotal"] == sum(
        figures[u]["dashboard_stats"]["messagesTotal"] for u in users)


def test_scheduled_paused_and_canceled_messages_count_as_such(hub_app):
    user = auth.create_user("controls@example.com", "a long password 1").id

    def create(phones, **options) -> Message:
        created = messages.create(user, body="controlled",
                                  recipients=messages.read_recipients(phones), **options)
        return db.session.get(Message, int(created["id"]))

    create(["+15557770001"], send_at=datetime.now(UTC) + timedelta(hours=2))
    paused = create(["+15557770002", "+15557770003", "+15557770004"])
    claimed = queue.claim_batch("node-a", 1)
    queue.record_outcomes("node-a", [(claimed[0], SubmitResult(Outcome.ACCEPTED, "paused-1"))])
    assert queue.pause(paused)
    assert queue.cancel(create(["+15557770005"]))

    figures = analytics.figures_for_many([user])[user]
    assert figures["message_stats"]["messagesByStatus"] == {
        "SCHEDULED": 1, "SENDING": 0, "PAUSED": 1, "SENT": 0, "FAILED": 0, "CANCELED": 1}
    dashboard = figures["dashboard_stats"]
    assert (dashboard["scheduled"], dashboard["paused"], dashboard["inFlight"]) == (1, 1, 0)
    # A paused message is not final: its recipients are read from their rows, the one
    # sent and the two still waiting; the scheduled message's one waits too.
    recipients = figures["message_stats"]["recipientsByStatus"]
    assert (recipients["PENDING"], recipients["SENT"]) == (3, 1)
    assert _stored() == _expected()
