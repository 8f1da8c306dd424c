"""``SMS_PROVIDER=twilio``: every outcome of a send, the signed webhooks, the settings.

The provider meets the fake Twilio (``tests/fakes``), which speaks the Messages
API as the official SDK calls it and signs its callbacks with the SDK's
``RequestValidator``; the webhooks are the live hub's, posted to by that fake
as Twilio posts them.
"""

from __future__ import annotations

import json
import random
import re
import socket
import time
from collections.abc import Iterator

import pytest
import requests
from twilio.request_validator import RequestValidator

from services.messaging.providers.base import Outcome, OutgoingSms
from services.messaging.providers.twilio import (
    TwilioProvider,
    TwilioSettings,
    retry_after_seconds,
)
from tests.fakes.eventlog import busiest_window
from tests.fakes.twilio_api import FakeTwilio, new_sid
from tests.support import PUBLIC_BASE_URL as PUBLIC
from tests.support import SMS_SENDER as SENDER
from tests.support import (
    LiveServer,
    RecordingClient,
    TestUser,
    eventually,
    free_port,
    register_user,
    twilio_config,
    twilio_hub_env,
)

HANDSET = "+15558675310"
STATUS = "/api/webhooks/twilio/status"
INBOUND = "/api/webhooks/twilio/inbound"


@pytest.fixture
def provider(fake_twilio):
    provider = TwilioProvider(TwilioSettings.from_config(twilio_config(fake_twilio)))
    yield provider
    provider.stop()


def submit(provider: TwilioProvider, phone: str = HANDSET, body: str = "Hello"):
    return provider.submit(OutgoingSms(recipient_id=1, phone=phone, body=body))


# --- Sending: each answer as an outcome ---------------------------------------------------


def test_an_accepted_send_keeps_twilios_sid_and_segment_count(provider, fake_twilio):
    result = submit(provider, body="The quick brown fox jumps over the lazy dog. " * 4)

    assert result.outcome == Outcome.ACCEPTED
    [logged] = fake_twilio.submissions()
    assert result.provider_message_id == logged["sid"] and logged["sid"].startswith("SM")
    assert result.parts == logged["num_segments"] == 2
    assert result.provider_status == "queued"
    assert (logged["from"], logged["to"], logged["messaging_service_sid"]) == (
        SENDER, HANDSET, None)
    assert logged["status_callback"] == PUBLIC + "/api/webhooks/twilio/status?recipient=1"


def test_a_messaging_service_sends_without_from(fake_twilio):
    service = new_sid("MG")
    provider = TwilioProvider(TwilioSettings.from_config(twilio_config(
        fake_twilio, TWILIO_FROM="", TWILIO_MESSAGING_SERVICE_SID=service)))

    result = submit(provider)

    assert (result.outcome, result.provider_status) == (Outcome.ACCEPTED, "accepted")
    [logged] = fake_twilio.submissions()
    assert (logged["from"], logged["messaging_service_sid"]) == (None, service)


@pytest.mark.parametrize(("kind", "outcome", "error_code", "retryable"), [
    ("21211", Outcome.REJECTED, "invalid_number", False),
    ("21614", Outcome.REJECTED, "invalid_number", False),
    ("21408", Outcome.REJECTED, "unroutable", False),
    ("21610", Outcome.OPTED_OUT, "opted_out", False),
    ("500", Outcome.UNKNOWN, "ambiguous_submit", False),
    ("503", Outcome.UNKNOWN, "ambiguous_submit", False),
])
def test_each_refusal_is_its_outcome_with_twilios_code_as_text(provider, fake_twilio, kind,
                                                               outcome, error_code, retryable):
    fake_twilio.fail(HANDSET, kind)

    result = submit(provider)

    code = {"500": "20500", "503": "20503"}.get(kind, kind)
    assert (result.outcome, result.error_code, result.provider_error_code,
            result.retryable) == (outcome, error_code, code, retryable)
    assert result.provider_message_id is None
    assert result.error_message.startswith("Twilio: ")


def test_a_429_is_throttled_with_twilios_retry_after(provider, fake_twilio):
    fake_twilio.fail(HANDSET, "429", retry_after=7)

    result = submit(provider)

    assert (result.outcome, result.provider_error_code, result.retry_after) == (
        Outcome.THROTTLED, "20429", 7.0)


