"""Messages sent through a live hub with ``SMS_PROVIDER=smpp`` to the fake SMSC: delivered,
in parts, throttled, across a lost bind, their receipts answered only once stored and
their words of progress shown. The fake's own log says what reached the SMSC."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import smpplib.smpp

from tests.fakes.eventlog import per_phone
from tests.support import SMS_SENDER as SENDER
from tests.support import (
    LiveServer,
    eventually,
    register_user,
    rows_locked,
    smpp_hub_env,
    sql_execute,
    sql_scalar,
)

LONG_UCS2_TEXT = "Привет, как дела? Всё хорошо, спасибо! " * 4  # 3 parts
FINAL = {"DELIVERED", "FAILED", "SUPPRESSED", "EXPIRED", "CANCELED"}
TEMPORARY_APPLICATION_ERROR = 0x64  # ESME_RX_T_APPN: the SMSC sends it again
# While it stands, no receipt can settle a recipient as delivered: the store fails.
# The hub's UPDATE of recipients, waiting for a row lock (PostgreSQL).
STORE_WAITING = ("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                 "AND query LIKE 'UPDATE recipients%'")
HOLD_RECEIPTS = ("CREATE TRIGGER hold_receipts BEFORE UPDATE OF status ON recipients "
                 "WHEN NEW.status = 'DELIVERED' BEGIN SELECT RAISE(ABORT, 'held'); END")


class Sender:
    """The hub's admin sending messages and reading their recipients."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.token = register_user(server, admin=True).token

    def send(self, body: str, phones: list[str]) -> int:
        response = self.server.api.post("/api/messages", self.token,
                                        json={"body": body, "recipients": phones})
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def recipients(self, message_id: int) -> dict[str, dict[str, Any]]:
        answer = self.server.api.get(f"/api/messages/{message_id}/recipients?limit=100",
                                     self.token).json()
        return {recipient["phone"]: recipient for recipient in answer["recipients"]}

    def settled(self, message_id: int, statuses: set[str], timeout: float = 30.0
                ) -> dict[str, dict[str, Any]]:
        """The recipients once every one has a status in ``statuses``."""
        def check():
            recipients = self.recipients(message_id)
            if all(r["status"] in statuses for r in recipients.values()):
                return recipients
            return None
        return eventually(check, timeout=timeout, interval=0.2)


def test_a_message_through_the_smsc_ends_delivered(fake_smsc, hub_factory):
    hub = Sender(hub_factory(smpp_hub_env(fake_smsc), name="smpp"))
    phones = [f"+1555867{n:04d}" for n in range(5)]

    message_id = hub.send("Hello from the hub", phones)

    recipients = hub.settled(message_id, {"DELIVERED"})
    assert {(r["providerStatus"], r["parts"]) for r in recipients.values()} == {("DELIVRD", 1)}
    logged = fake_smsc.submissions()
    assert per_phone(logged, "dest") == {phone[1:]: 1 for phone in phones}
    assert {(e["source"], e["registered_delivery"], e["text"]) for e in logged} == {
        (SENDER[1:], 1, "Hello from the hub")}
    message = hub.server.api.get(f"/api/messages/{message_id}", hub.token).json()
    assert message["status"] == "SENT" and message["successCount"] == 5


def test_a_long_ucs2_text_settles_only_once_every_part_has_its_receipt(fake_smsc,
                                                                      hub_factory):
    fake_smsc.configure(auto_receipts=False, id_format="hex", receipt_id_format="decimal")
    hub = Sender(hub_factory(smpp_hub_env(fake_smsc), name="smpp-parts"))
    delivered, failed, marker = "+15558670001", "+15558670002", "+15558670003"
    long_id = hub.send(LONG_UCS2_TEXT, [delivered, failed])
    assert {r["parts"] for r in hub.settled(long_id, {"SENT"}).values()} == {3}
    parts = {(e["dest"], e["part"]): e["message_id"] for e in fake_smsc.submissions()}
    assert len(parts) == 6

    # Every part but the last of each, in reverse, text-only with decimal ids, then a
    # receipt for another message: once that one is in, the first ones were read too.
    for dest, stat in ((delivered[1:], "DELIVRD"), (failed[1:], "UNDELIV")):
        for part in (2, 1):
            fake_smsc.send_receipt(parts[dest, part], stat if part == 2 else "DELIVRD",
                                   err="034" if stat == "UNDELIV" else None, form="text")
    marker_id = hub.send("marker", [marker])
    hub.settled(marker_id, {"SENT"})
    fake_smsc.send_receipt(fake_smsc.submissions()[-1]["message_id"])
    hub.settled(marker_id, {"DELIVERED"})
    assert {r["status"] for r in hub.recipients(long_id).values()} == {"SENT"}

    for dest in (delivered[1:], failed[1:]):
        fake_smsc.send_receipt(parts[dest, 3], "DELIVRD", form="tlv")
    recipients = hub.settled(long_id, FINAL)
    assert recipients[delivered]["status"] == "DELIVERED"
    assert (recipients[failed]["status"], recipients[failed]["providerStatus"],
            recipients[failed]["providerErrorCode"]) == ("FAILED", "UNDELIV", "034")


