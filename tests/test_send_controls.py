"""Pause, resume and cancel: in process on both databases, then on two live nodes.

The live tests read the simulator's send log (``at`` is when a submission
reached the provider, wall clock) against the time the hub answered the
pause or the cancel: nothing of the message may reach the provider more than
a second later.
"""

import time
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from datetime import time as dt_time
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from extensions import db
from models import Message, Recipient
from services.auth import ROLE_ADMIN, Identity, create_user
from services.errors import Conflict, InvalidPayload, NotFound
from services.messaging import messages, queue, quiet_hours
from services.messaging.providers import Outcome, SubmitResult
from services.messaging.suppressions import ANY_SENDER, SendGate
from tests.fakes.eventlog import read_log
from tests.support import (
    all_recipients,
    app_on,
    eventually,
    migrate_database,
    register_user,
    seed_admin,
    wait_until_final,
)

ADMIN_ID = 1
NOON = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
ADMIN = Identity(user_id=ADMIN_ID, role=ROLE_ADMIN)


def _accepted(rows) -> list:
    """Each row accepted with a provider id of its own."""
    return [(row, SubmitResult(Outcome.ACCEPTED, f"p-{row.id}")) for row in rows]


@pytest.fixture
def app_context(database_url):
    """An app context on a migrated database with its seeded admin."""
    migrate_database(database_url)
    seed_admin(database_url)
    with app_on(database_url) as app:
        yield app


def _create(phones: list[str]) -> int:
    recipients = messages.read_recipients(phones)
    return int(messages.create(ADMIN_ID, body="controls", recipients=recipients)["id"])


def _statuses(message_id: int) -> tuple[str, Counter]:
    db.session.expire_all()
    message = db.session.get(Message, message_id)
    return message.status, Counter(db.session.scalars(
        select(Recipient.status).where(Recipient.message_id == message_id)))


def test_a_paused_message_is_not_claimed_until_resumed(app_context):
    paused = _create(["+15550001001", "+15550001002"])
    other = _create(["+15550001003"])
    assert messages.pause(ADMIN, paused)["status"] == "PAUSED"
    assert [row.message_id for row in queue.claim_batch("node-a", 10)] == [other]
    assert queue.claim_batch("node-a", 10) == []
    assert messages.resume(ADMIN, paused)["status"] == "SENDING"
    claimed = queue.claim_batch("node-a", 10)
    assert {row.message_id for row in claimed} == {paused}
    queue.record_outcomes("node-a", _accepted(claimed))
    assert _statuses(paused) == ("SENT", Counter({"SENT": 2}))


def test_a_batch_claimed_before_a_pause_is_given_back_unsent(app_context):
    message_id = _create(["+15550001011", "+15550001012"])
    claimed = queue.claim_batch("node-a", 10)
    gate = SendGate([row.phone for row in claimed], sender=ANY_SENDER,
                    message_ids={message_id})
    assert not gate.holds(message_id)
    messages.pause(ADMIN, message_id)
    gate._checked_at = float("-inf")  # the half second of freshness, elapsed
    assert gate.holds(message_id)
    queue.record_outcomes("node-a", [(row, queue.HELD) for row in claimed])
    assert _statuses(message_id) == ("PAUSED", Counter({"PENDING": 2}))
    assert queue.claim_batch("node-a", 10) == []
    messages.resume(ADMIN, message_id)
    assert len(queue.claim_batch("node-a", 10)) == 2


def test_cancel_ends_what_was_not_submitted_at_no_cost(app_context):
    message_id = _create([f"+1555000102{i}" for i in range(5)])
    claimed = queue.claim_batch("node-a", 3)
    answer = messages.cancel(ADMIN, message_id)
    assert answer["status"] == "CANCELED" and answer["completedAt"] is not None
    # Of the batch claimed before the cancel, one had been submitted, two were held back.
    queue.record_outcomes("node-a", _accepted(claimed[:1])
                          + [(row, queue.HELD) for row in claimed[1:]])
    assert _statuses(message_id) == ("CANCELED", Counter({"CANCELED": 4, "SENT": 1}))
    db.session.expire_all()
    message = db.session.get(Message, message_id)
    assert message.settled_count == 5 and message.success_count == 1
    assert message.cost == sum((r.cost for r in db.session.scalars(
        select(Recipient).where(Recipient.message_id == message_id))), Decimal("0"))
    assert {r.cost for r in db.session.scalars(select(Recipient).where(
        Recipient.message_id == message_id, Recipient.status == "CANCELED"))} == {0}
    assert queue.claim_batch("node-a", 10) == []


