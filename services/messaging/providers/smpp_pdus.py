"""SMPP 3.4 as the hub speaks it, without a socket of its own: frames, addresses, message
ids, delivery receipts, inbound texts and the parts of a long one.

smpplib encodes and decodes the PDUs of a session (binds, ``enquire_link``,
``unbind``, anything unusual); what is here is what smpplib leaves to its
user: where a PDU ends (``FrameReader``), how the SMSC writes addresses, ids
(decimal or hexadecimal) and receipts (TLVs, else the text of SMPP 3.4
appendix B), and how a body is cut into concatenated parts exactly as the hub
counts its segments (``sms_encoding.split_body``).

The four PDUs that every SMS brings (``submit_sm`` and its response, the
receipt's ``deliver_sm`` and its response) are coded here too, byte for byte
as smpplib writes them (tests compare the two): smpplib builds an object of
some fifty attributes per PDU and looks each optional parameter up by a linear
search, which cost about 0.19 ms of CPU per SMS, most of what one bind can
carry on one core; these take a few microseconds. A ``deliver_sm`` that does
not read cleanly here is left to smpplib, as every other PDU is.
"""

from __future__ import annotations

import re
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from smpplib import consts

from services.messaging.providers.base import InboundSms, ProviderReceipt
from services.messaging.sms_encoding import GSM7, decode_gsm7, encode_gsm7, split_body

HEADER = struct.Struct(">LLLL")
HEADER_SIZE = HEADER.size
TLV_HEADER = struct.Struct(">HH")
MAX_PDU_LENGTH = 64 * 1024  # SMPP 3.4 PDUs are far smaller; anything longer is a lost frame
RESPONSE_BIT = 0x80000000
SUBMIT_SM = 0x00000004
SUBMIT_SM_RESP = 0x80000004
DELIVER_SM = 0x00000005
DELIVER_SM_RESP = 0x80000005
# The optional parameters (SMPP 3.4, 5.3.2) a receipt or an inbound text may carry.
TAG_RECEIPTED_MESSAGE_ID = 0x001E
TAG_MESSAGE_PAYLOAD = 0x0424
TAG_MESSAGE_STATE = 0x0427
# A long message's part, when the SMSC says so in TLVs, not a UDH (SMPP 3.4, 5.3.2.22-24).
TAG_SAR_MSG_REF_NUM, TAG_SAR_TOTAL_SEGMENTS, TAG_SAR_SEGMENT_SEQNUM = 0x020C, 0x020E, 0x020F
ADDRESS_MAX = 21  # source_addr and destination_addr, their NUL included

# esm_class bits 2-5 (SMPP 3.4, 5.2.12): the message type; bit 6: a UDH leads the text.
ESM_CLASS_TYPE_BITS = 0x3C
ESM_CLASS_RECEIPT = 0x04
ESM_CLASS_INTERMEDIATE = 0x20
ESM_CLASS_UDHI = 0x40
GSM7_DATA_CODING, IA5_DATA_CODING, UCS2_DATA_CODING = 0x00, 0x01, 0x08
REGISTERED_DELIVERY_RECEIPT = 0x01

THROTTLED_STATUSES = frozenset({consts.SMPP_ESME_RTHROTTLED, consts.SMPP_ESME_RMSGQFUL})
# Refusals the SMSC calls temporary: FAILED, but queued again by an explicit retry.
RETRYABLE_STATUSES = frozenset({consts.SMPP_ESME_RSYSERR, consts.SMPP_ESME_RSUBMITFAIL})
REJECTION_CODES = {consts.SMPP_ESME_RINVDSTADR: "invalid_number",
                   consts.SMPP_ESME_RINVSRCADR: "invalid_sender"}

# message_state (SMPP 3.4, 5.3.2.35) as the receipt text's stat: word.
MESSAGE_STATE_WORDS = {1: "ENROUTE", 2: "DELIVRD", 3: "EXPIRED", 4: "DELETED", 5: "UNDELIV",
                       6: "ACCEPTD", 7: "UNKNOWN", 8: "REJECTD"}
# Long forms some SMSCs write in the text, as the usual seven letters.
STAT_ALIASES = {"DELIVERED": "DELIVRD", "UNDELIVERABLE": "UNDELIV", "REJECTED": "REJECTD",
                "ACCEPTED": "ACCEPTD"}
# The recipient status each stat word leads to; None changes nothing.
STAT_STATUSES: dict[str, str | None] = {
    "DELIVRD": "DELIVERED", "UNDELIV": "FAILED", "REJECTD": "FAILED", "DELETED": "FAILED",
    "EXPIRED": "FAILED", "ACCEPTD": None, "ENROUTE": None, "UNKNOWN": "UNKNOWN"}