def test_a_throttled_recipient_is_sent_again_and_never_failed_for_it(fake_smsc, hub_factory):
    fake_smsc.fail("15558670001", "throttle", times=3)
    hub = Sender(hub_factory(smpp_hub_env(fake_smsc), name="smpp-throttle"))

    message_id = hub.send("Hello", ["+15558670001", "+15558670002"])

    hub.settled(message_id, {"DELIVERED"})
    throttled = [e["status"] for e in fake_smsc.submissions() if e["dest"] == "15558670001"]
    assert throttled == [0x58, 0x58, 0x58, 0]


def test_a_bind_lost_mid_window_leaves_those_unknown_never_resubmitted(fake_smsc,
                                                                       hub_factory):
    fake_smsc.script("ok", "ok", "withhold", "withhold", "drop")
    hub = Sender(hub_factory(smpp_hub_env(fake_smsc, SMPP_WINDOW="5", SMPP_RESPONSE_TIMEOUT="5"),
                             name="smpp-drop"))
    phones = [f"+1555867{n:04d}" for n in range(30)]

    message_id = hub.send("Hello", phones)

    recipients = hub.settled(message_id, {"DELIVERED", "UNKNOWN"})
    logged = fake_smsc.submissions()
    unknown = {phone for phone, r in recipients.items() if r["status"] == "UNKNOWN"}
    taken_unanswered = {"+" + e["dest"] for e in logged if e["outcome"] in ("withhold", "drop")}
    assert len(taken_unanswered) == 3 and taken_unanswered <= unknown
    assert len(unknown) <= 5  # what was in the window when the bind was lost
    assert {recipients[phone]["errorCode"] for phone in unknown} == {"ambiguous_submit"}
    assert len({e["session"] for e in logged}) == 2  # the rest went on a new bind
    # Well past the claim timeout, still nothing was sent twice.
    time.sleep(4)
    assert max(per_phone(fake_smsc.submissions(), "dest").values()) == 1
    assert len(fake_smsc.submissions()) == len(logged)


def test_pdus_the_hub_cannot_read_do_not_stop_it_sending(fake_smsc, hub_factory):
    hub = Sender(hub_factory(smpp_hub_env(fake_smsc), name="smpp-bad-pdus"))
    eventually(lambda: any(e["event"] == "bind" for e in fake_smsc.events()), timeout=10)

    answers = [fake_smsc.send_pdu(0x00000111), fake_smsc.send_pdu(0x00000005, b"\x00\x01"),
               fake_smsc.send_pdu(0x80000004, b"7\x00")]

    assert [(a["resp_command"], a["resp_status"]) for a in answers] == [
        ("generic_nack", 0x03), ("deliver_sm_resp", 0x65), (None, None)]
    hub.settled(hub.send("Still here", ["+15558670001"]), {"DELIVERED"})


def test_an_answer_after_the_timeout_lets_the_receipt_settle_the_unknown_recipient(
        fake_smsc, hub_factory):
    fake_smsc.script({"kind": "delay", "delay_ms": 2500})
    hub = Sender(hub_factory(smpp_hub_env(fake_smsc, SMPP_RESPONSE_TIMEOUT="1"), name="smpp-late"))

    message_id = hub.send("Hello", ["+15558670001"])

    unknown = hub.settled(message_id, {"UNKNOWN"})["+15558670001"]
    assert (unknown["errorCode"], float(unknown["cost"])) == ("ambiguous_submit", 0.0)
    delivered = hub.settled(message_id, {"DELIVERED"})["+15558670001"]
    assert float(delivered["cost"]) > 0 and delivered["providerStatus"] == "DELIVRD"
    assert len(fake_smsc.submissions()) == 1


