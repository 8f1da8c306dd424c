"""Two-way SMS: inbound messages live and listed, STOP/START/HELP, the suppression list
enforced before every submission, and erasure of a person's number."""

import json
import random
import time

import pytest
from sqlalchemy import String, Text, create_engine, inspect, text

from services.messaging.inbound import keyword_of
from tests.fakes.eventlog import read_log
from tests.support import (
    REDIS_URL,
    eventually,
    redis_reachable,
    register_user,
    require_service,
    sent_phones,
    sql_scalar,
)

HUB_NUMBER = "+15005550006"  # SIMULATED_SMS_FROM's default


@pytest.mark.parametrize(("body", "keyword"), [
    ("STOP", "STOP"), ("Stop", "STOP"), (" stop ", "STOP"), ("STOPALL", "STOP"),
    ("unsubscribe", "STOP"), ("Cancel", "STOP"), ("END", "STOP"), ("quit", "STOP"),
    ("REVOKE", "STOP"), ("optout", "STOP"), ("Opt Out", "STOP"), ("OPT\tOUT\n", "STOP"),
    ("START", "START"), ("unstop", "START"), ("Yes", "START"),
    ("HELP", "HELP"), ("info", "HELP"),
    ("stop please", None), ("STOP!", None), ("STOPP", None), ("", None), ("yes please", None),
    ("ＳＴＯＰ", None),
])
def test_a_keyword_is_the_whole_message_in_any_case_and_spacing(body, keyword):
    assert keyword_of(body) == keyword


def _phone():
    return f"+1555{random.randrange(10**7):07d}"


def _send(api, user, recipients, body="Hello there"):
    response = api.post("/api/messages", user.token, json={"body": body, "recipients": recipients})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def _recipients_when_final(api, user, message_id):
    def final():
        message = api.get(f"/api/messages/{message_id}", user.token).json()
        return message if message["status"] != "SENDING" else None
    message = eventually(final, timeout=15)
    page = api.get(f"/api/messages/{message_id}/recipients?limit=1000", user.token).json()
    return message, {r["phone"]: r for r in page["recipients"]}


def _inject(api, admin, sender, body, **extra):
    response = api.post("/api/simulator/inbound", admin.token,
                        json={"from": sender, "body": body, **extra})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.mark.parametrize("stop", ["Stop", " stop ", "STOPALL", "opt out"])
def test_stop_suppresses_the_number_and_start_lets_the_next_message_out(hub, api, user, admin,
                                                                        stop):
    phone = _phone()
    _recipients_when_final(api, user, _send(api, user, [phone]))
    assert sent_phones(hub.send_log).count(phone) == 1

    inbound = _inject(api, admin, phone, stop)
    assert inbound["keyword"] == "STOP" and inbound["from"] == phone
    message, recipients = _recipients_when_final(api, user, _send(api, user, [phone]))
    suppressed = recipients[phone]
    assert suppressed["status"] == "SUPPRESSED" and suppressed["errorCode"] == "opted_out"
    assert suppressed["cost"] == 0 and message["cost"] == 0
    assert sent_phones(hub.send_log).count(phone) == 1

    assert _inject(api, admin, phone, "start")["keyword"] == "START"
    _, recipients = _recipients_when_final(api, user, _send(api, user, [phone]))
    assert recipients[phone]["status"] in ("SENT", "DELIVERED")
    assert sent_phones(hub.send_log).count(phone) == 2


def test_start_does_not_lift_an_admins_entry(hub, api, user, admin):
    phone = _phone()
    added = api.post("/api/suppressions", admin.token, json={"phone": phone})
    assert added.status_code == 201, added.text
    assert added.json() == {"phone": phone, "sender": "*", "reason": "manual",
                            "createdAt": added.json()["createdAt"]}
    _inject(api, admin, phone, "START")
    _, recipients = _recipients_when_final(api, user, _send(api, user, [phone]))
    assert recipients[phone]["status"] == "SUPPRESSED"
    assert phone not in sent_phones(hub.send_log)


def test_suppressions_are_listed_filtered_and_removed_by_admins(api, user, admin):
    phone = _phone()
    _inject(api, admin, phone, "STOP")
    assert api.post("/api/suppressions", admin.token,
                    json={"phone": phone, "sender": "ALERTS"}).status_code == 201
    listed = api.get("/api/suppressions", admin.token, params={"phone": phone}).json()
    assert {(s["sender"], s["reason"]) for s in listed["suppressions"]} == {
        (HUB_NUMBER, "keyword"), ("ALERTS", "manual")}
    assert api.get("/api/suppressions", user.token).status_code == 403
    removed = api.request("DELETE", f"/api/suppressions/{phone}", admin.token,
                          params={"sender": "ALERTS"})
    assert removed.json() == {"removed": 1}
    listed = api.get("/api/suppressions", admin.token,
                     params={"phone": phone}).json()["suppressions"]
    assert [s["sender"] for s in listed] == [HUB_NUMBER]
    assert api.request("DELETE", f"/api/suppressions/{phone}", admin.token).json() == {
        "removed": 1}
    bad = api.post("/api/suppressions", admin.token, json={"phone": "12"})
    assert bad.status_code == 400


