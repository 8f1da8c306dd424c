"""The SMPP provider against the fake SMSC (the `smpp` npm package's server), in this process
under gevent: what each SMSC answer becomes, receipts in every id form, the window's
submits when the bind is lost, and PDUs the provider cannot read. The receipt text, ids and
addresses are pure rules, tested edge by edge at the end."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import gevent
import gevent.event
import pytest
import smpplib.smpp
from smpplib.client import SimpleSequenceGenerator

from services.messaging.providers.base import InboundSms, Outcome, OutgoingSms, ProviderReceipt
from services.messaging.providers.smpp import SmppProvider
from services.messaging.providers.smpp_pdus import (
    REGISTERED_DELIVERY_RECEIPT,
    DeliverSm,
    IdBase,
    InboundParts,
    Part,
    SubmitSm,
    concatenation_header,
    decode_deliver_sm,
    destination_address,
    encode_deliver_sm_resp,
    inbound_from_pdu,
    parse_receipt_text,
    receipt_from_pdu,
    response_message_id,
    source_address,
    split_into_parts,
)
from services.messaging.sms_encoding import analyse_body, decode_gsm7
from tests.fakes.eventlog import per_phone
from tests.fakes.smsc import INVALID_DESTINATION, MESSAGE_QUEUE_FULL, THROTTLED, FakeSmsc

SENDER = "+15017122661"
HANDSET = "+15558675310"
LONG_UCS2_TEXT = "Привет, как дела? Всё хорошо, спасибо! " * 4  # 3 parts of 67 UTF-16 units


class Recorder:
    """A started provider and what it handed back; each receipt is acknowledged as stored
    at once, unless ``acknowledging`` is off."""

    def __init__(self, provider: SmppProvider) -> None:
        self.provider = provider
        self.receipts: list[ProviderReceipt] = []
        self.inbound: list[InboundSms] = []
        self.acknowledging = True
        provider.start(self.take_receipt, self.inbound.append)

    def take_receipt(self, receipt: ProviderReceipt) -> None:
        self.receipts.append(receipt)
        if self.acknowledging:
            receipt.acknowledge(True)

    def submit(self, body: str = "Hello", phone: str = HANDSET, recipient_id: int = 1):
        return self.provider.submit(OutgoingSms(recipient_id, phone, body))

    def wait(self, condition: Callable[[], Any], timeout: float = 10.0) -> None:
        with gevent.Timeout(timeout, AssertionError("condition not met in time")):
            while not condition():
                gevent.sleep(0.02)

    def bound(self) -> None:
        self.wait(lambda: all(bind.bound.is_set() for bind in self.provider.binds))


def in_thread(function: Callable, *args: Any, **kwargs: Any) -> Any:
    """A control call the provider must answer while it runs (the fake waits for it)."""
    return gevent.get_hub().threadpool.apply(function, args, kwargs)


@pytest.fixture
def smpp(fake_smsc: FakeSmsc) -> Iterator[Callable[..., Recorder]]:
    started: list[Recorder] = []

    def start(*, wait_bound: bool = True, **overrides: Any) -> Recorder:
        """A started provider, bound unless told not to wait (a loaded machine may take a
        while; a submit only waits ``response_timeout`` for a bind)."""
        settings = {"host": fake_smsc.host, "port": fake_smsc.port,
                    "system_id": fake_smsc.system_id, "password": fake_smsc.password,
                    "source_addr": SENDER, "response_timeout": 1.0} | overrides
        recorder = Recorder(SmppProvider(**settings))
        started.append(recorder)
        if wait_bound:
            recorder.bound()
        return recorder

    yield start
    for recorder in started:
        recorder.provider.stop()


def test_a_text_is_submitted_with_a_receipt_asked_and_reported_delivered(fake_smsc, smpp):
    smsc = smpp()

    result = smsc.submit("Hello §€")

    assert result.outcome == Outcome.ACCEPTED and result.parts == 1
    [logged] = fake_smsc.submissions()
    assert (logged["dest"], logged["source"], logged["source_ton"], logged["source_npi"]) == (
        HANDSET[1:], SENDER[1:], 1, 1)
    assert (logged["data_coding"], logged["esm_class"], logged["registered_delivery"],
            logged["text"]) == (0, 0, 1, "Hello §€")
    assert result.part_ids == (logged["message_id"],) == (result.provider_message_id,)
    smsc.wait(lambda: smsc.receipts)
    assert smsc.receipts == [ProviderReceipt(result.provider_message_id, "DELIVERED",
                                             provider_status="DELIVRD")]


def test_a_long_ucs2_text_goes_in_udh_parts_each_with_its_own_id(fake_smsc, smpp):
    fake_smsc.configure(receipt_order="reverse")
    smsc = smpp()

    result = smsc.submit(LONG_UCS2_TEXT)

    logged = fake_smsc.submissions()
    assert result.outcome == Outcome.ACCEPTED
    assert result.parts == len(logged) == analyse_body(LONG_UCS2_TEXT).segments == 3
    assert result.part_ids == tuple(event["message_id"] for event in logged)
    assert len(set(result.part_ids)) == 3 and result.provider_message_id == result.part_ids[0]
    assert [(e["data_coding"], e["esm_class"], e["part"], e["parts"]) for e in logged] == [
        (8, 0x40, part, 3) for part in (1, 2, 3)]
    assert len({event["ref"] for event in logged}) == 1
    assert "".join(event["text"] for event in logged) == LONG_UCS2_TEXT
    smsc.wait(lambda: len(smsc.receipts) == 3)
    assert [receipt.provider_message_id for receipt in smsc.receipts] == list(
        reversed(result.part_ids))


@pytest.mark.parametrize(("id_format", "receipt_id_format", "receipt_form"), [
    ("decimal", "same", "tlv+text"),
    ("hex", "same", "tlv"),
    ("hex", "decimal", "text"),
    ("hex", "hex", "text"),
    ("decimal", "hex", "text"),
])
def test_receipts_match_their_parts_whichever_base_the_smsc_writes_ids_in(
        fake_smsc, smpp, id_format, receipt_id_format, receipt_form):
    fake_smsc.configure(id_format=id_format, receipt_id_format=receipt_id_format,
                        receipt_form=receipt_form, duplicate_receipts=True)
    smsc = smpp()

    result = smsc.submit(LONG_UCS2_TEXT)

    smsc.wait(lambda: len(smsc.receipts) == 6)
    assert sorted(receipt.provider_message_id for receipt in smsc.receipts) == sorted(
        result.part_ids * 2)
    if id_format == "hex":
        assert result.part_ids[0] == str(int(fake_smsc.submissions()[0]["message_id"], 16))


@pytest.mark.parametrize(("stat", "err", "status"), [
    ("UNDELIV", "034", "FAILED"),
    ("REJECTD", "011", "FAILED"),
    ("EXPIRED", "005", "FAILED"),
    ("DELETED", "001", "FAILED"),
    ("UNKNOWN", "999", "UNKNOWN"),
    ("ACCEPTD", "000", None),
    ("ENROUTE", "000", None),
])
@pytest.mark.parametrize("form", ["tlv+text", "text"])
def test_final_and_intermediate_states_from_receipts(fake_smsc, smpp, stat, err, status, form):
    fake_smsc.configure(auto_receipts=False)
    smsc = smpp()
    result = smsc.submit()

    fake_smsc.send_receipt(fake_smsc.submissions()[0]["message_id"], stat, err=err, form=form)

    smsc.wait(lambda: smsc.receipts)
    [receipt] = smsc.receipts
    assert (receipt.provider_message_id, receipt.status, receipt.provider_status) == (
        result.provider_message_id, status, stat)
    assert receipt.provider_error_code == (err if err.strip("0") else None)
    # A word of progress shows as providerStatus over the other one, never a final one.
    assert receipt.replaces == {"ACCEPTD": ("ENROUTE",), "ENROUTE": ("ACCEPTD",)}.get(stat)


def test_a_receipt_is_answered_when_acknowledged_in_whatever_order(fake_smsc, smpp):
    fake_smsc.configure(auto_receipts=False)
    smsc = smpp()
    smsc.acknowledging = False
    first, second = smsc.submit(), smsc.submit(phone="+15558675311")
    for submitted in fake_smsc.submissions():
        fake_smsc.send_receipt(submitted["message_id"])
    smsc.wait(lambda: len(smsc.receipts) == 2)
    gevent.sleep(0.3)
    assert fake_smsc.receipts() == []  # taken by the provider, not answered yet

    by_id = {receipt.provider_message_id: receipt for receipt in smsc.receipts}
    by_id[second.provider_message_id].acknowledge(False)
    by_id[first.provider_message_id].acknowledge(True)
    by_id[first.provider_message_id].acknowledge(False)  # answered once: no second answer
    smsc.wait(lambda: len(smsc.receipts) == 3)  # the refused one, sent again
    smsc.receipts[2].acknowledge(True)

    smsc.wait(lambda: len(fake_smsc.receipts()) == 3)
    smsc_ids = {event["dest"]: event["message_id"] for event in fake_smsc.submissions()}
    assert [(e["message_id"], e["resp_status"]) for e in fake_smsc.receipts()] == [
        (smsc_ids["15558675311"], 0x64), (smsc_ids[HANDSET[1:]], 0),
        (smsc_ids["15558675311"], 0)]


def test_an_acknowledgement_after_its_link_was_lost_is_not_sent_on_the_next(fake_smsc, smpp):
    fake_smsc.configure(auto_receipts=False)
    smsc = smpp()
    smsc.acknowledging = False
    smsc.submit()
    fake_smsc.send_receipt(fake_smsc.submissions()[0]["message_id"])
    smsc.wait(lambda: len(smsc.receipts) == 1)

    fake_smsc.drop_all()
    smsc.wait(lambda: len(smsc.receipts) == 2)  # the SMSC sent it again on the new bind
    smsc.receipts[0].acknowledge(True)
    gevent.sleep(0.3)
    assert fake_smsc.receipts() == []  # its sequence number means nothing on this link
    smsc.receipts[1].acknowledge(True)

    smsc.wait(lambda: fake_smsc.receipts())
    [answered] = fake_smsc.receipts()
    assert (answered["session"], answered["resp_status"]) == (2, 0)


@pytest.mark.parametrize("status", [THROTTLED, MESSAGE_QUEUE_FULL])
def test_a_throttled_submit_is_handed_back_untaken_then_sent(fake_smsc, smpp, status):
    fake_smsc.fail(HANDSET[1:], "status", status=status, times=1)
    smsc = smpp()

    throttled = smsc.submit()
    accepted = smsc.submit()

    assert throttled.outcome == Outcome.THROTTLED and throttled.part_ids == ()
    assert throttled.provider_error_code == f"0x{status:02x}"
    assert accepted.outcome == Outcome.ACCEPTED
    assert [(e["status"], e["message_id"] is None) for e in fake_smsc.submissions()] == [
        (status, True), (0, False)]


def test_a_refused_destination_is_rejected_with_the_status_in_hex(fake_smsc, smpp):
    fake_smsc.fail(HANDSET[1:], "status", status=INVALID_DESTINATION)
    smsc = smpp()

    result = smsc.submit()

    assert (result.outcome, result.error_code, result.provider_error_code, result.retryable) == (
        Outcome.REJECTED, "invalid_number", "0x0b", False)


def test_a_later_part_throttled_is_sent_again_alone(fake_smsc, smpp):
    fake_smsc.script("ok", "throttle")
    smsc = smpp()

    result = smsc.submit(LONG_UCS2_TEXT)

    logged = fake_smsc.submissions()
    assert result.outcome == Outcome.ACCEPTED and len(result.part_ids) == 3
    assert [(event["part"], event["status"]) for event in logged] == [
        (1, 0), (2, THROTTLED), (2, 0), (3, 0)]


def test_a_withheld_answer_is_unknown_and_never_sent_again(fake_smsc, smpp):
    fake_smsc.script("withhold")
    smsc = smpp(response_timeout=0.5)

    result = smsc.submit()
    after = smsc.submit(phone="+15558675311")

    assert (result.outcome, result.error_code) == (Outcome.UNKNOWN, "ambiguous_submit")
    assert after.outcome == Outcome.ACCEPTED
    assert per_phone(fake_smsc.submissions(), "dest") == {HANDSET[1:]: 1, "15558675311": 1}


def test_an_answer_after_the_timeout_ties_its_receipt_to_the_recipient(fake_smsc, smpp):
    fake_smsc.script({"kind": "delay", "delay_ms": 1500})
    smsc = smpp(response_timeout=0.5)

    late = smsc.submit(recipient_id=41)
    on_time = smsc.submit(phone="+15558675311", recipient_id=42)

    assert (late.outcome, late.provider_message_id) == (Outcome.UNKNOWN, None)
    smsc.wait(lambda: len(smsc.receipts) == 2)
    by_recipient = {receipt.recipient_id: receipt for receipt in smsc.receipts}
    assert by_recipient[None].provider_message_id == on_time.provider_message_id
    assert (by_recipient[41].status, by_recipient[41].provider_message_id) == (
        "DELIVERED", fake_smsc.submissions()[0]["message_id"])


def test_a_refused_receipt_sent_again_still_names_its_late_answered_recipient(fake_smsc,
                                                                             smpp):
    fake_smsc.script({"kind": "delay", "delay_ms": 1500})
    smsc = smpp(response_timeout=0.5)
    smsc.acknowledging = False

    assert smsc.submit(recipient_id=41).outcome == Outcome.UNKNOWN
    smsc.wait(lambda: smsc.receipts)
    smsc.receipts[0].acknowledge(False)  # the hub could not store it

    smsc.wait(lambda: len(smsc.receipts) == 2)
    assert [(r.recipient_id, r.status) for r in smsc.receipts] == [(41, "DELIVERED")] * 2


@pytest.mark.parametrize("fault", ["drop", "unbind"])
def test_a_lost_bind_makes_the_windows_submits_unknown_then_rebinds(fake_smsc, smpp, fault):
    fake_smsc.script("ok", "withhold", "withhold", fault)
    smsc = smpp(window=4, response_timeout=5.0)
    phones = [f"+1555867{n:04d}" for n in range(12)]

    jobs = [gevent.spawn(smsc.submit, phone=phone, recipient_id=n)
            for n, phone in enumerate(phones)]
    gevent.joinall(jobs, raise_error=True, timeout=20)

    outcomes = {phone: job.value.outcome for phone, job in zip(phones, jobs, strict=True)}
    logged = fake_smsc.submissions()
    assert max(per_phone(logged, "dest").values()) == 1
    by_phone = {"+" + event["dest"]: event for event in logged}
    for phone, outcome in outcomes.items():
        event = by_phone.get(phone)
        if event is not None and event["outcome"] in ("withhold", fault):
            assert outcome == Outcome.UNKNOWN  # taken by the SMSC, never answered
        elif outcome == Outcome.ACCEPTED:
            assert event is not None and event["status"] == 0
    unknown = [phone for phone, outcome in outcomes.items() if outcome == Outcome.UNKNOWN]
    assert 3 <= len(unknown) <= 4  # the window at the loss, no more
    assert set(outcomes.values()) == {Outcome.ACCEPTED, Outcome.UNKNOWN}
    assert len({event["session"] for event in logged}) == 2  # the rest went on a new bind
    binds = [event for event in fake_smsc.events() if event["event"] == "bind"]
    assert len(binds) == 2


def test_without_a_bind_nothing_is_sent_and_the_submit_is_throttled(fake_smsc, smpp):
    smsc = smpp(password="wrong", response_timeout=0.5, wait_bound=False)

    result = smsc.submit()

    assert (result.outcome, result.error_code) == (Outcome.THROTTLED, "smsc_unavailable")
    assert fake_smsc.submissions() == []
    smsc.wait(lambda: [e for e in fake_smsc.events() if e["event"] == "bind"])
    assert {event["status"] for event in fake_smsc.events() if event["event"] == "bind"} == {
        0x0E}


def test_enquire_link_keeps_the_bind_alive(fake_smsc, smpp):
    smsc = smpp(enquire_link_interval=0.2)

    gevent.sleep(1.0)

    assert len([e for e in fake_smsc.events() if e["event"] == "enquire_link"]) >= 3
    assert smsc.submit().outcome == Outcome.ACCEPTED
    assert len([e for e in fake_smsc.events() if e["event"] == "bind"]) == 1


def test_mobile_originated_messages_reach_on_inbound(fake_smsc, smpp):
    smsc = smpp()

    gsm = in_thread(fake_smsc.send_mo, HANDSET, SENDER, "STOP")
    ucs2 = in_thread(fake_smsc.send_mo, HANDSET, SENDER, "Стоп")

    assert (gsm["resp_status"], ucs2["resp_status"]) == (0, 0)
    assert [(m.sender, m.to, m.body) for m in smsc.inbound] == [
        (HANDSET, SENDER, "STOP"), (HANDSET, SENDER, "Стоп")]
    assert smsc.receipts == []


def test_a_persons_message_is_answered_once_stored_while_the_bind_reads_on(fake_smsc, smpp):
    smsc = smpp()
    storing, stored = gevent.event.Event(), gevent.event.Event()

    def slow_store(sms: InboundSms) -> None:  # a database that takes its time
        storing.set()
        stored.wait()
        smsc.inbound.append(sms)

    smsc.provider.on_inbound = slow_store
    mo = gevent.get_hub().threadpool.spawn(fake_smsc.send_mo, HANDSET, SENDER, "STOP")
    try:
        smsc.wait(storing.is_set)
        # The bind still reads: a submit meanwhile gets its answer.
        assert smsc.submit().outcome == Outcome.ACCEPTED
        assert not mo.ready()  # the SMSC has no answer while the message is not stored
    finally:
        stored.set()

    assert mo.get(timeout=10)["resp_status"] == 0
    assert [m.body for m in smsc.inbound] == ["STOP"]


def test_a_persons_message_that_cannot_be_stored_is_refused_for_now(fake_smsc, smpp):
    smsc = smpp()

    def failing_store(sms: InboundSms) -> None:
        raise RuntimeError("the database is down")

    smsc.provider.on_inbound = failing_store

    assert in_thread(fake_smsc.send_mo, HANDSET, SENDER, "STOP")["resp_status"] == 0x64


def deliver_sm_body(**fields: Any) -> bytes:
    return smpplib.smpp.make_pdu("deliver_sm", sequence=1, **fields).generate()[16:]


def test_pdus_it_cannot_read_are_answered_and_the_bind_goes_on(fake_smsc, smpp):
    smsc = smpp()

    unknown_command = in_thread(fake_smsc.send_pdu, 0x00000111)
    truncated = in_thread(fake_smsc.send_pdu, 0x00000005, b"\x00\x01")
    garbled_receipt = in_thread(fake_smsc.send_pdu, 0x00000005, deliver_sm_body(
        esm_class=0x04, source_addr="15558675310", destination_addr="15017122661",
        short_message=b"\xff\xfe not a receipt stat:"))
    stray_answer = in_thread(fake_smsc.send_pdu, 0x80000004, b"42\x00")

    assert (unknown_command["resp_command"], unknown_command["resp_status"]) == (
        "generic_nack", 0x03)
    assert (truncated["resp_command"], truncated["resp_status"]) == ("deliver_sm_resp", 0x65)
    assert (garbled_receipt["resp_command"], garbled_receipt["resp_status"]) == (
        "deliver_sm_resp", 0)
    assert stray_answer["resp_command"] is None
    assert smsc.receipts == [] and smsc.inbound == []
    assert smsc.submit().outcome == Outcome.ACCEPTED
    assert len([e for e in fake_smsc.events() if e["event"] == "bind"]) == 1


def test_a_frame_length_out_of_step_drops_the_bind_and_binds_again(fake_smsc, smpp):
    smsc = smpp()

    in_thread(fake_smsc.send_pdu, 0x00000015, length=8)

    smsc.wait(lambda: len([e for e in fake_smsc.events() if e["event"] == "bind"]) == 2)
    smsc.bound()
    assert smsc.submit().outcome == Outcome.ACCEPTED


# Pure rules --------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("id:1000000000 sub:001 dlvrd:001 submit date:2511301504 done date:2511301504 "
     "stat:DELIVRD err:000 text:Hello", ("1000000000", "DELIVRD", "000")),
    ("id:3b9aca00 sub:001 dlvrd:000 submit date:2511301504 done date:2511301505 stat:UNDELIV "
     "err:034 text:", ("3b9aca00", "UNDELIV", "034")),
    ("ID:77 SUB:001 DLVRD:001 SUBMIT DATE:2511301504 DONE DATE:2511301504 STAT:delivrd ERR:0",
     ("77", "DELIVRD", "0")),
    ("id:5 stat:DELIVERED err:000", ("5", "DELIVRD", "000")),
    ("id:5 stat:UNDELIVERABLE", ("5", "UNDELIV", None)),
    ("id:12 stat:EXPIRED err:005 text:stat:DELIVRD id:99", ("12", "EXPIRED", "005")),
    ("id:0012 submit date:251130150422 done date:251130150430 stat:ENROUTE err:000",
     ("0012", "ENROUTE", "000")),
    ("stat:DELIVRD err:000", (None, "DELIVRD", "000")),
    ("id: stat: err:", (None, None, None)),
    ("", (None, None, None)),
    ("\ufffd\ufffd not a receipt stat:", (None, None, None)),
    ("messageid:9 stat:REJECTD", (None, "REJECTD", None)),
])
def test_receipt_text_edges(text, expected):
    parsed = parse_receipt_text(text)
    assert (parsed.message_id, parsed.stat, parsed.err) == expected


@pytest.mark.parametrize(("ids", "expected"), [
    (["1000000000", "0001000000000"], ["1000000000", "1000000000"]),
    (["3b9aca00", "3B9ACA01", "10000000"], ["1000000000", "1000000001", "268435456"]),
    (["10000000"], ["10000000"]),  # no letter yet: decimal
    (["msg-7f3a", "abc-123"], ["msg-7f3a", "abc-123"]),
])
def test_ids_are_read_in_the_base_the_smsc_writes(ids, expected):
    base = IdBase()
    assert [base.read(raw) for raw in ids] == expected


def deliver_sm(**fields: Any) -> DeliverSm:
    """A ``deliver_sm`` as the provider gets it: encoded by smpplib, read by the provider."""
    pdu = decode_deliver_sm(smpplib.smpp.make_pdu("deliver_sm", sequence=1, **fields).generate())
    assert pdu is not None
    return pdu


def receipt_pdu(**fields: Any) -> Any:
    return deliver_sm(esm_class=0x04, **fields)


def test_the_tlvs_win_over_the_receipt_text():
    pdu = receipt_pdu(short_message=b"id:1000000009 stat:UNDELIV err:034",
                      receipted_message_id="3b9aca00", message_state=2)
    receipt = receipt_from_pdu(pdu, resp_ids=IdBase(), text_ids=IdBase())
    assert (receipt.provider_message_id, receipt.status, receipt.provider_status) == (
        "1000000000", "DELIVERED", "DELIVRD")
    assert receipt.provider_error_code == "034"


def test_a_receipt_without_id_or_state_is_none():
    ids = {"resp_ids": IdBase(), "text_ids": IdBase()}
    assert receipt_from_pdu(receipt_pdu(short_message=b"stat:DELIVRD"), **ids) is None
    assert receipt_from_pdu(receipt_pdu(short_message=b"id:7 sub:001"), **ids) is None


@pytest.mark.parametrize(("addr", "overrides", "expected"), [
    ("+15017122661", {}, ("15017122661", 1, 1)),
    ("12345", {}, ("12345", 0, 1)),
    ("HubAlerts", {}, ("HubAlerts", 5, 0)),
    ("Hub 2", {}, ("Hub 2", 5, 0)),
    ("12345", {"ton": 3, "npi": 0}, ("12345", 3, 0)),
])
def test_the_sender_address_type_is_derived_unless_set(addr, overrides, expected):
    assert source_address(addr, **overrides) == expected


@pytest.mark.parametrize("addr", ["", "HubAlertsLong", "+1501-712"])
def test_a_sender_smpp_cannot_carry_is_refused_at_start(addr):
    with pytest.raises(ValueError, match="SMPP_SOURCE_ADDR"):
        source_address(addr)


def test_gsm_parts_keep_extension_characters_whole_and_decode_back():
    text = "a" * 152 + "€" + "b" * 160
    data_coding, esm_class, parts = split_into_parts(text, reference=300)

    assert (data_coding, esm_class, len(parts)) == (0, 0x40, analyse_body(text).segments)
    assert [part[:6] for part in parts] == [bytes((5, 0, 3, 300 % 256, 3, n)) for n in (1, 2, 3)]
    assert all(len(part) <= 6 + 153 for part in parts)
    assert "".join(decode_gsm7(part[6:]) for part in parts) == text


@pytest.mark.parametrize(("fields", "expected"), [
    ({"short_message": b"STOP", "data_coding": 0, "source_addr_ton": 1},
     ("+15558675310", "STOP")),
    ({"short_message": b"\x00 home \x1b\x65", "data_coding": 0, "source_addr_ton": 0},
     ("15558675310", "@ home €")),
    ({"short_message": "Стоп".encode("utf-16-be"), "data_coding": 8, "source_addr_ton": 1},
     ("+15558675310", "Стоп")),
    ({"short_message": b"\x05\x00\x03\x2a\x02\x01" + b"part one", "data_coding": 1,
      "esm_class": 0x40, "source_addr_ton": 1}, ("+15558675310", "part one")),
    ({"short_message": b"caf\xe9", "data_coding": 3, "source_addr_ton": 1},
     ("+15558675310", "café")),
])
def test_a_persons_message_is_decoded_by_its_data_coding(fields, expected):
    pdu = deliver_sm(source_addr="15558675310", destination_addr="15017122661",
                     **{"esm_class": 0} | fields)
    inbound, _ = inbound_from_pdu(pdu)
    assert (inbound.sender, inbound.body) == expected
    assert inbound.to == "15017122661"


def _mo_part(text: str, header: bytes = b"", **fields: Any) -> bytes:
    return deliver_sm_body(source_addr="15558675310", source_addr_ton=1,
                           destination_addr="15017122661", data_coding=0,
                           esm_class=0x40 if header else 0,
                           short_message=header + text.encode(), **fields)


def test_a_long_message_in_parts_reaches_on_inbound_once_whole(fake_smsc, smpp):
    """Parts out of order, one repeated, with each kind of concatenation an SMSC sends."""
    smsc = smpp()
    eight_bit = [_mo_part(text, bytes((5, 0x00, 3, 0x2A, 3, number)))
                 for number, text in ((2, "part two, "), (1, "Part one, "), (3, "part three."))]
    sixteen_bit = [_mo_part(text, bytes((6, 0x08, 4, 0x01, 0x02, 2, number)))
                   for number, text in ((2, "world"), (1, "hello "))]
    sar = [_mo_part(text, sar_msg_ref_num=7, sar_total_segments=2, sar_segment_seqnum=number)
           for number, text in ((1, "STOP "), (2, "please"))]
    for body in (eight_bit[0], eight_bit[1], sixteen_bit[0], eight_bit[0], sar[1],
                 eight_bit[2], sixteen_bit[1], sar[0]):
        assert in_thread(fake_smsc.send_pdu, 0x00000005, body)["resp_status"] == 0
    assert [m.body for m in smsc.inbound] == [
        "Part one, part two, part three.", "hello world", "STOP please"]
    assert {(m.sender, m.to) for m in smsc.inbound} == {("+15558675310", "15017122661")}


def test_a_long_message_missing_a_part_is_delivered_with_what_came():
    waiting = InboundParts(wait=0.0)
    first = InboundSms(sender="+15558675310", to="15017122661", body="STOP and ")
    assert waiting.add(first, Part(reference=9, total=3, number=1)) == []
    assert [m.body for m in waiting.overdue()] == ["STOP and "]
    assert waiting.overdue() == []
    # A header whose part number is past its count is not a part at all.
    assert concatenation_header(bytes((0x00, 3, 1, 2, 3))) is None
    assert concatenation_header(bytes((0x00, 3, 1, 2, 2))) == Part(1, 2, 2)


# The PDUs of every SMS, coded without smpplib: byte for byte as smpplib does ---------------

def smpplib_pdu(command: str, sequence: int, **fields: Any) -> bytes:
    pdu = smpplib.smpp.make_pdu(command, client=SimpleSequenceGenerator(), **fields)
    pdu.sequence = sequence
    return pdu.generate()


def smpplib_parse(raw: bytes) -> Any:
    return smpplib.smpp.parse_pdu(raw, client=SimpleSequenceGenerator(),
                                  allow_unknown_opt_params=True)


@pytest.mark.parametrize(("body", "phone", "sender"), [
    ("Hello", HANDSET, SENDER),
    ("Hello", "+447700900123", "HubAlerts"),
    ("€ and [brackets]", HANDSET, "12345"),
    (LONG_UCS2_TEXT, HANDSET, SENDER),
    ("x" * 400, HANDSET, "a sender id far longer than any address field holds"[:11]),
])
def test_a_submit_sm_is_encoded_as_smpplib_encodes_it(body, phone, sender):
    data_coding, esm_class, parts = split_into_parts(body, reference=7)
    source, source_ton, source_npi = source_address(sender)
    dest, dest_ton, dest_npi = destination_address(phone)
    for sequence, short_message in enumerate(parts, start=41):
        ours = SubmitSm(source_address(sender), destination_address(phone), esm_class,
                        data_coding, short_message).encode(sequence)
        assert ours == smpplib_pdu(
            "submit_sm", sequence, source_addr_ton=source_ton, source_addr_npi=source_npi,
            source_addr=source, dest_addr_ton=dest_ton, dest_addr_npi=dest_npi,
            destination_addr=dest, esm_class=esm_class, data_coding=data_coding,
            registered_delivery=REGISTERED_DELIVERY_RECEIPT, short_message=short_message)
        parsed = smpplib_parse(ours)
        assert (parsed.command, parsed.sequence, parsed.destination_addr,
                parsed.short_message) == ("submit_sm", sequence, dest.encode(), short_message)


RECEIPT_TEXT = (b"id:1000000007 sub:001 dlvrd:001 submit date:2611301820 "
                b"done date:2611301820 stat:DELIVRD err:000 text:benchmark")


@pytest.mark.parametrize("fields", [
    {"esm_class": 0x04, "short_message": RECEIPT_TEXT, "receipted_message_id": "3b9aca07",
     "message_state": 2},
    {"esm_class": 0x04, "short_message": RECEIPT_TEXT},
    {"esm_class": 0x04, "short_message": b"", "receipted_message_id": "77", "message_state": 5,
     "user_message_reference": 9},
    {"esm_class": 0x00, "short_message": b"STOP", "data_coding": 0, "source_addr_ton": 1},
    {"esm_class": 0x40, "short_message": b"\x05\x00\x03\x2a\x02\x01part one",
     "data_coding": 1},
    {"esm_class": 0x00, "data_coding": 8, "message_payload": "Стоп".encode("utf-16-be")},
])
def test_a_deliver_sm_is_read_as_smpplib_reads_it(fields):
    raw = smpplib_pdu("deliver_sm", 12, source_addr="15558675310",
                      destination_addr="15017122661", dest_addr_ton=1, **fields)
    ours, theirs = decode_deliver_sm(raw), smpplib_parse(raw)
    assert ours is not None
    for name in DeliverSm.__slots__:
        assert getattr(ours, name) == getattr(theirs, name), name


@pytest.mark.parametrize("body", [b"", b"\x00\x01", b"\x00\x01\x01155586",
                                  deliver_sm_body(short_message=b"x")[:-1],
                                  deliver_sm_body(message_state=2)[:-1]])
def test_a_deliver_sm_cut_short_is_left_to_smpplib(body):
    assert decode_deliver_sm(bytes(16) + body) is None


def test_the_answers_are_encoded_and_read_as_smpplib_does():
    assert encode_deliver_sm_resp(12, 0x65) == smpplib_pdu("deliver_sm_resp", 12, status=0x65)
    for message_id in ("3b9aca07", "1000000007"):
        raw = smpplib_pdu("submit_sm_resp", 3, message_id=message_id)
        assert response_message_id(raw) == smpplib_parse(raw).message_id.decode()
    assert response_message_id(smpplib_pdu("submit_sm_resp", 3, status=0x58)) is None
    assert response_message_id(bytes(16)) is None
