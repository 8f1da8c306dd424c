"""``SMS_PROVIDER=twilio``: every outcome of a send, the signed webhooks, the settings.

The provider meets the fake Twilio (``tests/fakes``), which speaks the Messages
API as the official SDK calls it and signs its callbacks with the SDK's
``RequestValidator``; the webhooks are the live hub's, posted to by that fake
as Twilio posts them.
"""

from __future__ import annotations

import socket
import time

import pytest

from services.messaging.providers.base import Outcome, OutgoingSms
from services.messaging.providers.twilio import (
    TwilioProvider,
    TwilioSettings,
    retry_after_seconds,
)
from tests.fakes.twilio_api import FakeTwilio, new_sid
from tests.support import free_port

SENDER = "+15017122661"
HANDSET = "+15558675310"
PUBLIC = "https://hub.example.com"


def twilio_config(fake: FakeTwilio, **overrides: object) -> dict[str, object]:
    """The settings a hub sending through ``fake`` has, as ``app.config`` holds them."""
    return {"TWILIO_ACCOUNT_SID": fake.account_sid, "TWILIO_AUTH_TOKEN": fake.auth_token,
            "TWILIO_FROM": SENDER, "TWILIO_MESSAGING_SERVICE_SID": "",
            "TWILIO_API_BASE": fake.api_base, "PUBLIC_BASE_URL": PUBLIC,
            "TWILIO_TIMEOUT": 2.0, "TWILIO_MAX_IN_FLIGHT": 4, **overrides}


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
    assert logged["status_callback"] == PUBLIC + "/api/webhooks/twilio/status"


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
    assert settings.status_callback == PUBLIC + "/api/webhooks/twilio/status"