def test_a_status_that_does_not_allow_it_is_a_conflict_and_changes_nothing(app_context):
    message_id = _create(["+15550001031"])
    queue.record_outcomes("node-a", _accepted(queue.claim_batch("node-a", 10)))
    for control in (messages.pause, messages.resume, messages.cancel):
        with pytest.raises(Conflict) as refused:
            control(ADMIN, message_id)
        assert refused.value.details == {"status": "SENT"}
    canceled = _create(["+15550001032"])
    messages.cancel(ADMIN, canceled)
    with pytest.raises(Conflict):
        messages.retry(ADMIN, canceled)
    with pytest.raises(Conflict):
        messages.resume(ADMIN, canceled)
    assert _statuses(canceled) == ("CANCELED", Counter({"CANCELED": 1}))
    with pytest.raises(NotFound):
        messages.pause(Identity(user_id=ADMIN_ID + 99, role="user"), canceled)


def test_resuming_a_message_that_settled_while_paused_makes_it_final(app_context):
    message_id = _create(["+15550001041"])
    claimed = queue.claim_batch("node-a", 10)
    messages.pause(ADMIN, message_id)
    queue.record_outcomes("node-a", _accepted(claimed))
    assert _statuses(message_id)[0] == "PAUSED"
    assert messages.resume(ADMIN, message_id)["status"] == "SENT"


# A batch takes 2.5 s to submit (500 × 0.05 s / 10): longer than the promise, so the
# re-check before each submission is what keeps it.
NODES_ENV = {"SIMULATED_SMS_IDEMPOTENT": "false", "SIMULATED_SMS_LATENCY": "0.05",
             "SIMULATED_RECEIPT_DELAY": "0.2", "DISPATCH_CONCURRENCY": "10",
             "DISPATCH_BATCH_SIZE": "500", "DISPATCH_CLAIM_TIMEOUT": "30"}


def _two_nodes_sending(hub_factory, tmp_path, prefix: str):
    """Two nodes on PostgreSQL and Redis sending 2,000 recipients, once 500 reached the
    provider: (nodes, token, message id, phones, send log)."""
    send_log = tmp_path / "sent.jsonl"
    nodes = hub_factory.nodes(2, {**NODES_ENV, "SIMULATED_SMS_SEND_LOG": str(send_log)})
    token = register_user(nodes[0]).token
    phones = [f"+1555{prefix}{i:04d}" for i in range(2000)]
    answer = nodes[0].api.post("/api/messages", token, json={"body": "controls",
                                                             "recipients": phones})
    assert answer.status_code == 202
    eventually(lambda: len(read_log(send_log)) >= 500, timeout=60, interval=0.02)
    return nodes, token, answer.json()["id"], phones, send_log


def _sent_after(send_log, moment: float) -> list[dict]:
    return [entry for entry in read_log(send_log) if entry["at"] > moment]


def test_cancel_on_two_nodes_stops_every_submission_within_a_second(hub_factory, tmp_path):
    (first, second), token, message_id, phones, send_log = _two_nodes_sending(
        hub_factory, tmp_path, "661")
    answer = second.api.post(f"/api/messages/{message_id}/cancel", token)
    answered = time.time()
    assert answer.status_code == 200 and answer.json()["status"] == "CANCELED"
    time.sleep(3)
    assert _sent_after(send_log, answered + 1.0) == []
    submitted = Counter(entry["phone"] for entry in read_log(send_log))
    assert max(submitted.values()) == 1 and len(submitted) < len(phones)

    def settled():
        found = all_recipients(first, token, message_id)
        return found if not {"PENDING", "SENDING"} & {r["status"] for r in found} else None
    recipients = eventually(settled, timeout=20, interval=0.3)
    canceled = [r for r in recipients if r["status"] == "CANCELED"]
    sent = [r for r in recipients if r["status"] != "CANCELED"]
    assert len(canceled) == len(phones) - len(submitted)
    assert {r["phone"] for r in sent} == set(submitted)
    assert all(r["cost"] == 0 for r in canceled)
    message = first.api.get(f"/api/messages/{message_id}", token).json()
    assert message["status"] == "CANCELED"
    assert message["statusCounts"]["CANCELED"] == len(canceled)
    assert message["cost"] == pytest.approx(sum(r["cost"] for r in sent))