def test_wrong_credentials_are_rejected_retryable_not_the_numbers_fault(fake_twilio):
    provider = TwilioProvider(TwilioSettings.from_config(twilio_config(
        fake_twilio, TWILIO_AUTH_TOKEN="not-the-token")))

    result = submit(provider)

    assert (result.outcome, result.error_code, result.provider_error_code,
            result.retryable) == (Outcome.REJECTED, "provider_account", "20003", True)


def test_a_connection_dropped_after_the_request_was_read_is_unknown(provider, fake_twilio):
    fake_twilio.fail(HANDSET, "drop")

    result = submit(provider)

    assert (result.outcome, result.error_code) == (Outcome.UNKNOWN, "ambiguous_submit")
    assert "lost after the request was sent" in result.error_message
    [logged] = fake_twilio.submissions()
    assert logged["accepted"] is True


def test_an_answer_slower_than_the_timeout_is_unknown_and_not_waited_for(provider,
                                                                          fake_twilio):
    fake_twilio.fail(HANDSET, "slow", delay=5)

    started = time.monotonic()
    result = submit(provider)

    assert time.monotonic() - started < 4
    assert (result.outcome, result.error_code) == (Outcome.UNKNOWN, "ambiguous_submit")
    assert "did not answer within 2 s" in result.error_message


def test_a_refused_connection_sent_nothing_and_is_throttled_not_unknown(fake_twilio):
    port = free_port()  # nothing listens there
    provider = TwilioProvider(TwilioSettings.from_config(twilio_config(
        fake_twilio, TWILIO_API_BASE=f"http://127.0.0.1:{port}")))

    result = submit(provider)

    assert (result.outcome, result.error_code) == (Outcome.THROTTLED, "provider_unreachable")
    assert result.retry_after and result.retry_after > 0
    assert fake_twilio.submissions() == []


def test_a_connect_timeout_sent_nothing_either(fake_twilio):
    """A listener whose backlog is full never completes a handshake: connect times out."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    try:
        for _ in range(8):  # fill the accept backlog so the next connect hangs
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(listener.getsockname())
            fillers.append(filler)
        provider = TwilioProvider(TwilioSettings.from_config(twilio_config(
            fake_twilio, TWILIO_API_BASE=f"http://127.0.0.1:{listener.getsockname()[1]}",
            TWILIO_TIMEOUT=0.5)))
        result = submit(provider)
    finally:
        for filler in fillers:
            filler.close()
        listener.close()

    assert (result.outcome, result.error_code) == (Outcome.THROTTLED, "provider_unreachable")


@pytest.mark.parametrize(("header", "seconds"), [
    (None, None), ("", None), ("7", 7.0), (" 12 ", 12.0), ("soon", None),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
])
def test_retry_after_is_read_as_seconds_or_a_past_date(header, seconds):
    assert retry_after_seconds(header) == seconds


# --- Settings -----------------------------------------------------------------------------


@pytest.mark.parametrize(("overrides", "words"), [
    ({"TWILIO_ACCOUNT_SID": ""}, "TWILIO_ACCOUNT_SID must be the account's SID"),
    ({"TWILIO_ACCOUNT_SID": "SK123"}, "AC and 32 hex digits, not 'SK123'"),
    ({"TWILIO_AUTH_TOKEN": ""}, "TWILIO_AUTH_TOKEN must be set"),
    ({"TWILIO_FROM": ""}, "TWILIO_FROM (a number or sender ID) or "
                          "TWILIO_MESSAGING_SERVICE_SID must be set"),
    ({"TWILIO_MESSAGING_SERVICE_SID": "MG" + "0" * 32}, "not both"),
    ({"TWILIO_FROM": "0612345678"}, "TWILIO_FROM must be an E.164 number"),
    ({"TWILIO_FROM": "", "TWILIO_MESSAGING_SERVICE_SID": "MGxyz"},
     "TWILIO_MESSAGING_SERVICE_SID must be MG and 32 hex digits, not 'MGxyz'"),
    ({"PUBLIC_BASE_URL": ""}, "PUBLIC_BASE_URL must be set"),
    ({"PUBLIC_BASE_URL": "hub.example.com"}, "PUBLIC_BASE_URL must be an http(s) URL"),
    ({"PUBLIC_BASE_URL": "https://hub.example.com/?a=1"}, "without query"),
    ({"TWILIO_API_BASE": "ftp://api.twilio.com"}, "TWILIO_API_BASE must be an http(s) URL"),
    ({"TWILIO_TIMEOUT": 0.0}, "TWILIO_TIMEOUT must be more than 0 seconds"),
    ({"TWILIO_MAX_IN_FLIGHT": 0}, "TWILIO_MAX_IN_FLIGHT must be at least 1"),
])
def test_wrong_settings_stop_the_start_saying_what_to_fix(fake_twilio, overrides, words):
    with pytest.raises(RuntimeError, match="^SMS_PROVIDER=twilio: ") as error:
        TwilioSettings.from_config(twilio_config(fake_twilio, **overrides))
    assert words in str(error.value)


def test_an_alphanumeric_sender_and_a_trailing_slash_are_fine(fake_twilio):
    settings = TwilioSettings.from_config(twilio_config(
        fake_twilio, TWILIO_FROM="Acme Shop", PUBLIC_BASE_URL=PUBLIC + "/"))
    assert settings.status_callback(7) == PUBLIC + "/api/webhooks/twilio/status?recipient=7"


# --- Through a live hub -------------------------------------------------------------------


@pytest.fixture(scope="module")
def twilio_fake(tmp_path_factory) -> Iterator[FakeTwilio]:
    """One fake Twilio for the module's hub; each test uses numbers of its own."""
    fake = FakeTwilio.start_thread(tmp_path_factory.mktemp("twilio") / "fake-twilio.jsonl")
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def twilio_hub(module_hub_factory, twilio_fake) -> LiveServer:
    """A hub sending through the fake, which posts its callbacks to the hub's public URL."""
    hub = module_hub_factory(env=twilio_hub_env(twilio_fake), name="twilio")
    twilio_fake.route(PUBLIC, hub.url)
    return hub