def test_help_gets_exactly_one_reply_even_when_the_provider_repeats_it(hub, api, admin):
    phone = _phone()
    first = _inject(api, admin, phone, "help", providerMessageId=f"SM{phone[1:]}")
    again = _inject(api, admin, phone, "help", providerMessageId=f"SM{phone[1:]}")
    assert first == again and first["keyword"] == "HELP"
    eventually(lambda: phone in sent_phones(hub.send_log))
    _inject(api, admin, phone, "what is this")  # no keyword: no reply
    listed = api.get("/api/inbound?limit=100", admin.token).json()["inbound"]
    assert [m["body"] for m in listed if m["from"] == phone] == ["what is this", "help"]
    assert sent_phones(hub.send_log).count(phone) == 1


def test_inbound_reaches_the_owner_of_the_latest_message_and_admins_only(hub, api, connect,
                                                                         make_user, admin):
    owner, other = make_user(), make_user()
    phone = _phone()
    _recipients_when_final(api, owner, _send(api, owner, [phone]))
    sockets = {name: connect(person.token)
               for name, person in (("owner", owner), ("other", other), ("admin", admin))}
    inbound = _inject(api, admin, phone, "Thanks, see you at 5")
    assert "keyword" not in inbound
    for name in ("owner", "admin"):
        assert sockets[name].wait_for("inbound_message", lambda m: m["id"] == inbound["id"]) \
            == inbound
    sockets["other"].call("get_rooms")  # a round trip: anything sent before it has arrived
    assert not [m for m in sockets["other"].received("inbound_message")
                if m["id"] == inbound["id"]]
    assert inbound["id"] in [m["id"] for m in api.get("/api/inbound", owner.token).json()[
        "inbound"]]
    assert inbound["id"] not in [m["id"] for m in api.get("/api/inbound?limit=100",
                                                          other.token).json()["inbound"]]


def test_inbound_is_paged_newest_first(api, admin):
    phone = _phone()
    ids = [_inject(api, admin, phone, f"reply {n}")["id"] for n in range(3)]
    first = api.get("/api/inbound?limit=2", admin.token).json()
    assert [m["id"] for m in first["inbound"]] == ids[::-1][:2]
    rest = api.get(f"/api/inbound?limit=2&before={first['nextCursor']}", admin.token).json()
    assert rest["inbound"][0]["id"] == ids[0]


def test_unparseable_sender_is_stored_flagged_and_never_suppressed(api, admin):
    inbound = _inject(api, admin, "not a number", "STOP")
    assert inbound["fromValid"] is False and inbound["from"] == "not a number"
    assert inbound["keyword"] == "STOP"
    listed = api.get("/api/inbound?limit=100", admin.token).json()["inbound"]
    assert inbound in listed
    assert api.get("/api/suppressions?phone=not%20a%20number", admin.token).status_code == 400


def test_only_admins_inject_inbound_messages(api, user):
    response = api.post("/api/simulator/inbound", user.token, json={"from": _phone(),
                                                                    "body": "STOP"})
    assert response.status_code == 403
    assert api.post("/api/simulator/inbound", json={"from": _phone(), "body": "x"}
                    ).status_code == 401


def _text_columns_holding(database_url, needle):
    """Every (table, column) of a text kind whose value contains ``needle``."""
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    found = []
    with engine.connect() as connection:
        inspector = inspect(connection)
        for table in inspector.get_table_names():
            for column in inspector.get_columns(table):
                kind = column["type"]
                if not isinstance(kind, String | Text) and "JSON" not in type(kind).__name__:
                    continue
                count = connection.execute(text(
                    f'SELECT count(*) FROM "{table}" WHERE CAST("{column["name"]}" AS TEXT) '
                    "LIKE :needle"), {"needle": f"%{needle}%"}).scalar()
                if count:
                    found.append((table, column["name"]))
    engine.dispose()
    return found