def test_pause_and_resume_on_two_nodes_send_each_recipient_once(hub_factory, tmp_path):
    (first, second), token, message_id, phones, send_log = _two_nodes_sending(
        hub_factory, tmp_path, "662")
    answer = first.api.post(f"/api/messages/{message_id}/pause", token)
    answered = time.time()
    assert answer.status_code == 200 and answer.json()["status"] == "PAUSED"
    time.sleep(3)
    assert _sent_after(send_log, answered + 1.0) == []
    assert len(read_log(send_log)) < len(phones)
    paused = second.api.get(f"/api/messages/{message_id}", token).json()
    assert paused["status"] == "PAUSED" and paused["statusCounts"].get("PENDING")
    assert second.api.post(f"/api/messages/{message_id}/resume", token).json()[
        "status"] == "SENDING"

    def final():
        message = first.api.get(f"/api/messages/{message_id}", token).json()
        return message if message["status"] == "SENT" else None
    message = eventually(final, timeout=60, interval=0.3)
    submitted = Counter(entry["phone"] for entry in read_log(send_log))
    assert set(submitted) == set(phones), message["statusCounts"]
    assert max(submitted.values()) == 1 and message["successCount"] == len(phones)


def test_the_controls_over_http_are_the_owners_and_refuse_what_the_status_forbids(sqlite_hub):
    owner, other = register_user(sqlite_hub), register_user(sqlite_hub)
    message_id = sqlite_hub.api.post("/api/messages", owner.token, json={
        "body": "controls", "recipients": ["+15556630001"]}).json()["id"]
    for action in ("pause", "resume", "cancel"):
        refused = sqlite_hub.api.post(f"/api/messages/{message_id}/{action}", other.token)
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found"

    def final():  # sent, and its receipt in: nothing else may change it
        message = sqlite_hub.api.get(f"/api/messages/{message_id}", owner.token).json()
        return message if message["status"] == "SENT" and message["deliveredCount"] else None
    before = eventually(final, timeout=20, interval=0.2)
    for action in ("pause", "resume", "cancel"):
        refused = sqlite_hub.api.post(f"/api/messages/{message_id}/{action}", owner.token)
        assert refused.status_code == 409, refused.text
        error = refused.json()["error"]
        assert error["code"] == "conflict" and error["details"] == {"status": "SENT"}
        assert "SENT" in error["message"]
    after = sqlite_hub.api.get(f"/api/messages/{message_id}", owner.token).json()
    assert after["version"] == before["version"] and after["status"] == "SENT"


def test_a_scheduled_message_sends_nothing_until_its_time_and_its_validity_starts_then(
        app_context):
    now = datetime.now(UTC)
    send_at = now + timedelta(days=2)
    recipients = messages.read_recipients(["+15550001051", "+15550001052"])
    created = messages.create(ADMIN_ID, body="later", recipients=recipients,
                              send_at=messages.read_send_at(
                                  (send_at.astimezone(timezone(timedelta(hours=-8)))
                                   .isoformat()), now=now))
    message_id = int(created["id"])
    assert created["status"] == "SCHEDULED"
    assert created["sendAt"] == send_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    for moment in (now, send_at - timedelta(seconds=1)):
        assert queue.claim_batch("node-a", 10, now=moment) == []
    # Two days waiting do not count against a validity of one.
    validity = app_context.config["SMS_VALIDITY_SECONDS"]
    assert queue.expire(now=now + timedelta(seconds=validity + 1)) == 0
    assert _statuses(message_id) == ("SCHEDULED", Counter({"PENDING": 2}))
    claimed = queue.claim_batch("node-a", 10, now=send_at)
    assert len(claimed) == 2 and _statuses(message_id)[0] == "SENDING"
    queue.record_outcomes("node-a", _accepted(claimed), now=send_at)
    assert _statuses(message_id) == ("SENT", Counter({"SENT": 2}))