@pytest.fixture
def quiet_fake(twilio_fake) -> Iterator[FakeTwilio]:
    """The module's fake posting no callbacks of its own: the test posts them."""
    twilio_fake.settings(auto_callbacks=False)
    yield twilio_fake
    twilio_fake.settings(auto_callbacks=True)


@pytest.fixture(scope="module")
def sender(twilio_hub) -> TestUser:
    return register_user(twilio_hub)


def new_handset() -> str:
    return "+1555" + str(random.randrange(10**6, 10**7))


def send_message(hub: LiveServer, user: TestUser, phones: list[str],
                 body: str = "Hello from the hub") -> str:
    answer = hub.api.post("/api/messages", user.token, json={"body": body, "recipients": phones})
    assert answer.status_code == 202, answer.text
    return answer.json()["id"]


def recipients(hub: LiveServer, user: TestUser, message_id: str) -> dict[str, dict]:
    answer = hub.api.get(f"/api/messages/{message_id}/recipients", user.token)
    assert answer.status_code == 200, answer.text
    return {recipient["phone"]: recipient for recipient in answer.json()["recipients"]}


def settle(hub: LiveServer, user: TestUser, message_id: str, expected: dict[str, str],
           timeout: float = 15.0) -> dict[str, dict]:
    """The message's recipients once each phone has the status ``expected`` gives it."""
    def reached() -> dict[str, dict] | None:
        found = recipients(hub, user, message_id)
        statuses = {phone: found[phone]["status"] for phone in expected if phone in found}
        return found if statuses == expected else None

    try:
        return eventually(reached, timeout=timeout, interval=0.2)
    except AssertionError:
        now = {phone: r["status"] for phone, r in recipients(hub, user, message_id).items()}
        raise AssertionError(f"expected {expected}, have {now}") from None


def sid_of(fake: FakeTwilio, phone: str) -> str:
    [submission] = [event for event in fake.submissions(accepted=True) if event["to"] == phone]
    return submission["sid"]


def callbacks_to(fake: FakeTwilio, sid: str) -> list[dict]:
    return [event for event in fake.callbacks() if event.get("sid") == sid]


