"""SMPP 3.4 provider: binds to an SMSC as a transceiver and submits through a window.

smpplib encodes and decodes the session's PDUs, ``smpp_pdus`` the four that
every SMS brings and the rest of the wire rules; this module owns the socket.
smpplib's ``Client`` reads a PDU and parses it in one call, so a PDU it cannot
parse is lost with its sequence number and cannot be answered; a read timeout
in the middle of a PDU drops the bytes already read; and an SMSC's ``unbind``
is never answered. Here each bind
has one greenlet reading whole frames, which answers every request it is sent
and hands responses to the submits waiting for them, and one writer, which
sends every PDU queued meanwhile in one write. A submit waits for its own
``submit_sm_resp`` while up to ``SMPP_WINDOW`` others are outstanding on that
bind. The socket is gevent's, so this cooperates whether or not the process
was monkey-patched.

At most once: a ``submit_sm`` written to the socket and not answered (a
timeout, a lost or unbound link) may have been taken by the SMSC, so it comes
back ``UNKNOWN`` and is never written again. Only what certainly did not
reach the SMSC (no bind, still queued when the link was lost,
``ESME_RTHROTTLED``) is sent again or handed back as throttled. A long text
goes as several parts, one after another, so a part the SMSC refuses stops
the rest.

A receipt is the SMSC's until the hub holds it: its ``deliver_sm`` is answered
only when the dispatcher has committed it (or given up on it), through the
``acknowledge`` the receipt carries, and with ``ESME_RX_T_APPN`` when it could
not be stored, so the SMSC sends it again. A person's message is answered the
same way once ``on_inbound`` has stored it, in a greenlet of the provider's.
The reader never waits for either: answers go out in whatever order the
commits come, each with its own sequence number, and one whose bind was lost
meanwhile is dropped, as the SMSC sends the PDU again on a later bind.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import gevent
import gevent.socket
import smpplib.smpp
from gevent.event import AsyncResult, Event
from gevent.lock import Semaphore
from gevent.queue import Queue
from smpplib import consts
from smpplib.client import SimpleSequenceGenerator

from services.messaging.providers.base import (
    Acknowledge,
    InboundHandler,
    InboundSms,
    Outcome,
    OutgoingSms,
    ReceiptHandler,
    SubmitResult,
)
from services.messaging.providers.smpp_pdus import (
    DELIVER_SM,
    ESM_CLASS_INTERMEDIATE,
    ESM_CLASS_RECEIPT,
    ESM_CLASS_TYPE_BITS,
    REJECTION_CODES,
    RESPONSE_BIT,
    RETRYABLE_STATUSES,
    SUBMIT_SM_RESP,
    THROTTLED_STATUSES,
    FrameReader,
    IdBase,
    InboundParts,
    LinkLost,
    SubmitSm,
    decode_deliver_sm,
    destination_address,
    encode_deliver_sm_resp,
    hex_status,
    inbound_from_pdu,
    receipt_from_pdu,
    response_message_id,
    source_address,
    split_into_parts,
)

log = logging.getLogger(__name__)

RECONNECT_FIRST_DELAY = 0.5
RECONNECT_MAX_DELAY = 30.0
PART_RETRY_WINDOW = 30.0  # how long a later part may keep meeting throttling or no bind
LATE_IDS_KEPT = 10_000


# One bind ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PartAnswer:
    """What became of one ``submit_sm``.

    ``sent`` is False only when it certainly never reached the SMSC. With
    ``sent`` and no ``status``, it may have: no answer came (``reason`` says why).
    """

    sent: bool
    status: int | None = None
    message_id: str | None = None
    reason: str = ""


class Bind:
    """One ``bind_transceiver`` session: its socket, window, waiting submits and read loop."""

    def __init__(self, provider: SmppProvider, number: int) -> None:
        self.provider = provider
        self.number = number
        self.window = Semaphore(provider.window)
        self.bound = Event()
        self.pending: dict[int, AsyncResult] = {}
        self.overdue: dict[int, int] = {}  # sequence -> recipient, of submits that timed out
        self.sequence = SimpleSequenceGenerator()
        self.sock: gevent.socket.socket | None = None
        self.frames: FrameReader | None = None
        self.outbox: list[tuple[int | None, bytes]] = []  # (awaited sequence, PDU)
        self.outbox_ready = Event()
        self.last_heard = 0.0
        self.runner: gevent.Greenlet | None = None

    def start(self) -> None:
        self.runner = gevent.spawn(self.run)

    def run(self) -> None:
        """Bind, read until the link is lost, then bind again after a growing pause."""
        delay = RECONNECT_FIRST_DELAY
        while self.provider.running:
            try:
                self.connect()
            except (OSError, LinkLost) as exc:
                log.warning("SMPP bind %d to %s:%s failed (%s); again in %.1fs", self.number,
                            self.provider.host, self.provider.port, exc, delay)
                self.close()
                gevent.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_DELAY)
                continue
            delay = RECONNECT_FIRST_DELAY
            helpers = [gevent.spawn(self.write_forever), gevent.spawn(self.keep_alive)]
            try:
                self.read_forever()
            except (OSError, LinkLost) as exc:
                if self.provider.running:
                    log.warning("SMPP bind %d lost: %s", self.number, exc)
            except Exception:  # a fault of ours must not end the bind for good: bind again
                log.exception("SMPP bind %d failed; binding again", self.number)
            finally:
                gevent.killall(helpers)
                self.lose()

    def connect(self) -> None:
        """Open the socket and ``bind_transceiver``; raises ``LinkLost`` when refused."""
        provider = self.provider
        with gevent.Timeout(provider.response_timeout, LinkLost("no bind_transceiver_resp")):
            self.sock = gevent.socket.create_connection((provider.host, provider.port))
            # Each PDU is one small write: Nagle's delay would hold it for the last one's ACK.
            self.sock.setsockopt(gevent.socket.IPPROTO_TCP, gevent.socket.TCP_NODELAY, 1)
            self.frames, self.outbox = FrameReader(self.sock), []
            self.sock.sendall(smpplib.smpp.make_pdu(
                "bind_transceiver", client=self.sequence, system_id=provider.system_id,
                password=provider.password, system_type=provider.system_type).generate())
            answer = self.read_pdu()
        if answer is None or answer.command != "bind_transceiver_resp" or answer.status:
            status = hex_status(answer.status) if answer is not None else "unreadable"
            raise LinkLost(f"bind_transceiver refused ({status}: "
                           f"{consts.DESCRIPTIONS.get(getattr(answer, 'status', -1), '?')})")
        self.last_heard = time.monotonic()
        self.bound.set()
        log.info("SMPP bind %d to %s:%s bound", self.number, provider.host, provider.port)

    def close(self) -> None:
        self.bound.clear()
        if self.sock is not None:
            self.sock.close()
            self.sock = self.frames = None

    def lose(self) -> None:
        """The link is gone: every submit written and not answered may have been taken, so
        is ambiguous; one still in the outbox was never written."""
        self.close()
        self.overdue.clear()
        unwritten = {sequence for sequence, _ in self.outbox}
        waiting, self.pending, self.outbox = self.pending, {}, []
        for sequence, waiter in waiting.items():
            waiter.set(PartAnswer(sent=sequence not in unwritten,
                                  reason="the SMSC connection was lost"))

    def send(self, pdu: Any) -> None:
        """Queue one of smpplib's PDUs for the writer."""
        self.send_bytes(pdu.generate())

    def send_bytes(self, data: bytes, *, awaited: int | None = None) -> None:
        """Queue one encoded PDU for the writer (``awaited``: the sequence of a request
        whose answer a submit waits for). The PDUs queued while the writer waits leave in
        one write."""
        if self.sock is None:
            raise LinkLost("not connected")
        self.outbox.append((awaited, data))
        self.outbox_ready.set()

    def write_forever(self) -> None:
        """The one writer, so PDUs never interleave; with many submits in flight each write
        carries several (one system call instead of one each). A failed write closes the
        socket: what it carried may have been taken, the reader's loss says so."""
        while True:
            self.outbox_ready.wait()
            self.outbox_ready.clear()
            while self.outbox and self.sock is not None:
                batch, self.outbox = self.outbox, []
                try:
                    self.sock.sendall(b"".join(data for _, data in batch))
                except OSError as exc:
                    log.warning("SMPP bind %d: write failed (%s)", self.number, exc)
                    self.close()
                    return

    def read_frame(self) -> tuple[int, int, int, bytes]:
        if self.frames is None:
            raise LinkLost("closed")
        return self.frames.read()

    def read_pdu(self) -> Any | None:
        """The next PDU, parsed by smpplib; ``None`` (after answering it) when it cannot."""
        return self.parse(*self.read_frame())

    def parse(self, command_id: int, status: int, sequence: int, raw: bytes) -> Any | None:
        """A PDU parsed by smpplib; ``None`` (after answering it) when it cannot."""
        try:
            return smpplib.smpp.parse_pdu(raw, client=self.sequence,
                                          allow_unknown_opt_params=True)
        except Exception as exc:  # smpplib's parser fails with whatever the bytes provoke
            log.warning("SMPP bind %d: unreadable PDU 0x%08x seq %d (%s: %s)", self.number,
                        command_id, sequence, type(exc).__name__, exc)
            self.refuse(command_id, status, sequence)
            return None

    def refuse(self, command_id: int, status: int, sequence: int) -> None:
        """Answer a PDU that could not be read: a request gets an error, a response
        settles its submit as unanswered (its status alone, when it says refused)."""
        if command_id & RESPONSE_BIT:
            if status:
                self.settle(sequence, PartAnswer(sent=True, status=status))
            else:
                self.settle(sequence, PartAnswer(sent=True, reason="an unreadable answer"))
        elif command_id == DELIVER_SM:
            self.respond("deliver_sm_resp", sequence, consts.SMPP_ESME_RX_P_APPN)
        else:
            self.respond("generic_nack", sequence, consts.SMPP_ESME_RINVCMDID)

    def respond(self, command: str, sequence: int, status: int = consts.SMPP_ESME_ROK) -> None:
        answer = smpplib.smpp.make_pdu(command, client=self.sequence, status=status)
        answer.sequence = sequence
        self.send(answer)

    def settle(self, sequence: int, answer: PartAnswer) -> None:
        waiter = self.pending.pop(sequence, None)
        if waiter is not None:
            waiter.set(answer)
            return
        recipient_id = self.overdue.pop(sequence, None)
        if recipient_id is not None and answer.status == 0 and answer.message_id:
            self.provider.accepted_late(answer.message_id, recipient_id)
        else:
            log.info("SMPP bind %d: an answer to seq %d, which no submit awaits", self.number,
                     sequence)

    def read_forever(self) -> None:
        while True:
            frame = self.read_frame()
            self.last_heard = time.monotonic()
            if not self.take_common(*frame):
                pdu = self.parse(*frame)
                if pdu is not None:
                    self.act_on(pdu)

    def take_common(self, command_id: int, status: int, sequence: int, raw: bytes) -> bool:
        """A ``submit_sm_resp`` or ``deliver_sm``, the PDUs of every SMS, read without
        smpplib; ``False`` for any other PDU, or a ``deliver_sm`` that does not read."""
        if command_id == SUBMIT_SM_RESP:
            self.settle(sequence, PartAnswer(sent=True, status=status,
                                             message_id=response_message_id(raw)))
            return True
        if command_id == DELIVER_SM:
            pdu = decode_deliver_sm(raw)
            if pdu is None:
                return False
            self.take_delivery(sequence, pdu)
            return True
        return False

    def take_delivery(self, sequence: int, pdu: Any) -> None:
        """Answer a ``deliver_sm`` now, or once the receipt it carries is stored."""
        status = self.provider.take_delivery(pdu, self.answer_later(sequence))
        if status is not None:
            self.send_bytes(encode_deliver_sm_resp(sequence, status))

    def answer_later(self, sequence: int) -> Acknowledge:
        """The ``deliver_sm_resp`` to ``sequence``, for whoever stores its receipt: sent
        once, and only on the connection the ``deliver_sm`` came on (on a new one that
        sequence number means another PDU; the SMSC sends the receipt again there)."""
        sock = self.sock
        answered = False

        def acknowledge(stored: bool) -> None:
            nonlocal answered
            if answered:
                return
            answered = True
            if self.sock is not sock:
                log.info("SMPP bind %d: the link that brought deliver_sm seq %d is gone; "
                         "the SMSC will send it again", self.number, sequence)
                return
            self.send_bytes(encode_deliver_sm_resp(
                sequence, consts.SMPP_ESME_ROK if stored else consts.SMPP_ESME_RX_T_APPN))

        return acknowledge

    def act_on(self, pdu: Any) -> None:
        """Every request is answered; a response goes to the submit that waits for it."""
        command = pdu.command
        if command in ("submit_sm_resp", "generic_nack"):
            message_id = pdu.message_id if command == "submit_sm_resp" else None
            self.settle(pdu.sequence, PartAnswer(
                sent=True, status=pdu.status,
                message_id=message_id.decode("latin-1") if message_id else None))
        elif command == "deliver_sm":
            self.take_delivery(pdu.sequence, pdu)
        elif command == "enquire_link":
            self.respond("enquire_link_resp", pdu.sequence)
        elif command == "unbind":
            self.bound.clear()
            self.respond("unbind_resp", pdu.sequence)
            raise LinkLost("the SMSC unbound")
        elif command == "unbind_resp":
            raise LinkLost("unbound")
        elif not pdu.is_response() and command != "alert_notification":
            self.respond("generic_nack", pdu.sequence, consts.SMPP_ESME_RINVCMDID)

    def keep_alive(self) -> None:
        """``enquire_link`` every interval; a link silent past an answer's time is closed."""
        interval = self.provider.enquire_link_interval
        while True:
            gevent.sleep(interval)
            if time.monotonic() - self.last_heard > interval + self.provider.response_timeout:
                log.warning("SMPP bind %d: no answer to enquire_link; closing", self.number)
                self.close()
                return
            try:
                self.send(smpplib.smpp.make_pdu("enquire_link", client=self.sequence))
            except LinkLost:
                return
            self.provider.deliver_overdue_parts()

    def submit(self, part: SubmitSm, recipient_id: int | None) -> PartAnswer | None:
        """One ``submit_sm`` within the window; waits for its answer or the timeout.
        ``None`` when the bind was lost while the submit waited for room. An answer after
        the timeout still tells ``recipient_id``'s SMSC id (a whole SMS's, not a part's)."""
        with self.window:
            if not self.bound.is_set():
                return None
            sequence = self.sequence.next_sequence()
            waiter = AsyncResult()
            self.pending[sequence] = waiter
            try:
                self.send_bytes(part.encode(sequence), awaited=sequence)
            except LinkLost:
                self.pending.pop(sequence, None)
                return None
            try:
                answer = waiter.get(timeout=self.provider.response_timeout)
            except gevent.Timeout:
                self.pending.pop(sequence, None)
                if recipient_id is not None:
                    self.overdue[sequence] = recipient_id
                return PartAnswer(sent=True, reason="no submit_sm_resp in time")
            if not answer.sent:  # lost before it was written: another bind may take it
                return None
        if answer.status == consts.SMPP_ESME_RINVBNDSTS:
            log.warning("SMPP bind %d: the SMSC says it is not bound; binding again",
                        self.number)
            self.close()
            return PartAnswer(sent=False, reason="the SMSC said the bind was not bound")
        return answer

    def stop(self) -> None:
        if self.bound.is_set():
            with contextlib.suppress(LinkLost):
                self.send(smpplib.smpp.make_pdu("unbind", client=self.sequence))
            with gevent.Timeout(1.0, False):
                while self.outbox:
                    gevent.sleep(0.01)
        if self.runner is not None:
            self.runner.kill()
        self.lose()


