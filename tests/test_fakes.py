"""The fakes of the outside SMS systems, proved against the real clients of those systems.

The fake Twilio is driven with the official ``twilio`` SDK and its callbacks are checked
with the SDK's ``RequestValidator``; the fake SMSC (the ``smpp`` npm package's server)
is driven with ``smpplib``, in threads here and under gevent's monkey-patching in a
child interpreter, as the hub runs it. If a fake drifted from the wire protocol, these
tests would fail before any provider test could pass against it.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.gsm
import smpplib.smpp
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from tests.fakes.eventlog import busiest_window, per_phone
from tests.fakes.smsc import INVALID_DESTINATION, MESSAGE_QUEUE_FULL, THROTTLED, FakeSmsc
from tests.fakes.twilio_api import FakeTwilio
from tests.support import ROOT, eventually

SENDER = "+15017122661"
HANDSET = "+15558675310"
OTHER_HANDSET = "+15558675311"
# esm_class bits 2-5 (SMPP 3.4, 5.2.12); smpplib names 0x08 (an ESME ack) but not 0x04.
MESSAGE_TYPE_BITS = 0x3C
SMSC_DELIVERY_RECEIPT = 0x04
LONG_GSM_TEXT = "The quick brown fox jumps over the lazy dog. " * 9  # 405 chars: 3 parts


# --- Twilio -------------------------------------------------------------------------------


def twilio_client(fake: FakeTwilio, *, auth_token: str | None = None,
                  http_client: TwilioHttpClient | None = None) -> Client:
    """The SDK pointed at the fake the way the hub will read ``TWILIO_API_BASE``."""
    client = Client(fake.account_sid, auth_token or fake.auth_token,
                    http_client=http_client or TwilioHttpClient(timeout=10))
    client.api.base_url = fake.api_base
    return client


class WebhookReceiver:
    """A stand-in for the hub's webhook routes: records each post as Twilio made it."""

    def __init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                """Quiet."""

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                receiver.posts.append({
                    "path": self.path, "headers": dict(self.headers),
                    "params": {name: values[0] for name, values
                               in parse_qs(body, keep_blank_values=True).items()}})
                answer = b"<Response/>" if self.path.endswith("/inbound") else b""
                self.send_response(200)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.posts: list[dict] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def valid(self, post: dict, auth_token: str, url: str | None = None) -> bool:
        signature = post["headers"].get("X-Twilio-Signature", "")
        return RequestValidator(auth_token).validate(url or self.url + post["path"],
                                                     post["params"], signature)


@pytest.fixture
def webhooks() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def send(client: Client, to: str = HANDSET, body: str = "Hello", **kwargs: Any):
    return client.messages.create(to=to, from_=SENDER, body=body, **kwargs)


def test_sdk_sends_a_message_and_gets_twilio_message_resource(fake_twilio):
    client = twilio_client(fake_twilio)

    message = send(client, status_callback="http://127.0.0.1:9/api/webhooks/twilio/status")

    assert re.fullmatch(r"SM[0-9a-f]{32}", message.sid)
    assert message.status == "queued"
    assert (message.to, message.from_, message.body) == (HANDSET, SENDER, "Hello")
    assert message.account_sid == fake_twilio.account_sid
    assert message.num_segments == "1" and message.num_media == "0"
    assert message.price is None and message.price_unit == "USD"
    assert message.direction == "outbound-api" and message.api_version == "2010-04-01"
    assert isinstance(message.date_created, datetime) and message.date_created.tzinfo
    assert message.error_code is None
    assert client.messages(message.sid).fetch().sid == message.sid
    [logged] = fake_twilio.submissions()
    assert logged["accepted"] is True and logged["sid"] == message.sid
    assert logged["to"] == HANDSET and logged["from"] == SENDER and logged["body"] == "Hello"
    assert logged["status_callback"] == "http://127.0.0.1:9/api/webhooks/twilio/status"
    assert abs(logged["ts"] - time.time()) < 5