def test_a_receipt_is_answered_only_once_its_recipient_is_committed(fake_smsc, hub_factory):
    fake_smsc.configure(auto_receipts=False)
    hub = Sender(hub_factory(smpp_hub_env(fake_smsc), name="smpp-receipt-ack"))
    phone = "+15558670001"
    message_id = hub.send("Hello", [phone])
    hub.settled(message_id, {"SENT"})
    sql_execute(hub.server.database_url, HOLD_RECEIPTS)
    smsc_id = fake_smsc.submissions()[0]["message_id"]

    fake_smsc.send_receipt(smsc_id)

    # The store fails: the SMSC hears a temporary error, never ROK, and sends it again.
    eventually(lambda: len(fake_smsc.receipts()) >= 2, timeout=15)
    assert {e["resp_status"] for e in fake_smsc.receipts()} == {TEMPORARY_APPLICATION_ERROR}
    assert hub.recipients(message_id)[phone]["status"] == "SENT"

    sql_execute(hub.server.database_url, "DROP TRIGGER hold_receipts")
    delivered = hub.settled(message_id, {"DELIVERED"})[phone]

    def answered_ok() -> list[dict] | None:
        logged = fake_smsc.receipts()
        return logged if logged[-1]["resp_status"] == 0 else None

    answers = eventually(answered_ok, timeout=10)
    assert [e["resp_status"] for e in answers] == [TEMPORARY_APPLICATION_ERROR] * (
        len(answers) - 1) + [0]
    # ROK came after the commit that settled the recipient, not when the receipt came.
    assert answers[-1]["ts"] >= datetime.fromisoformat(delivered["deliveredAt"]).timestamp()
    assert delivered["providerStatus"] == "DELIVRD"

    # Sent once more once stored (as after an answer lost with its link): nothing moves.
    fake_smsc.send_receipt(smsc_id)
    eventually(lambda: len(fake_smsc.receipts()) == len(answers) + 1, timeout=10)
    assert fake_smsc.receipts()[-1]["resp_status"] == 0
    assert hub.recipients(message_id)[phone] == delivered
    message = hub.server.api.get(f"/api/messages/{message_id}", hub.token).json()
    assert (message["deliveredCount"], message["cost"]) == (1, delivered["cost"])


def test_a_receipt_in_hand_when_the_node_dies_is_sent_again_and_settles(fake_smsc,
                                                                        hub_factory):
    fake_smsc.configure(auto_receipts=False)
    env = smpp_hub_env(fake_smsc)
    hub = Sender(hub_factory(env, backend="postgresql", name="smpp-dies"))
    database = hub.server.database_url
    phone = "+15558670001"
    message_id = hub.send("Hello", [phone])
    hub.settled(message_id, {"SENT"})
    with rows_locked(database, "SELECT id FROM recipients WHERE message_id = :message "
                     "FOR UPDATE", message=message_id):
        fake_smsc.send_receipt(fake_smsc.submissions()[0]["message_id"])

        # The hub has the receipt and is storing it, and the SMSC has had no answer yet.
        eventually(lambda: sql_scalar(database, STORE_WAITING) >= 1, timeout=10)
        assert fake_smsc.receipts() == []
        hub.server.kill()

    again = Sender(hub_factory(env, database_url=database, name="smpp-dies-again"))
    assert again.settled(message_id, {"DELIVERED"})[phone]["providerStatus"] == "DELIVRD"
    [answered] = eventually(fake_smsc.receipts, timeout=10)
    assert (answered["session"], answered["resp_status"]) == (2, 0)

def test_enroute_and_acceptd_show_as_provider_status_until_a_final_receipt(fake_smsc,
                                                                          hub_factory):
    fake_smsc.configure(auto_receipts=False)
    hub = Sender(hub_factory(smpp_hub_env(fake_smsc), name="smpp-progress"))
    phone = "+15558670001"
    message_id = hub.send("Hello", [phone])
    hub.settled(message_id, {"SENT"})
    smsc_id = fake_smsc.submissions()[0]["message_id"]

    def shown_after_receipts(count: int) -> dict[str, Any]:
        """The recipient once the SMSC has had an answer to ``count`` receipts: each is
        answered once the hub has stored it."""
        eventually(lambda: len(fake_smsc.receipts()) == count, timeout=10)
        return hub.recipients(message_id)[phone]

    fake_smsc.send_receipt(smsc_id, "ENROUTE")
    enroute = shown_after_receipts(1)
    assert (enroute["status"], enroute["providerStatus"]) == ("SENT", "ENROUTE")

    # An intermediate notification (esm_class 0x20) with the message_state TLV: ACCEPTD.
    intermediate = smpplib.smpp.make_pdu(
        "deliver_sm", sequence=1, esm_class=0x20, source_addr=phone[1:],
        destination_addr=SENDER[1:], receipted_message_id=smsc_id, message_state=6)
    answer = fake_smsc.send_pdu(0x00000005, intermediate.generate()[16:])
    assert (answer["resp_command"], answer["resp_status"]) == ("deliver_sm_resp", 0)
    accepted = hub.recipients(message_id)[phone]
    assert (accepted["status"], accepted["providerStatus"]) == ("SENT", "ACCEPTD")

    fake_smsc.send_receipt(smsc_id, "DELIVRD")
    delivered = hub.settled(message_id, {"DELIVERED"})[phone]
    assert delivered["providerStatus"] == "DELIVRD"

    fake_smsc.send_receipt(smsc_id, "ENROUTE")  # late: it never hides the final word
    late = shown_after_receipts(3)
    assert (late["status"], late["providerStatus"]) == ("DELIVERED", "DELIVRD")
    assert {e["resp_status"] for e in fake_smsc.receipts()} == {0}