# The words of a message on its way, shown as providerStatus. SMSCs send them in either
# order (ACCEPTD is "taken for the handset" to some, "accepted by the SMSC" to others),
# so each replaces the other; neither replaces a final word.
PROGRESS_STATS = ("ACCEPTD", "ENROUTE")

RECEIPT_FIELD = re.compile(r"\b(id|sub|dlvrd|stat|err):(\S*)", re.IGNORECASE)
RECEIPT_TEXT_FIELD = re.compile(r"\btext:", re.IGNORECASE)
HEX_ID = re.compile(r"[0-9a-f]+", re.IGNORECASE)
HEX_LETTER = re.compile(r"[a-f]", re.IGNORECASE)

ALPHANUMERIC_SENDER_MAX = 11
# Concatenation headers in a UDH (3GPP TS 23.040, 9.2.3.24.1 and .8): 8- and 16-bit references.
IEI_CONCATENATED_8BIT, IEI_CONCATENATED_16BIT = 0x00, 0x08
# Parts of a long inbound message wait this long for the rest, at most this many messages.
PARTS_WAIT_SECONDS = 600.0
PARTS_KEPT = 1000

TON_UNKNOWN, TON_INTERNATIONAL, TON_ALPHANUMERIC = 0, 1, 5
NPI_UNKNOWN, NPI_ISDN = 0, 1


class LinkLost(Exception):
    """The bind can no longer be used: closed, reset, unbound, silent, or refused."""


# Addresses, ids and receipts: pure rules ----------------------------------------------------

def source_address(addr: str, ton: int | None = None, npi: int | None = None
                   ) -> tuple[str, int, int]:
    """The sender as SMPP writes it: ``(address, TON, NPI)``.

    ``+`` and digits is an international number (TON 1, NPI 1, without the
    ``+``); bare digits are left to the SMSC (TON 0, NPI 1: a short code or a
    national number); anything else is an alphanumeric sender ID (TON 5, NPI
    0), at most 11 characters as GSM allows. ``ton``/``npi`` override.
    """
    if not addr:
        raise ValueError("SMPP_SOURCE_ADDR must be set: the sender's number or sender ID")
    if addr.startswith("+") and addr[1:].isdigit():
        derived = (addr[1:], TON_INTERNATIONAL, NPI_ISDN)
    elif addr.isdigit():
        derived = (addr, TON_UNKNOWN, NPI_ISDN)
    elif not addr.startswith("+") and len(addr) <= ALPHANUMERIC_SENDER_MAX:
        derived = (addr, TON_ALPHANUMERIC, NPI_UNKNOWN)
    else:
        raise ValueError(f"SMPP_SOURCE_ADDR {addr!r} is neither a number nor an alphanumeric "
                         f"sender ID of at most {ALPHANUMERIC_SENDER_MAX} characters")
    return (derived[0], derived[1] if ton is None else ton, derived[2] if npi is None else npi)


def destination_address(phone: str) -> tuple[str, int, int]:
    """An E.164 number as an international SMPP address: digits, TON 1, NPI 1."""
    return phone.removeprefix("+"), TON_INTERNATIONAL, NPI_ISDN


def handset_address(addr: bytes | None, ton: int | None) -> str:
    """A handset's address from a ``deliver_sm``, in E.164 when it is international."""
    text = (addr or b"").decode("ascii", "replace")
    if ton == TON_INTERNATIONAL and text.isdigit():
        return "+" + text
    return text


class IdBase:
    """Reads one kind of SMSC message id (``submit_sm_resp``'s, or the receipt text's) into
    the hub's form, so that a receipt matches its submit whichever base each writes.

    Numeric ids are kept in decimal without leading zeros; an id with a letter
    ``a``-``f`` is hexadecimal, and once one such id has been seen, every id of
    the same kind is read as hexadecimal. Other ids are kept as written.
    """

    def __init__(self) -> None:
        self.hexadecimal = False

    def read(self, raw: str) -> str:
        text = raw.strip()
        if not HEX_ID.fullmatch(text):
            return text
        if HEX_LETTER.search(text):
            self.hexadecimal = True
        if self.hexadecimal:
            return str(int(text, 16))
        return str(int(text))


@dataclass(frozen=True, slots=True)
class ReceiptText:
    """The fields of a receipt's text that the hub uses; ``None`` where absent."""

    message_id: str | None
    stat: str | None
    err: str | None