def test_custom_http_client_can_point_the_sdk_at_the_fake_too(fake_twilio):
    class RebasedHttpClient(TwilioHttpClient):
        """Twilio's documented customisation: an HTTP client of one's own."""

        def request(self, method: str, url: str, *args: Any, **kwargs: Any):
            rebased = url.replace("https://api.twilio.com", fake_twilio.api_base, 1)
            return super().request(method, rebased, *args, **kwargs)

    client = Client(fake_twilio.account_sid, fake_twilio.auth_token,
                    http_client=RebasedHttpClient())

    assert send(client).status == "queued"
    assert len(fake_twilio.submissions(accepted=True)) == 1


def test_messaging_service_sends_without_from_and_is_accepted(fake_twilio):
    client = twilio_client(fake_twilio)
    service = "MG" + "0" * 32

    message = client.messages.create(to=HANDSET, messaging_service_sid=service, body="Hi")

    assert message.status == "accepted"
    assert message.from_ is None and message.messaging_service_sid == service


@pytest.mark.parametrize(("body", "segments"), [
    ("a" * 160, "1"), ("a" * 161, "2"), (LONG_GSM_TEXT, "3"),
    ("Привет" * 11, "1"), ("Привет" * 12, "2"),
])
def test_num_segments_counts_gsm_and_ucs2_parts(fake_twilio, body, segments):
    assert send(twilio_client(fake_twilio), body=body).num_segments == segments


def test_wrong_auth_token_is_401_with_code_20003(fake_twilio):
    client = twilio_client(fake_twilio, auth_token="not-the-token")

    with pytest.raises(TwilioRestException) as error:
        send(client)

    assert (error.value.status, error.value.code) == (401, 20003)
    assert fake_twilio.submissions() == []


@pytest.mark.parametrize(("kind", "status", "code", "words"), [
    ("21211", 400, 21211, "is not a valid phone number"),
    ("21610", 400, 21610, "unsubscribed recipient"),
    ("21614", 400, 21614, "is not a valid mobile number"),
    ("21408", 400, 21408, "Permission to send an SMS"),
    ("429", 429, 20429, "Too Many Requests"),
    ("500", 500, 20500, "internal server error"),
    ("503", 503, 20503, "Service unavailable"),
])
def test_faults_reach_the_sdk_as_twilio_rest_exceptions(fake_twilio, kind, status, code, words):
    answers: list[requests.Response] = []
    http_client = TwilioHttpClient(timeout=10, request_hooks={
        "response": [lambda response, *args, **kwargs: answers.append(response)]})
    client = twilio_client(fake_twilio, http_client=http_client)
    fake_twilio.fail(HANDSET, kind)

    with pytest.raises(TwilioRestException) as error:
        send(client)

    assert (error.value.status, error.value.code) == (status, code)
    assert words in error.value.msg
    body = answers[-1].json()
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    assert body["status"] == status
    assert ("Retry-After" in answers[-1].headers) is (status == 429)
    [logged] = fake_twilio.submissions()
    assert logged["accepted"] is False and logged["sid"] is None and logged["outcome"] == kind


def test_retry_after_of_a_429_is_the_one_asked_for(fake_twilio):
    answers: list[requests.Response] = []
    http_client = TwilioHttpClient(request_hooks={
        "response": [lambda response, *args, **kwargs: answers.append(response)]})
    fake_twilio.fail(HANDSET, "429", retry_after=7)

    with pytest.raises(TwilioRestException):
        send(twilio_client(fake_twilio, http_client=http_client))

    assert answers[-1].headers["Retry-After"] == "7"


@pytest.mark.parametrize(("form", "code"), [
    ({"to": "0612", "from_": SENDER, "body": "x"}, 21211),
    ({"to": HANDSET, "from_": SENDER}, 21602),
    ({"to": HANDSET, "body": "x"}, 21603),
    ({"to": HANDSET, "from_": SENDER, "body": "x" * 1601}, 21617),
])
def test_bad_requests_get_twilio_validation_codes(fake_twilio, form, code):
    with pytest.raises(TwilioRestException) as error:
        twilio_client(fake_twilio).messages.create(**form)

    assert (error.value.status, error.value.code) == (400, code)


def test_scripted_faults_come_in_order_then_messages_are_accepted(fake_twilio):
    client = twilio_client(fake_twilio)
    fake_twilio.script("429", {"kind": "500"}, "21211")

    codes = []
    for _ in range(3):
        with pytest.raises(TwilioRestException) as error:
            send(client)
        codes.append(error.value.code)

    assert codes == [20429, 20500, 21211]
    assert send(client).status == "queued"
    assert [event["outcome"] for event in fake_twilio.submissions()] == [
        "429", "500", "21211", "ok"]