def test_a_paused_scheduled_message_resumes_scheduled(app_context):
    recipients = messages.read_recipients(["+15550001061"])
    send_at = datetime.now(UTC) + timedelta(hours=1)
    message_id = int(messages.create(ADMIN_ID, body="later", recipients=recipients,
                                     send_at=send_at)["id"])
    assert messages.pause(ADMIN, message_id)["status"] == "PAUSED"
    assert queue.claim_batch("node-a", 10, now=send_at) == []
    assert messages.resume(ADMIN, message_id)["status"] == "SCHEDULED"
    assert messages.cancel(ADMIN, message_id)["status"] == "CANCELED"
    assert _statuses(message_id) == ("CANCELED", Counter({"CANCELED": 1}))


@pytest.mark.parametrize(("text", "problem"), [
    ("2026-12-01T09:00:00", "needs an offset"),
    ("tomorrow", "ISO 8601"),
    ("2026-11-30T11:59:54Z", "in the past"),
    ("2026-12-30T12:00:01+00:00", "more than 30 days ahead"),
])
def test_a_send_time_is_refused_naive_past_or_too_far(text, problem):
    with pytest.raises(InvalidPayload) as refused:
        messages.read_send_at(text, now=NOON)
    assert problem in refused.value.message and refused.value.details == {"sendAt": text}


def test_a_send_time_a_few_seconds_ago_is_now_and_the_limits_are_inclusive():
    assert messages.read_send_at("2026-11-30T11:59:55Z", now=NOON) is None
    assert messages.read_send_at(None, now=NOON) is None
    assert messages.read_send_at("2026-12-30T13:00:00+01:00", now=NOON) == NOON + timedelta(
        days=30)
    assert messages.read_send_at("2026-11-30T13:00:00+01:00", now=NOON) is None
    assert messages.read_send_at("2026-11-30T12:00:01.5+00:00", now=NOON) == NOON + timedelta(
        seconds=1.5)


def test_a_scheduled_message_over_http(sqlite_hub):
    user = register_user(sqlite_hub)
    send_at = (datetime.now(UTC) + timedelta(hours=3)).isoformat()
    answer = sqlite_hub.api.post("/api/messages", user.token, json={
        "body": "later", "recipients": ["+15556640001"], "sendAt": send_at})
    assert answer.status_code == 202 and answer.json()["status"] == "SCHEDULED"
    message_id = answer.json()["id"]
    time.sleep(1.5)
    shown = sqlite_hub.api.get(f"/api/messages/{message_id}", user.token).json()
    assert shown["status"] == "SCHEDULED" and shown["statusCounts"] == {"PENDING": 1}
    assert shown["sendAt"] == answer.json()["sendAt"]
    naive = sqlite_hub.api.post("/api/messages", user.token, json={
        "body": "later", "recipients": ["+15556640002"], "sendAt": "2030-01-01T09:00:00"})
    assert naive.status_code == 400 and naive.json()["error"]["code"] == "invalid_payload"
    assert "offset" in naive.json()["error"]["message"]


def test_a_messages_validity_over_http_and_what_is_refused(sqlite_hub):
    user = register_user(sqlite_hub)
    message = {"body": "valid a minute", "recipients": ["+15556640003"]}
    for validity in (-5, 0, "60", 1.5, 30 * 24 * 3600 + 1, True):
        refused = sqlite_hub.api.post("/api/messages", user.token,
                                      json={**message, "validitySeconds": validity})
        assert refused.status_code == 400, (validity, refused.text)
        error = refused.json()["error"]
        assert error["code"] == "invalid_payload" and "validitySeconds" in error["details"]
    assert sqlite_hub.api.get("/api/messages", user.token).json()["messages"] == []
    answer = sqlite_hub.api.post("/api/messages", user.token,
                                 json={**message, "validitySeconds": 60})
    assert answer.status_code == 202 and answer.json()["validitySeconds"] == 60
    shown = sqlite_hub.api.get(f"/api/messages/{answer.json()['id']}", user.token).json()
    assert shown["validitySeconds"] == 60