def parse_receipt_text(text: str) -> ReceiptText:
    """``id:… sub:… dlvrd:… submit date:… done date:… stat:… err:… text:…`` (SMPP 3.4
    appendix B), any letter case; the free ``text:`` at the end is never read for fields."""
    head = RECEIPT_TEXT_FIELD.split(text, maxsplit=1)[0]
    fields = {name.lower(): value for name, value in RECEIPT_FIELD.findall(head) if value}
    stat = fields.get("stat", "").upper() or None
    return ReceiptText(fields.get("id"), STAT_ALIASES.get(stat, stat), fields.get("err"))


def receipt_from_pdu(pdu: Any, *, resp_ids: IdBase, text_ids: IdBase) -> ProviderReceipt | None:
    """The receipt a ``deliver_sm`` carries: the ``receipted_message_id`` and
    ``message_state`` TLVs first, the text for what they leave out; ``None`` when it
    names no message."""
    text = parse_receipt_text((pdu.short_message or b"").decode("latin-1"))
    if pdu.receipted_message_id:
        message_id = resp_ids.read(pdu.receipted_message_id.decode("latin-1"))
    elif text.message_id:
        message_id = text_ids.read(text.message_id)
    else:
        return None
    stat = MESSAGE_STATE_WORDS.get(pdu.message_state) or text.stat
    if stat is None:
        return None
    err = text.err if text.err and text.err.strip("0") else None
    replaces = (tuple(word for word in PROGRESS_STATS if word != stat)
                if stat in PROGRESS_STATS else None)
    return ProviderReceipt(provider_message_id=message_id, status=STAT_STATUSES.get(stat),
                           provider_status=stat, provider_error_code=err, replaces=replaces)


def decode_short_message(payload: bytes, data_coding: int) -> str:
    """A mobile-originated text: GSM-7 (0), IA5 (1), Latin-1 (3), UCS-2 (8)."""
    if data_coding == GSM7_DATA_CODING:
        return decode_gsm7(payload)
    if data_coding == UCS2_DATA_CODING:
        return payload.decode("utf-16-be", "replace")
    if data_coding == IA5_DATA_CODING:
        return payload.decode("ascii", "replace")
    return payload.decode("latin-1")


@dataclass(frozen=True)
class Part:
    """Where one part of a concatenated message goes: its message's reference, the number of
    parts, and its own number, from 1."""

    reference: int
    total: int
    number: int


def concatenation_header(udh: bytes) -> Part | None:
    """The concatenation element of a user data header, if it has a usable one."""
    index = 0
    while index + 2 <= len(udh):
        iei, length = udh[index], udh[index + 1]
        data = udh[index + 2:index + 2 + length]
        if len(data) < length:
            return None
        if iei == IEI_CONCATENATED_8BIT and length == 3:
            return _usable(Part(data[0], data[1], data[2]))
        if iei == IEI_CONCATENATED_16BIT and length == 4:
            return _usable(Part((data[0] << 8) | data[1], data[2], data[3]))
        index += 2 + length
    return None


def _usable(part: Part) -> Part | None:
    """A part whose count and number make sense (a total of 0 or a number past it do not)."""
    return part if 1 <= part.number <= part.total else None


def inbound_from_pdu(pdu: Any) -> tuple[InboundSms, Part | None]:
    """A person's message from a ``deliver_sm`` without the receipt bit, its UDH dropped, and
    which part of a long message it is: from the UDH, else the ``sar_*`` TLVs, else none."""
    payload = pdu.message_payload or pdu.short_message or b""
    part = None
    if pdu.esm_class & ESM_CLASS_UDHI and payload:
        part = concatenation_header(payload[1:1 + payload[0]])
        payload = payload[1 + payload[0]:]
    elif pdu.sar_msg_ref_num is not None and pdu.sar_total_segments and pdu.sar_segment_seqnum:
        part = _usable(Part(pdu.sar_msg_ref_num, pdu.sar_total_segments, pdu.sar_segment_seqnum))
    sms = InboundSms(sender=handset_address(pdu.source_addr, pdu.source_addr_ton),
                     to=handset_address(pdu.destination_addr, pdu.dest_addr_ton),
                     body=decode_short_message(payload, pdu.data_coding),
                     received_at=datetime.now(UTC))
    return sms, part if part is not None and part.total > 1 else None