def test_a_message_goes_through_twilio_to_delivered_by_signed_callbacks(twilio_hub, sender,
                                                                        twilio_fake):
    phones = [new_handset(), new_handset()]
    body = "The quick brown fox jumps over the lazy dog. " * 4  # two segments

    message_id = send_message(twilio_hub, sender, phones, body)

    final = settle(twilio_hub, sender, message_id, dict.fromkeys(phones, "DELIVERED"))
    for phone in phones:
        sid = sid_of(twilio_fake, phone)
        assert final[phone]["providerMessageId"] == sid
        assert final[phone]["parts"] == 2
        assert final[phone]["providerStatus"] == "delivered"
        statuses = [(event["status"], event["signature"], event["http_status"],
                     event["body"], event["content_type"].split(";")[0])
                    for event in callbacks_to(twilio_fake, sid)]
        assert statuses == [("sent", "valid", 200, "<Response/>", "text/xml"),
                            ("delivered", "valid", 200, "<Response/>", "text/xml")]
    message = twilio_hub.api.get(f"/api/messages/{message_id}", sender.token).json()
    assert (message["status"], message["deliveredCount"]) == ("SENT", 2)
    assert [event["to"] for event in twilio_fake.submissions()
            if event["to"] in phones].count(phones[0]) == 1


def test_undelivered_keeps_its_cost_and_failed_is_not_billed(twilio_hub, sender, twilio_fake):
    undelivered, failed = new_handset(), new_handset()
    twilio_fake.finish_with(undelivered, "undelivered", 30003)
    twilio_fake.finish_with(failed, "failed", 30008)

    message_id = send_message(twilio_hub, sender, [undelivered, failed])

    final = settle(twilio_hub, sender, message_id, {undelivered: "FAILED", failed: "FAILED"})
    assert (final[undelivered]["providerStatus"], final[undelivered]["providerErrorCode"]) == (
        "undelivered", "30003")
    assert (final[failed]["providerStatus"], final[failed]["providerErrorCode"]) == (
        "failed", "30008")
    assert float(final[undelivered]["cost"]) > 0
    assert float(final[failed]["cost"]) == 0


@pytest.mark.parametrize(("kind", "status", "error_code", "provider_error_code"), [
    ("21211", "FAILED", "invalid_number", "21211"),
    ("21614", "FAILED", "invalid_number", "21614"),
    ("21408", "FAILED", "unroutable", "21408"),
    ("21610", "SUPPRESSED", "opted_out", "21610"),
    ("500", "UNKNOWN", "ambiguous_submit", "20500"),
    ("drop", "UNKNOWN", "ambiguous_submit", None),
    ("slow", "UNKNOWN", "ambiguous_submit", None),
])
def test_each_answer_ends_in_its_documented_status(twilio_hub, sender, quiet_fake, kind,
                                                   status, error_code, provider_error_code):
    phone = new_handset()
    quiet_fake.fail(phone, kind, delay=4)

    message_id = send_message(twilio_hub, sender, [phone])

    final = settle(twilio_hub, sender, message_id, {phone: status})[phone]
    assert (final["errorCode"], final.get("providerErrorCode")) == (error_code,
                                                                     provider_error_code)
    assert float(final["cost"]) == 0
    assert len([event for event in quiet_fake.submissions() if event["to"] == phone]) == 1


def test_a_sent_callback_proves_an_ambiguous_submit_accepted(twilio_hub, sender, quiet_fake):
    phone = new_handset()
    quiet_fake.fail(phone, "drop")
    message_id = send_message(twilio_hub, sender, [phone])
    settle(twilio_hub, sender, message_id, {phone: "UNKNOWN"})
    sid = sid_of(quiet_fake, phone)

    answer = quiet_fake.send_status(sid, "sent")  # to the StatusCallback the send gave

    assert answer["http_status"] == 200
    sent = settle(twilio_hub, sender, message_id, {phone: "SENT"})[phone]
    assert (sent["providerMessageId"], sent["providerStatus"], sent.get("errorCode")) == (
        sid, "sent", None)
    assert float(sent["cost"]) > 0
    quiet_fake.send_status(sid, "delivered")
    settle(twilio_hub, sender, message_id, {phone: "DELIVERED"})