NIGHT = (dt_time(21, 0), dt_time(8, 0))
LOS_ANGELES, BERLIN = "+14155550100", "+4930123456"
# A +1 number whose area code settles nothing: every North American zone, Guam to St John's.
EVERYWHERE_IN_NANP = "+15005550006"


@pytest.fixture
def quiet_app(database_url):
    """``app_context`` with ``QUIET_HOURS=21:00-08:00``."""
    migrate_database(database_url)
    seed_admin(database_url)
    with app_on(database_url, QUIET_HOURS=NIGHT) as app:
        yield app


def _at_local(day, zone: str, hour: int) -> datetime:
    return datetime.combine(day, dt_time(hour), tzinfo=ZoneInfo(zone)).astimezone(UTC)


def _first_open_minute(zones, earliest: datetime) -> datetime:
    """Minute by minute: the first at which no zone's local time is in 21:00-08:00."""
    moment = earliest
    while any(not 8 <= moment.astimezone(ZoneInfo(zone)).hour < 21 for zone in zones):
        moment += timedelta(minutes=1)
    return moment


def test_quiet_hours_release_each_recipient_at_its_own_eight_oclock(quiet_app):
    # 05:00 UTC: night in Berlin (6 or 7 a.m.) and the evening before in Los Angeles.
    send_at = datetime.combine(datetime.now(UTC).date() + timedelta(days=2), dt_time(5),
                               tzinfo=UTC)
    recipients = messages.read_recipients([LOS_ANGELES, BERLIN, EVERYWHERE_IN_NANP])
    message_id = int(messages.create(ADMIN_ID, body="quiet", recipients=recipients,
                                     send_at=send_at, quiet=True)["id"])
    berlin = _at_local(send_at.date(), "Europe/Berlin", 8)
    los_angeles = _at_local(send_at.astimezone(ZoneInfo("America/Los_Angeles")).date()
                            + timedelta(days=1), "America/Los_Angeles", 8)
    everywhere = _first_open_minute(quiet_hours.zones_of(EVERYWHERE_IN_NANP), send_at)
    assert berlin < los_angeles and everywhere > los_angeles
    assert len(quiet_hours.zones_of(EVERYWHERE_IN_NANP)) > 10
    validity = quiet_app.config["SMS_VALIDITY_SECONDS"]
    assert queue.expire(now=send_at + timedelta(seconds=validity + 1)) == 0
    released = []
    for moment in (send_at, berlin - timedelta(seconds=1), berlin,
                   los_angeles - timedelta(seconds=1), los_angeles,
                   everywhere - timedelta(minutes=1), everywhere):
        claimed = queue.claim_batch("node-a", 10, now=moment)
        released.append([row.phone for row in claimed])
        queue.record_outcomes("node-a", _accepted(claimed), now=moment)
    assert released == [[], [], [BERLIN], [], [LOS_ANGELES], [], [EVERYWHERE_IN_NANP]]
    assert _statuses(message_id) == ("SENT", Counter({"SENT": 3}))