def test_a_destination_fault_can_be_limited_to_some_submissions(fake_twilio):
    client = twilio_client(fake_twilio)
    fake_twilio.fail(HANDSET, "21610", times=1)

    with pytest.raises(TwilioRestException):
        send(client)

    assert send(client, to=OTHER_HANDSET).status == "queued"
    assert send(client).status == "queued"


def test_rate_limit_throttles_submissions_past_the_limit_in_a_second(fake_twilio):
    client = twilio_client(fake_twilio)
    fake_twilio.rate_limit(3)

    outcomes = []
    for index in range(5):
        try:
            send(client, body=f"n{index}")
            outcomes.append("ok")
        except TwilioRestException as error:
            outcomes.append(error.code)

    assert outcomes == ["ok", "ok", "ok", 20429, 20429]
    accepted = fake_twilio.submissions(accepted=True)
    assert busiest_window(event["ts"] for event in accepted) == 3
    assert per_phone(fake_twilio.submissions(), "to") == {HANDSET: 5}


def test_dropped_connection_after_the_request_was_read_leaves_an_accepted_message(fake_twilio):
    fake_twilio.fail(HANDSET, "drop")

    with pytest.raises(requests.exceptions.ConnectionError):
        send(twilio_client(fake_twilio))

    [logged] = fake_twilio.submissions()
    assert logged["accepted"] is True and logged["outcome"] == "drop"
    assert logged["sid"].startswith("SM")


def test_slow_answer_past_the_client_timeout_leaves_an_accepted_message(fake_twilio):
    fake_twilio.fail(HANDSET, "slow", delay=3)
    client = twilio_client(fake_twilio, http_client=TwilioHttpClient(timeout=0.5))

    started = time.monotonic()
    with pytest.raises(requests.exceptions.Timeout):
        send(client)

    assert time.monotonic() - started < 2.5
    [logged] = fake_twilio.submissions()
    assert logged["accepted"] is True and logged["outcome"] == "slow"


def test_status_callbacks_are_signed_as_the_sdk_validates_them(fake_twilio, webhooks):
    callback = webhooks.url + "/api/webhooks/twilio/status"
    fake_twilio.finish_with(OTHER_HANDSET, "undelivered", 30003)
    client = twilio_client(fake_twilio)

    delivered = send(client, status_callback=callback)
    undelivered = send(client, to=OTHER_HANDSET, status_callback=callback)

    eventually(lambda: len(webhooks.posts) == 4)
    by_sid: dict[str, list[dict]] = {}
    for post in webhooks.posts:
        assert webhooks.valid(post, fake_twilio.auth_token)
        assert not webhooks.valid(post, "another-token")
        by_sid.setdefault(post["params"]["MessageSid"], []).append(post["params"])
    assert [p["MessageStatus"] for p in by_sid[delivered.sid]] == ["sent", "delivered"]
    assert [p["MessageStatus"] for p in by_sid[undelivered.sid]] == ["sent", "undelivered"]
    final = by_sid[undelivered.sid][-1]
    assert final["ErrorCode"] == "30003" and final["SmsStatus"] == "undelivered"
    assert final["To"] == OTHER_HANDSET and final["From"] == SENDER
    assert final["AccountSid"] == fake_twilio.account_sid and final["ApiVersion"] == "2010-04-01"
    assert "ErrorCode" not in by_sid[delivered.sid][-1]
    assert client.messages(delivered.sid).fetch().status == "delivered"
    assert client.messages(delivered.sid).fetch().price == "-0.00790"
    assert {event["http_status"] for event in fake_twilio.callbacks()} == {200}


def test_a_failed_message_gets_one_failed_callback(fake_twilio, webhooks):
    fake_twilio.finish_with(HANDSET, "failed", 30008)
    client = twilio_client(fake_twilio)
    callback = webhooks.url + "/api/webhooks/twilio/status"

    failed = send(client, status_callback=callback)
    later = send(client, to=OTHER_HANDSET, status_callback=callback)

    # The later message's final callback is due after any second one of the failed message.
    eventually(lambda: [p["params"]["MessageSid"] for p in webhooks.posts].count(later.sid) == 2)
    [post] = [p for p in webhooks.posts if p["params"]["MessageSid"] == failed.sid]
    assert (post["params"]["MessageStatus"], post["params"]["ErrorCode"]) == ("failed", "30008")