def test_callbacks_on_the_way_show_twilios_latest_word_never_an_earlier_one(twilio_hub,
                                                                            sender,
                                                                            quiet_fake):
    message_id, phone, sid = accepted_recipient(twilio_hub, sender, quiet_fake)
    tracker = RecordingClient(twilio_hub.url)
    tracker.connect(token=sender.token)
    try:
        assert tracker.call("track_message", message_id)["ok"] is True
        accepted = recipients(twilio_hub, sender, message_id)[phone]
        assert accepted["providerStatus"] == "queued"  # the word of Twilio's 201

        assert quiet_fake.send_status(sid, "sending")["http_status"] == 200
        update = tracker.wait_for("recipient_update",
                                  lambda u: u["providerStatus"] == "sending")
        assert (update["status"], update["version"]) == ("SENT", accepted["version"] + 1)
        quiet_fake.send_status(sid, "queued")  # late: sending came after it
        quiet_fake.send_status(sid, "sending")  # a repeat
        sending = recipients(twilio_hub, sender, message_id)[phone]
        assert (sending["status"], sending["providerStatus"], sending["version"]) == (
            "SENT", "sending", update["version"])
        assert sending["cost"] == accepted["cost"] and sending["providerMessageId"] == sid

        quiet_fake.send_status(sid, "sent")
        assert settle(twilio_hub, sender, message_id, {phone: "SENT"})[phone][
            "providerStatus"] == "sent"
        quiet_fake.send_status(sid, "delivered")
        delivered = settle(twilio_hub, sender, message_id, {phone: "DELIVERED"})[phone]
        for late in ("accepted", "queued", "sending", "sent"):
            assert quiet_fake.send_status(sid, late)["http_status"] == 200
        assert recipients(twilio_hub, sender, message_id)[phone] == delivered
        assert delivered["providerStatus"] == "delivered"
    finally:
        tracker.close()


def test_a_word_on_the_way_shows_on_an_unknown_recipient_without_settling_it(twilio_hub,
                                                                            sender,
                                                                            quiet_fake):
    phone = new_handset()
    quiet_fake.fail(phone, "drop")
    message_id = send_message(twilio_hub, sender, [phone])
    settle(twilio_hub, sender, message_id, {phone: "UNKNOWN"})
    sid = sid_of(quiet_fake, phone)

    quiet_fake.send_status(sid, "queued")  # to the StatusCallback naming the recipient

    unknown = eventually(lambda: (lambda r: r if r["providerStatus"] == "queued" else None)(
        recipients(twilio_hub, sender, message_id)[phone]))
    assert (unknown["status"], unknown["errorCode"], unknown["providerMessageId"],
            float(unknown["cost"])) == ("UNKNOWN", "ambiguous_submit", None, 0.0)
    quiet_fake.send_status(sid, "sent")  # still proves it accepted, with its cost
    sent = settle(twilio_hub, sender, message_id, {phone: "SENT"})[phone]
    assert (sent["providerMessageId"], sent["providerStatus"]) == (sid, "sent")
    assert float(sent["cost"]) > 0


@pytest.mark.parametrize("kind", ["drop", "slow"])
def test_a_send_whose_answer_was_lost_is_settled_by_its_callbacks(twilio_hub, sender,
                                                                   twilio_fake, kind):
    """Twilio took it; the hub never read the SID, but the callback URL names the recipient."""
    phone = new_handset()
    twilio_fake.fail(phone, kind, delay=4)

    message_id = send_message(twilio_hub, sender, [phone])

    final = settle(twilio_hub, sender, message_id, {phone: "DELIVERED"}, timeout=20)[phone]
    assert final["providerMessageId"] == sid_of(twilio_fake, phone)
    assert float(final["cost"]) > 0
    assert len([event for event in twilio_fake.submissions() if event["to"] == phone]) == 1


def test_a_burst_of_429s_is_sent_later_and_delivered_never_failed(twilio_hub, sender,
                                                                   twilio_fake):
    phone = new_handset()
    twilio_fake.fail(phone, "429", times=3, retry_after=1)

    message_id = send_message(twilio_hub, sender, [phone])

    settle(twilio_hub, sender, message_id, {phone: "DELIVERED"}, timeout=30)
    outcomes = [event["outcome"] for event in twilio_fake.submissions() if event["to"] == phone]
    assert outcomes == ["429", "429", "429", "ok"]