class InboundParts:
    """The parts of long inbound messages until each message is whole.

    A phone sends a long text as parts, each its own ``deliver_sm``, in any
    order and sometimes twice; the hub sees one message. Parts are keyed by
    who sent them, to whom and the reference; a message still missing parts
    after ``PARTS_WAIT_SECONDS``, or pushed out by ``PARTS_KEPT`` newer ones,
    is delivered with what came, so a lost part never loses the rest (nor a
    STOP in its first part).
    """

    def __init__(self, wait: float = PARTS_WAIT_SECONDS, kept: int = PARTS_KEPT) -> None:
        self.wait = wait
        self.kept = kept
        self._waiting: OrderedDict[tuple, tuple[float, InboundSms, dict[int, str], int]] = \
            OrderedDict()

    def add(self, sms: InboundSms, part: Part) -> list[InboundSms]:
        """Take a part; returns the messages made whole by it or given up on meanwhile."""
        ready = self.overdue()
        key = (sms.sender, sms.to, part.reference, part.total)
        started, first, texts, total = self._waiting.pop(
            key, (time.monotonic(), sms, {}, part.total))
        texts[part.number] = sms.body
        if len(texts) == total:
            ready.append(_joined(first, texts))
        else:
            self._waiting[key] = (started, first, texts, total)
            while len(self._waiting) > self.kept:
                _, (_, oldest, kept_texts, _) = self._waiting.popitem(last=False)
                ready.append(_joined(oldest, kept_texts))
        return ready

    def overdue(self) -> list[InboundSms]:
        """The messages that waited too long for a part, as far as they came."""
        ready = []
        deadline = time.monotonic() - self.wait
        while self._waiting:
            key, (started, first, texts, _) = next(iter(self._waiting.items()))
            if started > deadline:
                break
            del self._waiting[key]
            ready.append(_joined(first, texts))
        return ready


def _joined(first: InboundSms, texts: dict[int, str]) -> InboundSms:
    return replace(first, body="".join(texts[number] for number in sorted(texts)))


def hex_status(status: int) -> str:
    """An SMPP command status as the hub keeps it: ``0x58``."""
    return f"0x{status:02x}"


@lru_cache(maxsize=64)
def _encoded_parts(body: str) -> tuple[int, tuple[bytes, ...]]:
    """The data coding and encoded parts of a body: the same for every recipient of a
    message, so kept for the next ones rather than counted and encoded again."""
    encoding, texts = split_body(body)
    if encoding == GSM7:
        return GSM7_DATA_CODING, tuple(encode_gsm7(text) for text in texts)
    return UCS2_DATA_CODING, tuple(text.encode("utf-16-be") for text in texts)


def split_into_parts(body: str, reference: int) -> tuple[int, int, list[bytes]]:
    """``(data_coding, esm_class, short_messages)`` for ``body``: one message, or the parts
    of a concatenated one, each led by an 8-bit-reference UDH (IEI 0x00)."""
    data_coding, encoded = _encoded_parts(body)
    if len(encoded) == 1:
        return data_coding, 0, list(encoded)
    total = len(encoded)
    return data_coding, ESM_CLASS_UDHI, [
        bytes((5, 0x00, 3, reference % 256, total, number)) + chunk
        for number, chunk in enumerate(encoded, start=1)]


# The PDUs of every SMS --------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SubmitSm:
    """One ``submit_sm`` asking for a delivery receipt: who from, who to, and what."""

    source: tuple[str, int, int]  # (address, TON, NPI), as ``source_address`` gives them
    destination: tuple[str, int, int]
    esm_class: int
    data_coding: int
    short_message: bytes

    def encode(self, sequence: int) -> bytes:
        """The whole PDU, as smpplib's ``generate`` writes it: empty ``service_type``,
        ``schedule_delivery_time`` and ``validity_period``, zero flags, no TLVs."""
        source, source_ton, source_npi = self.source
        dest, dest_ton, dest_npi = self.destination
        body = b"".join((
            b"\0", bytes((source_ton, source_npi)), _c_string(source),
            bytes((dest_ton, dest_npi)), _c_string(dest),
            bytes((self.esm_class, 0, 0, 0, 0, REGISTERED_DELIVERY_RECEIPT, 0,
                   self.data_coding, 0, len(self.short_message))),
            self.short_message))
        return HEADER.pack(HEADER_SIZE + len(body), SUBMIT_SM, 0, sequence) + body


def _c_string(text: str) -> bytes:
    """An address as a C-Octet String, cut to its field's size as smpplib cuts it."""
    return text[:ADDRESS_MAX - 1].encode("latin-1") + b"\0"


def response_message_id(pdu: bytes) -> str | None:
    """The ``message_id`` of a ``submit_sm_resp``; ``None`` when empty or absent (a
    refusal often has no body)."""
    body = pdu[HEADER_SIZE:]
    end = body.find(b"\0")
    message_id = body if end < 0 else body[:end]
    return message_id.decode("latin-1") or None