def test_forged_and_missing_signatures_do_not_validate(fake_twilio, webhooks):
    fake_twilio.settings(auto_callbacks=False)
    callback = webhooks.url + "/api/webhooks/twilio/status"
    message = send(twilio_client(fake_twilio), status_callback=callback)

    fake_twilio.send_status(message.sid, "delivered", signature="forged")
    fake_twilio.send_status(message.sid, "delivered", signature="missing")
    fake_twilio.send_status(message.sid, "delivered")

    forged, missing, valid = webhooks.posts
    assert not webhooks.valid(forged, fake_twilio.auth_token)
    assert "X-Twilio-Signature" not in missing["headers"]
    assert webhooks.valid(valid, fake_twilio.auth_token)
    assert forged["params"] == valid["params"]


def test_callbacks_are_signed_over_the_public_url_and_posted_to_loopback(fake_twilio, webhooks):
    public = "https://hub.example.com/api/webhooks/twilio/status"
    fake_twilio.route("https://hub.example.com", webhooks.url)

    send(twilio_client(fake_twilio), status_callback=public)

    posts = eventually(lambda: len(webhooks.posts) == 2 and webhooks.posts)
    assert all(post["path"] == "/api/webhooks/twilio/status" for post in posts)
    assert all(webhooks.valid(post, fake_twilio.auth_token, url=public) for post in posts)
    assert not webhooks.valid(posts[0], fake_twilio.auth_token)


def test_inbound_messages_are_signed_and_the_answer_comes_back(fake_twilio, webhooks):
    url = webhooks.url + "/api/webhooks/twilio/inbound"

    answer = fake_twilio.send_inbound(url, from_=HANDSET, to=SENDER, body="STOP")

    assert answer["http_status"] == 200 and answer["body"] == "<Response/>"
    assert answer["content_type"] == "text/xml"
    [post] = webhooks.posts
    assert webhooks.valid(post, fake_twilio.auth_token)
    params = post["params"]
    assert (params["From"], params["To"], params["Body"]) == (HANDSET, SENDER, "STOP")
    assert params["MessageSid"] == answer["sid"] and params["SmsStatus"] == "received"
    assert params["AccountSid"] == fake_twilio.account_sid and params["NumSegments"] == "1"


def test_process_fake_outlives_a_killed_sender_and_logs_to_jsonl(fake_twilio_process):
    fake = fake_twilio_process
    fake.fail(OTHER_HANDSET, "slow", delay=30)
    sender = subprocess.Popen([sys.executable, "-c", (
        "import sys; from twilio.rest import Client;"
        "c = Client(sys.argv[1], sys.argv[2]); c.api.base_url = sys.argv[3];"
        f"c.messages.create(to='{OTHER_HANDSET}', from_='{SENDER}', body='in flight')"),
        fake.account_sid, fake.auth_token, fake.api_base])
    eventually(lambda: fake.submissions(), timeout=20)

    sender.kill()
    sender.wait()

    assert send(twilio_client(fake)).status == "queued"
    fake.stop()
    logged = [(event["to"], event["accepted"]) for event in fake.submissions()]
    assert logged == [(OTHER_HANDSET, True), (HANDSET, True)]
    assert fake.process.returncode is not None


@pytest.mark.parametrize(("timestamps", "busiest"), [
    ([], 0), ([5.0], 1), ([0.0, 0.5, 0.99], 3), ([0.0, 1.0], 1),
    ([0.6, 0.7, 1.2, 1.3], 4),  # straddling a clock second still counts as one window
    ([3.0, 0.9, 2.05, 1.1, 1.5], 3),
])
def test_busiest_window_counts_any_one_second_window(timestamps, busiest):
    assert busiest_window(timestamps) == busiest


# --- SMPP ---------------------------------------------------------------------------------