def test_sends_in_flight_never_exceed_twilio_max_in_flight(hub_factory, fake_twilio):
    hub = hub_factory(env=twilio_hub_env(fake_twilio, TWILIO_MAX_IN_FLIGHT=2))
    user = register_user(hub)
    phones = [new_handset() for _ in range(6)]
    for phone in phones:
        fake_twilio.fail(phone, "slow", delay=0.5)

    message_id = send_message(hub, user, phones)

    settle(hub, user, message_id, dict.fromkeys(phones, "SENT"), timeout=20)
    read_at = [event["ts"] for event in fake_twilio.submissions()]
    # Two at a time, each answered after 0.5 s: never more than two within 0.4 s.
    assert len(read_at) == 6 and busiest_window(read_at, seconds=0.4) == 2


# --- The webhooks -------------------------------------------------------------------------


def post_form(hub: LiveServer, path: str, params: dict[str, str],
              signature: str | None) -> requests.Response:
    headers = {"X-Twilio-Signature": signature} if signature is not None else {}
    return requests.post(hub.url + path, data=params, headers=headers, timeout=10)


def accepted_recipient(hub: LiveServer, user: TestUser, fake: FakeTwilio) -> tuple[str, str, str]:
    """A recipient Twilio accepted, without callbacks yet: (message id, phone, sid)."""
    phone = new_handset()
    message_id = send_message(hub, user, [phone])
    recipient = settle(hub, user, message_id, {phone: "SENT"})[phone]
    return message_id, phone, recipient["providerMessageId"]


@pytest.mark.parametrize("signature", ["forged", "missing"])
def test_forged_or_unsigned_callbacks_are_403_and_change_nothing(twilio_hub, sender, quiet_fake,
                                                                  signature):
    message_id, phone, sid = accepted_recipient(twilio_hub, sender, quiet_fake)
    before = recipients(twilio_hub, sender, message_id)[phone]

    answer = quiet_fake.send_status(sid, "delivered", url=PUBLIC + STATUS, signature=signature)

    assert answer["http_status"] == 403
    assert answer["content_type"].startswith("application/json")
    assert json.loads(answer["body"])["error"]["code"] == "forbidden"
    quiet_fake.send_status(sid, "queued", url=PUBLIC + STATUS)  # a round trip after it
    assert recipients(twilio_hub, sender, message_id)[phone] == before


def test_a_replayed_callback_with_altered_parameters_is_403(twilio_hub, sender, quiet_fake):
    message_id, phone, sid = accepted_recipient(twilio_hub, sender, quiet_fake)
    params = {"MessageSid": sid, "SmsSid": sid, "MessageStatus": "sent", "SmsStatus": "sent",
              "AccountSid": quiet_fake.account_sid, "To": phone, "From": SENDER,
              "ApiVersion": "2010-04-01"}
    signature = RequestValidator(quiet_fake.auth_token).compute_signature(PUBLIC + STATUS, params)
    assert post_form(twilio_hub, STATUS, params, signature).status_code == 200

    altered = {**params, "MessageStatus": "failed", "ErrorCode": "30008"}
    answer = post_form(twilio_hub, STATUS, altered, signature)

    assert answer.status_code == 403
    assert answer.json()["error"]["message"] == (
        "Invalid X-Twilio-Signature for this URL and these parameters")
    assert post_form(twilio_hub, STATUS, params, signature).status_code == 200  # a plain replay
    assert recipients(twilio_hub, sender, message_id)[phone]["status"] == "SENT"


def test_a_signature_over_another_url_is_403(twilio_hub, sender, quiet_fake):
    """Signed for the hub's loopback address, not the PUBLIC_BASE_URL Twilio calls."""
    _, _, sid = accepted_recipient(twilio_hub, sender, quiet_fake)

    answer = quiet_fake.send_status(sid, "delivered", url=twilio_hub.url + STATUS)

    assert answer["http_status"] == 403


def test_callbacks_for_sids_the_hub_does_not_know_are_harmless(twilio_hub, sender, quiet_fake):
    message_id, phone, _ = accepted_recipient(twilio_hub, sender, quiet_fake)
    params = {"MessageSid": new_sid("SM"), "MessageStatus": "delivered",
              "AccountSid": quiet_fake.account_sid, "To": phone, "From": SENDER}
    signature = RequestValidator(quiet_fake.auth_token).compute_signature(PUBLIC + STATUS, params)

    answer = post_form(twilio_hub, STATUS, params, signature)

    assert (answer.status_code, answer.text) == (200, "<Response/>")
    assert recipients(twilio_hub, sender, message_id)[phone]["status"] == "SENT"


