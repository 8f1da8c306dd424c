"""Opt-outs through Twilio: signed inbound posts from the fake Twilio to a live hub, and the
sends the fake then does or does not receive."""

from __future__ import annotations

import pytest

from tests.fakes.twilio_api import new_sid
from tests.support import PUBLIC_BASE_URL as PUBLIC
from tests.support import SMS_SENDER as SENDER
from tests.support import LiveServer, eventually, register_user, twilio_hub_env
from tests.test_twilio import INBOUND, new_handset, send_message, settle

HELP_TEXT = "Acme alerts: reply STOP to end."


@pytest.fixture
def inbound_hub(hub_factory, fake_twilio) -> LiveServer:
    """A hub sending through the fake Twilio, which posts to the hub's public URL."""
    hub = hub_factory(env={**twilio_hub_env(fake_twilio), "SMS_HELP_TEXT": HELP_TEXT},
                      name="twilio-inbound")
    fake_twilio.route(PUBLIC, hub.url)
    return hub


def _submissions_to(fake, phone):
    return [event for event in fake.submissions() if event["to"] == phone]


def _text(fake, phone, body, signature="valid"):
    return fake.send_inbound(PUBLIC + INBOUND, from_=phone, to=SENDER, body=body,
                             signature=signature)


@pytest.mark.parametrize("stop", ["Stop", " stop ", "STOPALL"])
def test_a_signed_stop_suppresses_the_number_until_start(inbound_hub, fake_twilio, stop):
    user = register_user(inbound_hub)
    phone = new_handset()
    settle(inbound_hub, user, send_message(inbound_hub, user, [phone]), {phone: "DELIVERED"})

    answer = _text(fake_twilio, phone, stop)
    assert (answer["http_status"], answer["content_type"].split(";")[0]) == (200, "text/xml")
    assert "<Response" in answer["body"]
    message_id = send_message(inbound_hub, user, [phone])
    suppressed = settle(inbound_hub, user, message_id, {phone: "SUPPRESSED"})[phone]
    assert suppressed["errorCode"] == "opted_out" and suppressed["cost"] == 0
    assert inbound_hub.api.get(f"/api/messages/{message_id}", user.token).json()["cost"] == 0
    assert len(_submissions_to(fake_twilio, phone)) == 1  # the fake never saw the second

    assert _text(fake_twilio, phone, "START")["http_status"] == 200
    settle(inbound_hub, user, send_message(inbound_hub, user, [phone]), {phone: "DELIVERED"})
    assert len(_submissions_to(fake_twilio, phone)) == 2


def test_help_through_twilio_gets_one_reply_sent_through_the_api(inbound_hub, fake_twilio):
    phone = new_handset()
    answer = _text(fake_twilio, phone, "help")
    assert answer["http_status"] == 200 and "<Message" not in answer["body"]
    replies = eventually(lambda: _submissions_to(fake_twilio, phone), timeout=10)
    assert [(r["from"], r["body"]) for r in replies] == [(SENDER, HELP_TEXT)]
    # A reply is no recipient: it asks for no status callbacks, which would name nobody.
    assert replies[0]["status_callback"] is None
    _text(fake_twilio, phone, "thanks")
    admin = register_user(inbound_hub, admin=True)
    eventually(lambda: [m["body"] for m in inbound_hub.api.get(
        "/api/inbound?limit=100", admin.token).json()["inbound"] if m["from"] == phone]
        == ["thanks", "help"], timeout=10)
    assert len(_submissions_to(fake_twilio, phone)) == 1


@pytest.mark.parametrize("signature", ["forged", "missing"])
def test_an_unsigned_or_forged_stop_is_403_and_changes_nothing(inbound_hub, fake_twilio,
                                                               signature):
    admin = register_user(inbound_hub, admin=True)
    phone = new_handset()
    answer = _text(fake_twilio, phone, "STOP", signature=signature)
    assert answer["http_status"] == 403 and answer["content_type"].startswith("application/json")
    assert inbound_hub.api.get("/api/suppressions", admin.token,
                               params={"phone": phone}).json()["suppressions"] == []
    assert phone not in [m["from"] for m in inbound_hub.api.get(
        "/api/inbound?limit=100", admin.token).json()["inbound"]]


def test_an_unparseable_sender_is_stored_flagged_and_the_webhook_answers(inbound_hub,
                                                                         fake_twilio):
    admin = register_user(inbound_hub, admin=True)
    answer = _text(fake_twilio, "Acme Bank", "STOP")
    assert answer["http_status"] == 200
    stored = eventually(lambda: [m for m in inbound_hub.api.get(
        "/api/inbound?limit=100", admin.token).json()["inbound"] if m["from"] == "Acme Bank"])
    assert stored[0]["fromValid"] is False and stored[0]["keyword"] == "STOP"


def test_a_stop_to_a_messaging_services_pool_number_opts_out_of_the_service(
        hub_factory, fake_twilio):
    service = new_sid("MG")
    hub = hub_factory(env=twilio_hub_env(fake_twilio, TWILIO_FROM="",
                                         TWILIO_MESSAGING_SERVICE_SID=service),
                      name="twilio-service")
    fake_twilio.route(PUBLIC, hub.url)
    user = register_user(hub)
    phone, pool_number = new_handset(), "+15017122999"
    answer = fake_twilio.send_inbound(PUBLIC + INBOUND, from_=phone, to=pool_number,
                                      body="STOP", messaging_service_sid=service)
    assert answer["http_status"] == 200
    found = settle(hub, user, send_message(hub, user, [phone]), {phone: "SUPPRESSED"})
    assert found[phone]["errorCode"] == "opted_out"
    assert _submissions_to(fake_twilio, phone) == []