class SmppSession:
    """smpplib's Client as an SMPP application uses it: handlers, and a read loop."""

    def __init__(self, smsc: FakeSmsc, *, error_handler: bool = True) -> None:
        self.client = smpplib.client.Client(smsc.host, smsc.port, timeout=0.1,
                                            allow_unknown_opt_params=True)
        self.sent: list = []
        self.received: list = []
        self.errors: list = []
        self.client.set_message_sent_handler(lambda pdu: self.sent.append(pdu))
        self.client.set_message_received_handler(lambda pdu: self.received.append(pdu))
        if error_handler:
            self.client.set_error_pdu_handler(lambda pdu: self.errors.append(pdu))
        self.client.connect()

    def bind(self, smsc: FakeSmsc, **overrides: str):
        return self.client.bind_transceiver(
            system_id=overrides.get("system_id", smsc.system_id),
            password=overrides.get("password", smsc.password))

    def submit(self, text: str, dest: str = HANDSET, **kwargs: Any) -> list:
        """The whole text: one submit_sm, or one per UDH part past one segment."""
        parts, coding, esm_class = smpplib.gsm.make_parts(text)
        return [self.client.send_message(
            source_addr_ton=smpplib.consts.SMPP_TON_INTL, source_addr=SENDER,
            dest_addr_ton=smpplib.consts.SMPP_TON_INTL, destination_addr=dest,
            short_message=part, data_coding=coding, esm_class=esm_class,
            registered_delivery=kwargs.get("registered_delivery", 1)) for part in parts]

    def pump(self, until: Callable[[], Any], timeout: float = 5.0) -> None:
        """Read and act on PDUs until ``until()`` holds."""
        deadline = time.monotonic() + timeout
        while not until():
            assert time.monotonic() < deadline, "condition not met while reading PDUs"
            with contextlib.suppress(TimeoutError):
                self.client.read_once(auto_send_enquire_link=False)

    def close(self) -> None:
        if self.client.state != smpplib.consts.SMPP_CLIENT_STATE_CLOSED:
            self.client.disconnect()


@pytest.fixture
def smpp_session(fake_smsc) -> Iterator[Callable[..., SmppSession]]:
    sessions: list[SmppSession] = []

    def open_session(bind: bool = True, **kwargs: Any) -> SmppSession:
        session = SmppSession(fake_smsc, **kwargs)
        sessions.append(session)
        if bind:
            session.bind(fake_smsc)
        return session

    yield open_session
    for session in sessions:
        session.close()


def receipt_fields(pdu) -> dict[str, str]:
    return dict(re.findall(r"(\w+(?: date)?):(\S*)", pdu.short_message.decode()))


def test_smpplib_binds_transceiver_and_bad_credentials_are_refused(fake_smsc, smpp_session):
    answer = smpp_session(bind=False).bind(fake_smsc)

    assert answer.status == 0 and answer.system_id == b"fake-smsc"
    for overrides, status in (({"password": "wrong"}, 0x0E), ({"system_id": "nobody"}, 0x0F)):
        with pytest.raises(smpplib.exceptions.PDUError) as error:
            smpp_session(bind=False).bind(fake_smsc, **overrides)
        assert error.value.args[1] == status
    binds = [event["status"] for event in fake_smsc.events() if event["event"] == "bind"]
    assert binds == [0, 0x0E, 0x0F]


def test_submit_sm_gets_a_message_id_and_a_receipt_with_tlvs_and_text(fake_smsc, smpp_session):
    session = smpp_session()

    [submitted] = session.submit("Hello there")
    session.pump(lambda: session.sent and session.received)

    [resp] = session.sent
    assert resp.sequence == submitted.sequence and resp.status == 0
    message_id = resp.message_id.decode()
    [receipt] = session.received
    assert receipt.esm_class & MESSAGE_TYPE_BITS == SMSC_DELIVERY_RECEIPT
    assert receipt.receipted_message_id.decode() == message_id
    assert receipt.message_state == smpplib.consts.SMPP_MESSAGE_STATE_DELIVERED
    assert receipt.source_addr.decode() == HANDSET and receipt.destination_addr.decode() == SENDER
    fields = receipt_fields(receipt)
    assert fields["id"] == message_id and fields["stat"] == "DELIVRD"
    assert (fields["sub"], fields["dlvrd"], fields["err"]) == ("001", "001", "000")
    assert re.fullmatch(r"\d{10}", fields["submit date"]) and fields["text"] == "Hello"
    [logged] = fake_smsc.submissions()
    assert (logged["dest"], logged["text"], logged["message_id"]) == (HANDSET, "Hello there",
                                                                       message_id)
    assert (logged["parts"], logged["udh"], logged["data_coding"]) == (1, None, 0)
    assert logged["registered_delivery"] == 1 and logged["outcome"] == "ok"