def test_erasure_leaves_no_clear_number_keeps_counts_and_the_opt_out(hub, api, admin):
    owner = register_user(hub)
    phone, bystander = _phone(), _phone()
    message_id = _send(api, owner, [phone, bystander], body="Your table is ready")
    before, _ = _recipients_when_final(api, owner, message_id)
    _inject(api, admin, phone, "See you soon, my address is 1 Main St")
    _inject(api, admin, phone, "STOP")
    assert _text_columns_holding(hub.database_url, phone[2:])

    erased = api.request("DELETE", f"/api/phones/{phone}", admin.token)
    assert erased.status_code == 200, erased.text
    assert erased.json()["recipients"] == 1 and erased.json()["inbound"] == 2
    assert _text_columns_holding(hub.database_url, phone[2:]) == []
    assert _text_columns_holding(hub.database_url, "1 Main St") == []
    after, recipients = _recipients_when_final(api, owner, message_id)
    assert {k: after[k] for k in ("status", "successCount", "failedCount", "cost")} == {
        k: before[k] for k in ("status", "successCount", "failedCount", "cost")}
    assert bystander in recipients
    listed = api.get("/api/suppressions", admin.token,
                     params={"phone": phone}).json()["suppressions"]
    assert [(s["reason"], s["phone"].startswith("erased:")) for s in listed] == [
        ("erased", True)]

    _, recipients = _recipients_when_final(api, owner, _send(api, owner, [phone]))
    assert recipients[phone]["status"] == "SUPPRESSED"
    assert sent_phones(hub.send_log).count(phone) == 1
    assert json.dumps(api.get("/api/inbound?limit=100", admin.token).json()).count(phone) == 0


def test_stop_on_one_node_stops_a_2000_recipient_send_on_another_within_a_second(
        hub_factory, tmp_path):
    """Node A takes the STOP; node B does the sending (A claims one recipient at a time and
    takes seconds over each). The number is in four messages, queued behind each other."""
    require_service("Redis", redis_reachable())
    database = hub_factory.database("postgresql")
    send_log = str(tmp_path / "sent.jsonl")
    shared = {"SOCKETIO_MESSAGE_QUEUE": REDIS_URL, "SOCKETIO_CHANNEL": f"inbound-{_phone()}",
              "SIMULATED_SMS_SEND_LOG": send_log, "DISPATCH_BATCH_SIZE": "20",
              "DISPATCH_CONCURRENCY": "4"}
    node_a = hub_factory({**shared, "NODE_ID": "stop-a", "DISPATCH_BATCH_SIZE": "1",
                          "SIMULATED_SMS_LATENCY": "5"}, database_url=database, name="stop-a")
    node_b = hub_factory({**shared, "NODE_ID": "stop-b", "SIMULATED_SMS_LATENCY": "0.02"},
                         database_url=database, name="stop-b")
    owner, admin = register_user(node_a), register_user(node_a, admin=True)
    target = _phone()
    others = iter(f"+1556{n:07d}" for n in range(2000))
    messages = []
    for position in (5, 250, 250, 250):
        phones = [next(others) for _ in range(499)]
        phones.insert(position, target)
        messages.append(_send(node_a.api, owner, phones, body=f"Batch {len(messages)}"))
    eventually(lambda: target in sent_phones(send_log), timeout=20)

    injected = node_a.api.post("/api/simulator/inbound", admin.token,
                               json={"from": target, "body": "STOP"})
    acknowledged = time.time()
    assert injected.status_code == 201, injected.text

    outcomes = [_recipients_when_final(node_b.api, owner, message_id)[1][target]
                for message_id in messages]
    sends = [entry for entry in read_log(send_log) if entry["phone"] == target]
    assert sends and all(entry["at"] <= acknowledged + 1.0 for entry in sends), (
        [entry["at"] - acknowledged for entry in sends])
    suppressed = [outcome for outcome in outcomes if outcome["status"] == "SUPPRESSED"]
    assert len(suppressed) >= 2 and outcomes[-1]["status"] == "SUPPRESSED"
    claimed_by = sql_scalar(database, "SELECT string_agg(DISTINCT claimed_by, ',') FROM "
                            "recipients WHERE phone = :phone AND status = 'SUPPRESSED'",
                            phone=target)
    assert "stop-b" in claimed_by
    assert len(read_log(send_log)) >= 1900  # the rest went out


def test_a_provider_opt_out_joins_the_list_and_the_next_send_never_reaches_the_provider(
        api, user, admin):
    opted_out = "+15005550004"  # the simulator answers: opted out (Twilio's 21610)
    api.request("DELETE", f"/api/suppressions/{opted_out}", admin.token)
    _, recipients = _recipients_when_final(api, user, _send(api, user, [opted_out]))
    first = recipients[opted_out]
    assert (first["status"], first["errorCode"], first["providerErrorCode"]) == (
        "SUPPRESSED", "opted_out", "21610")
    listed = api.get("/api/suppressions", admin.token,
                     params={"phone": opted_out}).json()["suppressions"]
    assert [(s["sender"], s["reason"]) for s in listed] == [(HUB_NUMBER, "provider")]

    message, recipients = _recipients_when_final(api, user, _send(api, user, [opted_out]))
    second = recipients[opted_out]
    assert (second["status"], second["errorCode"], second["providerErrorCode"]) == (
        "SUPPRESSED", "opted_out", None)
    assert second["cost"] == 0 and message["cost"] == 0

    _inject(api, admin, opted_out, "UNSTOP")
    assert api.get("/api/suppressions", admin.token,
                   params={"phone": opted_out}).json()["suppressions"] == []