def encode_deliver_sm_resp(sequence: int, status: int) -> bytes:
    """The answer to a ``deliver_sm``: its sequence, a status, an empty ``message_id``."""
    return HEADER.pack(HEADER_SIZE + 1, DELIVER_SM_RESP, status, sequence) + b"\0"


@dataclass(frozen=True, slots=True)
class DeliverSm:
    """The fields of a ``deliver_sm`` that ``receipt_from_pdu`` and ``inbound_from_pdu``
    read, under smpplib's names and types."""

    sequence: int
    source_addr_ton: int
    source_addr: bytes
    dest_addr_ton: int
    destination_addr: bytes
    esm_class: int
    data_coding: int
    short_message: bytes
    receipted_message_id: bytes | None = None
    message_state: int | None = None
    message_payload: bytes | None = None
    sar_msg_ref_num: int | None = None
    sar_total_segments: int | None = None
    sar_segment_seqnum: int | None = None


def decode_deliver_sm(pdu: bytes) -> DeliverSm | None:
    """A whole ``deliver_sm`` PDU read, every mandatory field and the TLVs the hub uses;
    ``None`` when it does not read cleanly (smpplib then has its say)."""
    try:
        return _decode_deliver_sm(pdu)
    except (IndexError, ValueError, struct.error):
        return None


def _decode_deliver_sm(data: bytes) -> DeliverSm:
    pos = data.index(b"\0", HEADER_SIZE) + 1  # service_type
    source_ton = data[pos]
    end = data.index(b"\0", pos + 2)
    source_addr, pos = data[pos + 2:end], end + 1
    dest_ton = data[pos]
    end = data.index(b"\0", pos + 2)
    destination_addr, pos = data[pos + 2:end], end + 1
    esm_class = data[pos]
    pos = data.index(b"\0", pos + 3) + 1  # after protocol_id, priority_flag: schedule
    pos = data.index(b"\0", pos) + 1  # validity_period
    data_coding, length = data[pos + 2], data[pos + 4]
    pos += 5
    short_message = data[pos:pos + length]
    if len(short_message) != length:
        raise ValueError("short_message cut short")
    pos += length
    tlvs: dict[int, bytes] = {}
    while pos < len(data):
        tag, size = TLV_HEADER.unpack_from(data, pos)
        value = data[pos + 4:pos + 4 + size]
        if len(value) != size:
            raise ValueError("a TLV cut short")
        tlvs[tag] = value
        pos += 4 + size
    receipted = tlvs.get(TAG_RECEIPTED_MESSAGE_ID)
    state = tlvs.get(TAG_MESSAGE_STATE)
    if state is not None and len(state) != 1:
        raise ValueError("message_state is one octet")
    return DeliverSm(
        sequence=HEADER.unpack_from(data)[3], source_addr_ton=source_ton,
        source_addr=source_addr, dest_addr_ton=dest_ton, destination_addr=destination_addr,
        esm_class=esm_class, data_coding=data_coding, short_message=short_message,
        receipted_message_id=receipted.removesuffix(b"\0") if receipted is not None else None,
        message_state=state[0] if state is not None else None,
        message_payload=tlvs.get(TAG_MESSAGE_PAYLOAD),
        sar_msg_ref_num=_tlv_number(tlvs.get(TAG_SAR_MSG_REF_NUM)),
        sar_total_segments=_tlv_number(tlvs.get(TAG_SAR_TOTAL_SEGMENTS)),
        sar_segment_seqnum=_tlv_number(tlvs.get(TAG_SAR_SEGMENT_SEQNUM)))


def _tlv_number(value: bytes | None) -> int | None:
    return int.from_bytes(value, "big") if value else None


class FrameReader:
    """Whole PDUs from a socket, length first: a body smpplib cannot parse never puts the
    stream out of step. One ``recv`` often brings several PDUs; they wait in ``inbox``."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.inbox = bytearray()

    def receive_exactly(self, size: int) -> bytes:
        while len(self.inbox) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise LinkLost("the SMSC closed the connection")
            self.inbox += chunk
        data = bytes(self.inbox[:size])
        del self.inbox[:size]
        return data

    def read(self) -> tuple[int, int, int, bytes]:
        """``(command_id, command_status, sequence_number, the whole PDU)``."""
        head = self.receive_exactly(HEADER_SIZE)
        length, command_id, status, sequence = HEADER.unpack(head)
        if not HEADER_SIZE <= length <= MAX_PDU_LENGTH:
            raise LinkLost(f"a PDU of {length} bytes: the stream is out of step")
        return command_id, status, sequence, head + self.receive_exactly(length - HEADER_SIZE)