def test_a_three_part_udh_message_gets_an_id_and_a_receipt_per_part(fake_smsc, smpp_session):
    session = smpp_session()

    submitted = session.submit(LONG_GSM_TEXT)
    session.pump(lambda: len(session.received) == 3)

    ids = [resp.message_id.decode() for resp in session.sent]
    assert len(submitted) == 3 and len(set(ids)) == 3
    assert [r.receipted_message_id.decode() for r in session.received] == ids
    logged = fake_smsc.submissions()
    assert [(event["part"], event["parts"]) for event in logged] == [(1, 3), (2, 3), (3, 3)]
    assert len({event["ref"] for event in logged}) == 1
    assert [event["udh"] for event in logged] == [
        f"050003{logged[0]['ref']:02x}03{part:02x}" for part in (1, 2, 3)]
    assert "".join(event["text"] for event in logged) == LONG_GSM_TEXT
    assert [event["message_id"] for event in logged] == ids


def test_ucs2_text_is_decoded_in_the_log(fake_smsc, smpp_session):
    session = smpp_session()

    session.submit("Привет 👋")
    session.pump(lambda: session.sent)

    [logged] = fake_smsc.submissions()
    assert (logged["data_coding"], logged["text"]) == (8, "Привет 👋")


def test_receipts_out_of_order_duplicated_text_only_with_hex_ids(fake_smsc, smpp_session):
    fake_smsc.configure(receipt_form="text", receipt_id_format="hex", receipt_order="reverse",
                        duplicate_receipts=True)
    session = smpp_session()

    session.submit(LONG_GSM_TEXT)
    session.pump(lambda: len(session.received) == 6)

    ids = [resp.message_id.decode() for resp in session.sent]
    assert all(pdu.receipted_message_id is None and pdu.message_state is None
               for pdu in session.received)
    text_ids = [receipt_fields(pdu)["id"] for pdu in session.received]
    expected = [format(int(ids[part]), "x") for part in (2, 2, 1, 1, 0, 0)]
    assert text_ids == expected
    assert all(re.search(r"[a-f]", text_id) for text_id in text_ids)


def test_hex_message_ids_with_decimal_ids_in_the_receipt_text(fake_smsc, smpp_session):
    fake_smsc.configure(id_format="hex", receipt_id_format="decimal")
    session = smpp_session()

    session.submit("Hi")
    session.pump(lambda: session.received)

    message_id = session.sent[0].message_id.decode()
    [receipt] = session.received
    assert receipt.receipted_message_id.decode() == message_id
    assert receipt_fields(receipt)["id"] == str(int(message_id, 16))


def test_final_states_per_part_reach_the_receipts(fake_smsc, smpp_session):
    fake_smsc.configure(stats={HANDSET: ["DELIVRD", {"stat": "UNDELIV", "err": "034"},
                                         "DELIVRD"]})
    session = smpp_session()

    session.submit(LONG_GSM_TEXT)
    session.pump(lambda: len(session.received) == 3)

    states = [(pdu.message_state, receipt_fields(pdu)["stat"], receipt_fields(pdu)["err"],
               receipt_fields(pdu)["dlvrd"]) for pdu in session.received]
    assert states == [(2, "DELIVRD", "000", "001"), (5, "UNDELIV", "034", "000"),
                      (2, "DELIVRD", "000", "001")]


def test_throttled_submit_raises_esme_rthrottled_in_smpplib(fake_smsc, smpp_session):
    fake_smsc.fail(HANDSET, "throttle", times=1)
    session = smpp_session(error_handler=False)

    session.submit("first")
    with pytest.raises(smpplib.exceptions.PDUError) as error:
        session.pump(lambda: False)

    assert error.value.args[1] == THROTTLED
    session.submit("again")
    session.pump(lambda: session.sent)
    assert [(event["status"], event["message_id"] is None) for event in
            fake_smsc.submissions()] == [(THROTTLED, True), (0, False)]