# The provider ------------------------------------------------------------------------------

class SmppProvider:
    """``SMS_PROVIDER=smpp``: ``SMPP_BINDS`` transceiver binds of ``SMPP_WINDOW`` each."""

    name = "smpp"
    exactly_once = False

    def __init__(self, *, host: str, port: int, system_id: str, password: str,
                 system_type: str = "", source_addr: str, source_ton: int | None = None,
                 source_npi: int | None = None, window: int = 10, binds: int = 1,
                 response_timeout: float = 10.0, enquire_link_interval: float = 30.0) -> None:
        if not host or not system_id:
            raise ValueError("SMS_PROVIDER=smpp needs SMPP_HOST and SMPP_SYSTEM_ID")
        if window < 1 or binds < 1:
            raise ValueError("SMPP_WINDOW and SMPP_BINDS must be at least 1")
        self.host, self.port = host, port
        self.system_id, self.password, self.system_type = system_id, password, system_type
        self.sender = source_addr
        self.source = source_address(source_addr, source_ton, source_npi)
        self.window = window
        self.max_in_flight = window * binds
        self.response_timeout = response_timeout
        self.enquire_link_interval = enquire_link_interval
        self.binds = [Bind(self, number) for number in range(1, binds + 1)]
        self.resp_ids = IdBase()
        # SMSC id -> recipient, for answers that came after the submit was given up as
        # UNKNOWN: their receipts name the recipient, which has no provider id to match.
        # Kept after the final receipt (the oldest forgotten): refused, it comes again.
        self.late_ids: OrderedDict[str, int] = OrderedDict()
        self.text_ids = IdBase()
        self.inbound_parts = InboundParts()
        self._references = itertools.count(int(time.time()))
        self.running = False
        self.on_receipt: ReceiptHandler | None = None
        self.on_inbound: InboundHandler | None = None
        # People's messages to store, each with the answer owed once it is stored (none
        # for a long message given up waiting for a part: its parts were answered).
        self.inbound_to_store: Queue[tuple[InboundSms, Acknowledge | None]] = Queue()
        self.inbound_storer: gevent.Greenlet | None = None

    def start(self, on_receipt: ReceiptHandler, on_inbound: InboundHandler) -> None:
        self.on_receipt, self.on_inbound = on_receipt, on_inbound
        self.running = True
        self.inbound_storer = gevent.spawn(self.store_inbound_forever)
        for bind in self.binds:
            bind.start()

    def stop(self) -> None:
        self.running = False
        for bind in self.binds:
            bind.stop()
        if self.inbound_storer is not None:
            self.inbound_storer.kill()

    def ready_bind(self, deadline: float) -> Bind | None:
        """The bound bind with the most room in its window; waits until ``deadline``."""
        bound = [bind for bind in self.binds if bind.bound.is_set()]
        if not bound:
            gevent.wait([bind.bound for bind in self.binds], count=1,
                        timeout=max(0.0, deadline - time.monotonic()))
            bound = [bind for bind in self.binds if bind.bound.is_set()]
        return max(bound, key=lambda bind: bind.window.counter, default=None)

    def submit_part(self, part: SubmitSm, recipient_id: int | None = None) -> PartAnswer:
        """One ``submit_sm`` on whichever bind is up, waiting a while for one (a bind lost
        while this waited for room in its window sends it to another, or the next)."""
        deadline = time.monotonic() + self.response_timeout
        while (bind := self.ready_bind(deadline)) is not None:
            answer = bind.submit(part, recipient_id)
            if answer is not None:
                return answer
        return PartAnswer(sent=False, reason="no bind to the SMSC")

    def submit(self, sms: OutgoingSms) -> SubmitResult:
        """Every part in turn; the first answer that is not an acceptance decides."""
        data_coding, esm_class, messages = split_into_parts(sms.body, next(self._references))
        destination = destination_address(sms.phone)
        part_ids: list[str] = []
        for short_message in messages:
            part = SubmitSm(self.source, destination, esm_class, data_coding, short_message)
            answer = self.submit_part(part, sms.recipient_id if len(messages) == 1 else None)
            if part_ids:
                answer = self.retry_later_part(answer, part)
            if answer.sent and answer.status == 0 and answer.message_id:
                part_ids.append(self.resp_ids.read(answer.message_id))
                continue
            return self.outcome(answer, part_ids, len(messages))
        return SubmitResult(Outcome.ACCEPTED, provider_message_id=part_ids[0],
                            part_ids=tuple(part_ids), parts=len(messages))

    def retry_later_part(self, answer: PartAnswer, part: SubmitSm) -> PartAnswer:
        """A part after the first cannot go back to the queue (the parts before it would be
        sent again), so while it certainly was not taken it is sent again here, for a while."""
        deadline = time.monotonic() + PART_RETRY_WINDOW
        pause = RECONNECT_FIRST_DELAY
        while self.not_taken(answer) and time.monotonic() < deadline and self.running:
            gevent.sleep(pause)
            pause = min(pause * 2, RECONNECT_MAX_DELAY)
            answer = self.submit_part(part)
        return answer

    @staticmethod
    def not_taken(answer: PartAnswer) -> bool:
        return not answer.sent or answer.status in THROTTLED_STATUSES

    def outcome(self, answer: PartAnswer, part_ids: list[str], parts: int) -> SubmitResult:
        """The result of a submission stopped at ``answer`` after ``part_ids`` were taken."""
        taken = {"provider_message_id": part_ids[0] if part_ids else None,
                 "part_ids": tuple(part_ids), "parts": parts}
        if answer.sent and answer.status is None:
            return SubmitResult(Outcome.UNKNOWN, **taken, error_code="ambiguous_submit",
                                error_message=f"The SMSC may have taken it: {answer.reason}")
        if not answer.sent and not part_ids:
            return SubmitResult(Outcome.THROTTLED, error_code="smsc_unavailable",
                                error_message=f"Not sent: {answer.reason}",
                                retry_after=self.response_timeout)
        if answer.status in THROTTLED_STATUSES and not part_ids:
            return SubmitResult(Outcome.THROTTLED, error_code="throttled",
                                error_message=consts.DESCRIPTIONS.get(answer.status),
                                provider_error_code=hex_status(answer.status))
        if answer.status == 0:  # accepted, but without the id a receipt would need
            return SubmitResult(Outcome.UNKNOWN, **taken, error_code="ambiguous_submit",
                                error_message="The SMSC accepted it without a message id",
                                provider_error_code=hex_status(0))
        status = answer.status
        code = REJECTION_CODES.get(status, "rejected") if status is not None else "rejected"
        message = (consts.DESCRIPTIONS.get(status, "Refused by the SMSC")
                   if status is not None else f"Not sent: {answer.reason}")
        if part_ids:
            message = f"Part {len(part_ids) + 1} of {parts} refused: {message}"
        return SubmitResult(Outcome.REJECTED, **taken, error_code=code, error_message=message,
                            provider_error_code=hex_status(status) if status is not None
                            else None,
                            retryable=status is None or status in RETRYABLE_STATUSES
                            or status in THROTTLED_STATUSES)

    def accepted_late(self, message_id: str, recipient_id: int) -> None:
        """A ``submit_sm_resp`` after its submit gave up: the SMSC took it after all. Its
        receipt, when it comes, settles the recipient; the oldest of many are forgotten."""
        self.late_ids[self.resp_ids.read(message_id)] = recipient_id
        while len(self.late_ids) > LATE_IDS_KEPT:
            self.late_ids.popitem(last=False)
        log.info("SMPP: recipient %d was accepted after its submit timed out", recipient_id)

    def deliver_overdue_parts(self) -> None:
        """Long inbound messages that waited too long for a part, delivered as far as they came."""
        for partial in self.inbound_parts.overdue():
            log.warning("SMPP: a long inbound message from %s lacks parts; delivered without them",
                        partial.sender)
            self.inbound_to_store.put((partial, None))

    def store_inbound_forever(self) -> None:
        """People's messages go to ``on_inbound`` here, not in a bind's reader, which would
        read nothing meanwhile (not even the answers submits wait for); one at a time, in
        the order they came, so a START never overtakes the STOP before it. Each
        ``deliver_sm`` is answered once its message is stored, or refused for now."""
        for sms, acknowledge in self.inbound_to_store:
            try:
                self.on_inbound(sms)
            except Exception:
                log.exception("SMPP: could not store a message from %s; the SMSC will send "
                              "it again", sms.sender)
                stored = False
            else:
                stored = True
            if acknowledge is not None:
                acknowledge(stored)

    def take_delivery(self, pdu: Any, acknowledge: Acknowledge) -> int | None:
        """A ``deliver_sm``: a receipt to ``on_receipt`` or a message to ``on_inbound``.
        Returns the ``deliver_sm_resp`` status (taken, or a temporary error to be sent
        again when the hub could not take it), or ``None`` for a receipt or a message
        handed on with ``acknowledge``, which answers once it is stored.

        The parts of a long message are answered as they come and held here until the
        message is whole, whose last part is answered once it is stored (an SMSC stops
        delivering once a few of its ``deliver_sm`` go unanswered, so holding every
        part's answer could keep the remaining parts from ever coming)."""
        if pdu.esm_class is None or pdu.data_coding is None:
            log.warning("SMPP: a deliver_sm without its mandatory fields; refused")
            return consts.SMPP_ESME_RX_P_APPN
        kind = pdu.esm_class & ESM_CLASS_TYPE_BITS
        try:
            if kind in (ESM_CLASS_RECEIPT, ESM_CLASS_INTERMEDIATE):
                receipt = receipt_from_pdu(pdu, resp_ids=self.resp_ids, text_ids=self.text_ids)
                if receipt is not None:
                    late = self.late_ids.get(receipt.provider_message_id)
                    self.on_receipt(replace(receipt, recipient_id=late, acknowledge=acknowledge))
                    return None
                log.warning("SMPP: a receipt naming no message or state; ignored")
            elif kind == 0:
                sms, part = inbound_from_pdu(pdu)
                self.deliver_overdue_parts()
                ready = self.inbound_parts.add(sms, part) if part else [sms]
                # Answered once the last of them is stored: its own message when this
                # made one whole, else one its part pushed out (the part itself is held).
                for message in ready:
                    self.inbound_to_store.put(
                        (message, acknowledge if message is ready[-1] else None))
                if ready:
                    return None
            else:
                log.info("SMPP: a deliver_sm of esm_class 0x%02x; ignored", pdu.esm_class)
        except Exception:
            log.exception("SMPP: could not take a deliver_sm; the SMSC will send it again")
            return consts.SMPP_ESME_RX_T_APPN
        return consts.SMPP_ESME_ROK


def build_smpp_provider(config: Mapping[str, Any]) -> SmppProvider:
    """The provider the ``SMPP_*`` settings describe."""
    return SmppProvider(
        host=config["SMPP_HOST"], port=config["SMPP_PORT"],
        system_id=config["SMPP_SYSTEM_ID"], password=config["SMPP_PASSWORD"],
        system_type=config["SMPP_SYSTEM_TYPE"], source_addr=config["SMPP_SOURCE_ADDR"],
        source_ton=config["SMPP_SOURCE_TON"], source_npi=config["SMPP_SOURCE_NPI"],
        window=config["SMPP_WINDOW"], binds=config["SMPP_BINDS"],
        response_timeout=config["SMPP_RESPONSE_TIMEOUT"],
        enquire_link_interval=config["SMPP_ENQUIRE_LINK_INTERVAL"])