@pytest.mark.parametrize(("params", "details"), [
    ({"MessageStatus": "delivered"}, {"MessageSid": ["Missing data for required field."]}),
    ({"MessageSid": "SM123", "MessageStatus": "delivered"},
     {"MessageSid": ["Must be a Twilio message SID (SM and 32 hex digits)"]}),
    ({"MessageSid": "SM" + "0" * 32, "MessageStatus": "exploded"},
     {"MessageStatus": ["Must be one of: accepted, scheduled, queued, sending, sent, "
                        "delivered, undelivered, failed, read, canceled, "
                        "partially_delivered."]}),
    ({"MessageSid": "SM" + "0" * 32, "MessageStatus": "failed", "ErrorCode": "x"},
     {"ErrorCode": ["Must be Twilio's numeric error code"]}),
])
def test_signed_but_malformed_callbacks_say_what_is_wrong(twilio_hub, params, details,
                                                          twilio_fake):
    signature = RequestValidator(twilio_fake.auth_token).compute_signature(PUBLIC + STATUS,
                                                                          params)

    answer = post_form(twilio_hub, STATUS, params, signature)

    assert answer.status_code == 400
    assert answer.json()["error"] == {"code": "invalid_payload", "message": "Invalid payload",
                                      "details": details}


def test_an_inbound_sms_is_answered_with_empty_twiml_and_handed_on(twilio_hub, twilio_fake):
    before = inbound_count(twilio_hub)

    answer = twilio_fake.send_inbound(PUBLIC + INBOUND, from_=new_handset(), to=SENDER,
                                      body="STOP")

    assert (answer["http_status"], answer["body"], answer["content_type"]) == (
        200, "<Response/>", "text/xml; charset=utf-8")
    assert inbound_count(twilio_hub) == before + 1


@pytest.mark.parametrize("signature", ["forged", "missing"])
def test_forged_or_unsigned_inbound_posts_are_403(twilio_hub, twilio_fake, signature):
    before = inbound_count(twilio_hub)

    answer = twilio_fake.send_inbound(PUBLIC + INBOUND, from_=new_handset(), to=SENDER,
                                      body="STOP", signature=signature)

    assert answer["http_status"] == 403
    assert inbound_count(twilio_hub) == before


def test_the_documented_examples_answer_as_documented_when_signed(twilio_hub, twilio_fake):
    spec = requests.get(twilio_hub.url + "/api/openapi.json", timeout=10).json()
    for path in (STATUS, INBOUND):
        operation = spec["paths"][path]["post"]
        example = operation["requestBody"]["content"][
            "application/x-www-form-urlencoded"]["example"]
        params = {name: str(value) for name, value in example.items()}
        signature = RequestValidator(twilio_fake.auth_token).compute_signature(PUBLIC + path,
                                                                              params)

        answer = post_form(twilio_hub, path, params, signature)

        documented = operation["responses"]["200"]["content"]["text/xml"]["example"]
        assert (answer.status_code, answer.text) == (200, documented), path
        assert answer.headers["Content-Type"].startswith("text/xml")


def test_without_twilio_as_provider_the_webhooks_refuse_everything(sqlite_hub, twilio_fake):
    answer = twilio_fake.send_inbound(sqlite_hub.url + INBOUND, from_=new_handset(), to=SENDER,
                                      body="hi")

    assert answer["http_status"] == 403
    assert "SMS_PROVIDER is not twilio" in json.loads(answer["body"])["error"]["message"]


def test_a_hub_with_wrong_twilio_settings_does_not_start(hub_factory, fake_twilio):
    hub = hub_factory(env=twilio_hub_env(fake_twilio, PUBLIC_BASE_URL="hub.example.com"),
                      start=False)

    with pytest.raises(RuntimeError, match="server exited early"):
        hub.start()

    assert "PUBLIC_BASE_URL must be an http(s) URL" in hub.log_text()


def inbound_count(hub: LiveServer) -> float:
    metrics = requests.get(hub.url + "/metrics", timeout=10).text
    found = re.search(r"^hub_inbound_sms_total (\S+)$", metrics, flags=re.MULTILINE)
    return float(found.group(1)) if found else 0.0