@pytest.mark.parametrize("status", [THROTTLED, MESSAGE_QUEUE_FULL, INVALID_DESTINATION])
def test_error_statuses_answer_the_submit_they_belong_to(fake_smsc, smpp_session, status):
    fake_smsc.script("ok", {"kind": "status", "status": status})
    session = smpp_session()

    first, second = session.submit("one") + session.submit("two")
    session.pump(lambda: session.sent and session.errors)

    assert session.sent[0].sequence == first.sequence
    [error] = session.errors
    assert (error.sequence, error.status, error.command) == (second.sequence, status,
                                                             "submit_sm_resp")


def test_a_delayed_submit_sm_resp_comes_after_a_later_ones(fake_smsc, smpp_session):
    fake_smsc.script({"kind": "delay", "delay_ms": 300}, "ok")
    session = smpp_session()

    first, second = session.submit("slow") + session.submit("fast")
    session.pump(lambda: len(session.sent) == 2)

    assert [resp.sequence for resp in session.sent] == [second.sequence, first.sequence]
    assert [event["outcome"] for event in fake_smsc.submissions()] == ["delay", "ok"]


def test_no_receipt_unless_registered_delivery_asks(fake_smsc, smpp_session):
    session = smpp_session()

    session.submit("no receipt", registered_delivery=0)
    session.submit("receipt")
    session.pump(lambda: session.received)

    # Receipts leave in submission order: the first one, had it been sent, came first.
    [receipt] = session.received
    assert receipt.receipted_message_id == session.sent[1].message_id


def test_a_withheld_submit_sm_resp_never_comes_while_enquire_link_does(fake_smsc,
                                                                       smpp_session):
    fake_smsc.script("withhold")
    session = smpp_session()
    session.submit("lost in the window")

    session.client.send_pdu(smpplib.smpp.make_pdu("enquire_link", client=session.client))
    answer = session.client.read_pdu()

    # The SMSC answers in order: a submit_sm_resp on its way would have come first.
    assert answer.command == "enquire_link_resp"
    [logged] = fake_smsc.submissions()
    assert logged["outcome"] == "withhold" and logged["status"] is None


def test_the_smsc_unbinds_mid_window_then_closes(fake_smsc, smpp_session):
    fake_smsc.script("withhold", "withhold")
    session = smpp_session()
    session.submit("one")
    session.submit("two")
    eventually(lambda: len(fake_smsc.submissions()) == 2)

    fake_smsc.unbind_all()

    assert session.client.read_pdu().command == "unbind"
    with pytest.raises(smpplib.exceptions.ConnectionError):
        session.pump(lambda: False, timeout=3)
    assert [event["outcome"] for event in fake_smsc.submissions()] == ["withhold", "withhold"]
    assert [event["by"] for event in fake_smsc.events() if event["event"] == "unbind"] == [
        "smsc"]


def test_an_unbind_fault_answers_a_submit_with_unbind(fake_smsc, smpp_session):
    fake_smsc.script("ok", "unbind")
    session = smpp_session()
    session.submit("one")
    session.submit("two")

    commands = [session.client.read_pdu().command for _ in range(2)]

    assert commands == ["submit_sm_resp", "unbind"]


def test_a_dropped_connection_mid_window(fake_smsc, smpp_session):
    fake_smsc.script("withhold", "drop")
    session = smpp_session()
    session.submit("one")
    session.submit("two")

    with pytest.raises(smpplib.exceptions.ConnectionError):
        session.pump(lambda: False, timeout=3)

    assert [event["outcome"] for event in fake_smsc.submissions()] == ["withhold", "drop"]
    assert [event["event"] for event in fake_smsc.events()][-2:] == ["drop", "close"]


def test_receipts_wait_for_the_next_bind_when_the_connection_is_lost(fake_smsc, smpp_session):
    fake_smsc.configure(receipt_delay_ms=300)
    first = smpp_session()
    first.submit("before the cut")
    first.pump(lambda: first.sent)
    message_id = first.sent[0].message_id.decode()

    fake_smsc.drop_all()
    second = smpp_session()
    second.pump(lambda: second.received)

    assert second.received[0].receipted_message_id.decode() == message_id