def test_a_backlog_that_reaches_a_recipient_inside_quiet_hours_waits_for_their_morning(quiet_app):
    # Released at 20:30 in Berlin, but its turn comes at 21:30 (a slow pace, a long queue).
    day = datetime.now(UTC).date() + timedelta(days=2)
    send_at = _at_local(day, "Europe/Berlin", 20) + timedelta(minutes=30)
    late_turn = send_at + timedelta(hours=1)
    morning = _at_local(day + timedelta(days=1), "Europe/Berlin", 8)
    message_id = int(messages.create(ADMIN_ID, body="quiet", send_at=send_at, quiet=True,
                                     recipients=messages.read_recipients([BERLIN]))["id"])
    validity = timedelta(seconds=quiet_app.config["SMS_VALIDITY_SECONDS"])
    assert queue.claim_batch("node-a", 10, now=late_turn) == []
    waiting = db.session.scalars(select(Recipient).where(Recipient.message_id == message_id)).one()
    assert (waiting.status, waiting.attempts, waiting.claimed_by) == ("PENDING", 0, None)
    assert waiting.not_before == morning
    # The night does not count against its validity.
    assert waiting.expires_at == send_at + validity + (morning - late_turn)
    assert queue.expire(now=send_at + validity + timedelta(seconds=1)) == 0
    assert queue.claim_batch("node-a", 10, now=morning - timedelta(seconds=1)) == []
    claimed = queue.claim_batch("node-a", 10, now=morning)
    assert [(row.phone, row.attempts) for row in claimed] == [(BERLIN, 1)]
    queue.record_outcomes("node-a", _accepted(claimed), now=morning)
    assert _statuses(message_id) == ("SENT", Counter({"SENT": 1}))


def test_a_number_whose_zones_never_all_leave_the_window_is_refused():
    # Eight hours apart each: any two share open hours (08:00-21:00 is 13), the three none.
    zones = ("UTC", "Etc/GMT-8", "Etc/GMT+8")
    assert quiet_hours.release_at(zones[:2], NIGHT, NOON) == NOON
    with pytest.raises(InvalidPayload) as refused:
        quiet_hours.release_at(zones, NIGHT, NOON)
    assert refused.value.details == {"timeZones": list(zones)}


def test_without_quiet_hours_asked_or_set_nothing_waits(app_context):
    night_in_berlin = datetime.combine(datetime.now(UTC).date() + timedelta(days=2),
                                       dt_time(2), tzinfo=UTC)
    for quiet in (False, True):  # QUIET_HOURS is unset here: quietHours holds nothing back
        recipients = messages.read_recipients([BERLIN])
        messages.create(ADMIN_ID, body="loud", recipients=recipients,
                        send_at=night_in_berlin, quiet=quiet)
        assert len(queue.claim_batch("node-a", 10, now=night_in_berlin)) == 1


def test_a_small_message_of_another_owner_goes_out_in_the_next_batch(app_context):
    many = _create([f"+1555000{i:04d}" for i in range(300)])
    other = create_user("fair@example.com", "correct horse battery").id
    small = int(messages.create(other, body="mine", recipients=messages.read_recipients(
        ["+15550009999"]))["id"])
    claimed = queue.claim_batch("node-a", 50)
    by_message = Counter(row.message_id for row in claimed)
    assert by_message[small] == 1 and by_message[many] >= 25
    # Alone again, the large one has the whole batch.
    queue.record_outcomes("node-a", _accepted(claimed))
    assert Counter(row.message_id for row in queue.claim_batch("node-a", 50)) == {many: 50}


def test_one_recipient_of_another_user_is_sent_within_two_seconds_beside_30000(hub_factory):
    hub = hub_factory({"DAILY_RECIPIENT_QUOTA": "100000"})
    big, small = register_user(hub), register_user(hub)
    for batch in range(3):
        phones = [f"+1555{batch}{i:06d}" for i in range(10_000)]
        assert hub.api.post("/api/messages", big.token, json={
            "body": "the big one", "recipients": phones}).status_code == 202
    posted = time.monotonic()
    answer = hub.api.post("/api/messages", small.token, json={"body": "mine",
                                                               "recipients": ["+15559990000"]})
    assert answer.status_code == 202
    message = wait_until_final(hub, small.token, answer.json()["id"], timeout=30)
    waited = time.monotonic() - posted
    assert message["status"] == "SENT" and waited < 2.0, waited
    # The big ones were still going out: the small one did not wait for them.
    queued = [hub.api.get(f"/api/messages/{listed['id']}", big.token).json()["statusCounts"]
              for listed in hub.api.get("/api/messages", big.token).json()["messages"]]
    assert sum(counts.get("PENDING", 0) for counts in queued) > 10_000, queued