def test_a_manual_receipt_can_be_sent_again_later(fake_smsc, smpp_session):
    fake_smsc.configure(auto_receipts=False)
    session = smpp_session()
    session.submit("Hi")
    session.pump(lambda: session.sent)
    message_id = session.sent[0].message_id.decode()

    fake_smsc.send_receipt(message_id, "ENROUTE", form="tlv")
    fake_smsc.send_receipt(message_id, "EXPIRED", err="005")
    session.pump(lambda: len(session.received) == 2)

    enroute, expired = session.received
    assert (enroute.message_state, enroute.short_message) == (1, b"")
    assert (expired.message_state, receipt_fields(expired)["stat"]) == (3, "EXPIRED")
    eventually(lambda: [event["resp_status"] for event in fake_smsc.receipts()] == [0, 0])


def test_mobile_originated_messages_arrive_as_deliver_sm(fake_smsc, smpp_session):
    session = smpp_session()

    with ThreadPoolExecutor(1) as pool:
        gsm = pool.submit(fake_smsc.send_mo, HANDSET, SENDER, "STOP")
        session.pump(lambda: gsm.done() and len(session.received) == 1)
        ucs2 = pool.submit(fake_smsc.send_mo, HANDSET, SENDER, "Стоп")
        session.pump(lambda: ucs2.done() and len(session.received) == 2)

    stop, unicode_stop = session.received
    assert stop.esm_class == 0 and stop.short_message == b"STOP" and stop.data_coding == 0
    assert stop.source_addr.decode() == HANDSET and stop.destination_addr.decode() == SENDER
    assert unicode_stop.data_coding == 8
    assert unicode_stop.short_message.decode("utf-16-be") == "Стоп"
    assert gsm.result()["resp_status"] == 0 and ucs2.result()["resp_status"] == 0


def test_a_raw_pdu_reaches_the_esme_and_its_answer_is_logged(fake_smsc, smpp_session):
    session = smpp_session()

    with ThreadPoolExecutor(1) as pool:
        sent = pool.submit(fake_smsc.send_pdu, 0x00000015)
        session.pump(sent.done)
    session.client.send_pdu(smpplib.smpp.make_pdu("enquire_link", client=session.client))

    assert session.client.read_pdu().command == "enquire_link_resp"
    assert (sent.result()["resp_command"], sent.result()["resp_status"]) == (
        "enquire_link_resp", 0)
    assert [e["event"] for e in fake_smsc.events()][-2:] == ["pdu", "enquire_link"]


def test_client_unbind_is_answered_and_logged(fake_smsc, smpp_session):
    session = smpp_session()

    answer = session.client.unbind()

    assert answer.command == "unbind_resp" and answer.status == 0
    eventually(lambda: [e["event"] for e in fake_smsc.events()][-2:] == ["unbind", "close"])


def test_smpplib_cooperates_with_gevent_after_monkey_patching(fake_smsc):
    fake_smsc.configure(receipt_delay_ms=300)

    run = subprocess.run([sys.executable, "-m", "tests.fakes.smpplib_under_gevent",
                          fake_smsc.host, str(fake_smsc.port), fake_smsc.system_id,
                          fake_smsc.password], cwd=ROOT, capture_output=True, text=True,
                         timeout=30)

    assert run.returncode == 0, run.stderr[-3000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["patched"] is True
    assert len(seen["ids"]) == 4 and sorted(seen["receipts"]) == sorted(seen["ids"])
    assert seen["ticks"] >= 10  # the ticker ran while the reader waited in recv
    assert [event["message_id"] for event in fake_smsc.submissions()] == seen["ids"]


def test_the_fake_smsc_logs_to_jsonl_that_survives_it(fake_smsc, smpp_session):
    session = smpp_session()
    session.submit("logged")
    session.pump(lambda: session.received)

    fake_smsc.stop()

    lines = [json.loads(line) for line in Path(fake_smsc.log_path).read_text().splitlines()]
    assert [line["event"] for line in lines if line["event"] in {"submit", "receipt"}] == [
        "submit", "receipt"]
    assert fake_smsc.submissions()[0]["text"] == "logged"
