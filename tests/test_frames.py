"""RFC 6455 framing, byte for byte: the frames the hub writes and how it reads its clients'.

Table-driven and in-process: ``services.transport.frames`` is standard
library only. The end-to-end twins (real sockets against a live hub) are in
``test_transport.py``.
"""

from __future__ import annotations

import os
import struct

import pytest

from services.transport.frames import (
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_NORMAL,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_UNSUPPORTED_DATA,
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    MessageReader,
    ProtocolViolation,
    accept_key,
    close_code,
    close_frame,
    frame,
    unmask,
)

LIMIT = 16 * 1024
MASK = bytes.fromhex("37fa213d")  # RFC 6455 section 5.7's masking key


def client_frame(opcode: int, payload: bytes, *, final: bool = True, mask: bytes = MASK,
                 rsv: int = 0, masked: bool = True) -> bytes:
    """A frame as a client sends it, built independently of the code under test."""
    first = (0x80 if final else 0) | rsv | opcode
    length = len(payload)
    mask_bit = 0x80 if masked else 0
    if length < 126:
        header = struct.pack("!BB", first, mask_bit | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, length)
    if not masked:
        return header + payload
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def read_all(data: bytes, *, limit: int = LIMIT, pieces: int | None = None
             ) -> tuple[list[tuple[int, bytes]], MessageReader]:
    """Feed ``data`` whole, or cut into pieces of ``pieces`` bytes; everything that came out."""
    reader = MessageReader(limit)
    out: list[tuple[int, bytes]] = []
    step = pieces or len(data) or 1
    for start in range(0, len(data), step):
        out.extend(reader.feed(data[start:start + step]))
    return out, reader


# RFC 6455 section 5.7, the server side (unmasked) -------------------------------------

@pytest.mark.parametrize(("opcode", "payload", "expected"), [
    (OP_TEXT, b"Hello", bytes.fromhex("810548656c6c6f")),
    (OP_PING, b"Hello", bytes.fromhex("890548656c6c6f")),
    (OP_PONG, b"Hello", bytes.fromhex("8a0548656c6c6f")),
    (OP_BINARY, bytes(256), bytes.fromhex("827e0100") + bytes(256)),
    (OP_BINARY, bytes(65536), bytes.fromhex("827f0000000000010000") + bytes(65536)),
    (OP_TEXT, b"", bytes.fromhex("8100")),
], ids=["text", "ping", "pong", "256-bytes-16-bit-length", "64-KiB-64-bit-length", "empty"])
def test_server_frames_match_rfc_6455s_examples(opcode, payload, expected):
    assert frame(opcode, payload) == expected


@pytest.mark.parametrize(("length", "header"), [
    (125, bytes((0x81, 125))),
    (126, bytes((0x81, 126)) + (126).to_bytes(2, "big")),
    (65535, bytes((0x81, 126)) + (65535).to_bytes(2, "big")),
    (65536, bytes((0x81, 127)) + (65536).to_bytes(8, "big")),
], ids=["7-bit-max", "16-bit-min", "16-bit-max", "64-bit-min"])
def test_server_frames_use_the_shortest_length_encoding(length, header):
    assert frame(OP_TEXT, b"x" * length) == header + b"x" * length


def test_the_accept_key_is_rfc_6455s_own_example():
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_unmasking_rfc_6455s_masked_hello():
    masked = bytes.fromhex("7f9f4d5158")
    assert unmask(masked, MASK) == b"Hello"
    assert unmask(b"Hello", MASK) == masked
    assert unmask(b"", MASK) == b""


def test_close_frames_carry_the_code_and_a_reason_that_fits_a_control_frame():
    assert close_frame(CLOSE_MESSAGE_TOO_BIG, "message too big") == (
        bytes((0x88, 17)) + struct.pack("!H", 1009) + b"message too big")
    assert len(close_frame(CLOSE_NORMAL, "é" * 200)) == 2 + 125
    assert close_code(struct.pack("!H", 1001)) == 1001
    assert close_code(b"") == CLOSE_NORMAL


# Reading clients' frames ------------------------------------------------------------

def test_rfc_6455s_masked_hello_is_one_message():
    assert read_all(bytes.fromhex("818537fa213d7f9f4d5158"))[0] == [(OP_TEXT, b"Hello")]


@pytest.mark.parametrize("length", [0, 1, 125, 126, 65535, 65536, 100_000],
                         ids=lambda n: f"{n}-bytes")
def test_messages_of_every_length_encoding_are_read_whole(length):
    payload = os.urandom(length).hex().encode()[:length]
    messages, reader = read_all(client_frame(OP_TEXT, payload), limit=200_000)
    assert messages == [(OP_TEXT, payload)]
    assert reader.pending == b""


@pytest.mark.parametrize(("length", "header"), [(5, 2), (300, 4), (70_000, 10)],
                         ids=["7-bit", "16-bit", "64-bit"])
def test_frames_cut_anywhere_even_inside_the_header_are_read_the_same(length, header):
    payloads = [b"a" * length, b"b" * 3]
    data = b"".join(client_frame(OP_TEXT, p) for p in payloads)
    for cut in (*range(1, header + 4 + 2), len(data) // 2, len(data) - 1):
        reader = MessageReader(100_000)
        messages = [*reader.feed(data[:cut]), *reader.feed(data[cut:])]
        assert messages == [(OP_TEXT, p) for p in payloads], cut
        assert reader.pending == b""


@pytest.mark.parametrize("length", [5, 300], ids=["7-bit", "16-bit"])
def test_frames_fed_a_byte_at_a_time_are_read_the_same(length):
    data = client_frame(OP_TEXT, b"a" * length) + client_frame(OP_PING, b"p")
    assert read_all(data, pieces=1)[0] == [(OP_TEXT, b"a" * length), (OP_PING, b"p")]


@pytest.mark.parametrize("length", [0, 1, 4, 5, 124, 125, 126])
def test_a_lone_frame_read_at_once_is_the_message_read_in_pieces(length):
    """A lone short frame takes a shorter path than frames cut up or read together."""
    payload = os.urandom(length)
    data = client_frame(OP_TEXT, payload)
    assert read_all(data)[0] == read_all(data, pieces=1)[0] == [(OP_TEXT, payload)]
    reader = MessageReader(LIMIT)
    assert list(reader.feed(data[:3])) == []
    assert list(reader.feed(data[3:])) == [(OP_TEXT, payload)]
    assert reader.pending == b""


def test_a_lone_frame_over_a_small_limit_is_refused():
    with pytest.raises(ProtocolViolation) as refused:
        read_all(client_frame(OP_TEXT, b"x" * 11), limit=10)
    assert refused.value.code == CLOSE_MESSAGE_TOO_BIG
    assert read_all(client_frame(OP_TEXT, b"x" * 10), limit=10)[0] == [(OP_TEXT, b"x" * 10)]


def test_several_frames_in_one_read_come_out_in_order():
    data = (client_frame(OP_TEXT, b"one") + client_frame(OP_PING, b"p")
            + client_frame(OP_TEXT, b"two") + client_frame(OP_TEXT, b"thr")[:5])
    messages, reader = read_all(data)
    assert messages == [(OP_TEXT, b"one"), (OP_PING, b"p"), (OP_TEXT, b"two")]
    assert reader.pending == client_frame(OP_TEXT, b"thr")[:5]


def test_fragments_are_put_back_together():
    data = (client_frame(OP_TEXT, b"frag", final=False)
            + client_frame(OP_CONTINUATION, b"men", final=False)
            + client_frame(OP_CONTINUATION, b"ted"))
    assert read_all(data)[0] == [(OP_TEXT, b"fragmented")]
    assert read_all(data, pieces=1)[0] == [(OP_TEXT, b"fragmented")]


@pytest.mark.parametrize("control", [OP_PING, OP_PONG, OP_CLOSE])
def test_a_control_frame_inside_a_fragmented_message_comes_out_first(control):
    data = (client_frame(OP_TEXT, b"before ", final=False) + client_frame(control, b"c")
            + client_frame(OP_CONTINUATION, b"after"))
    assert read_all(data)[0] == [(control, b"c"), (OP_TEXT, b"before after")]


def test_a_reader_stopped_early_keeps_nothing_it_did_not_hand_out():
    reader = MessageReader(LIMIT)
    frames = reader.feed(client_frame(OP_CLOSE, b"") + client_frame(OP_TEXT, b"late"))
    assert next(frames) == (OP_CLOSE, b"")
    frames.close()
    assert reader.pending == client_frame(OP_TEXT, b"late")


@pytest.mark.parametrize(("data", "code"), [
    (client_frame(OP_TEXT, b"x", masked=False), CLOSE_PROTOCOL_ERROR),
    (client_frame(OP_TEXT, b"x", rsv=0x40), CLOSE_PROTOCOL_ERROR),
    (client_frame(0x3, b"x"), CLOSE_PROTOCOL_ERROR),
    (client_frame(0xB, b"x"), CLOSE_PROTOCOL_ERROR),
    (client_frame(OP_BINARY, b"\x00"), CLOSE_UNSUPPORTED_DATA),
    (client_frame(OP_PING, b"p" * 126), CLOSE_PROTOCOL_ERROR),
    (client_frame(OP_PING, b"p", final=False), CLOSE_PROTOCOL_ERROR),
    (client_frame(OP_CONTINUATION, b"x"), CLOSE_PROTOCOL_ERROR),
    (client_frame(OP_TEXT, b"a", final=False) + client_frame(OP_TEXT, b"b"),
     CLOSE_PROTOCOL_ERROR),
], ids=["unmasked", "reserved-bit", "reserved-data-opcode", "reserved-control-opcode",
        "binary", "long-control-frame", "fragmented-control-frame",
        "continuation-of-nothing", "message-interrupted"])
def test_frames_breaking_the_rules_are_refused_with_their_close_code(data, code):
    with pytest.raises(ProtocolViolation) as refused:
        read_all(data)
    assert refused.value.code == code


@pytest.mark.parametrize("header", [
    bytes((0x81, 0xFE)) + (LIMIT + 1).to_bytes(2, "big"),
    bytes((0x81, 0xFF)) + (10 * 1024 * 1024).to_bytes(8, "big"),
    bytes((0x81, 0xFF)) + (2 ** 63 - 1).to_bytes(8, "big"),
    bytes((0x82, 0x85)),
], ids=["16-bit-over-the-limit", "10-MB", "largest-64-bit", "binary"])
def test_a_refused_frame_is_refused_from_its_header_before_its_payload(header):
    """Nothing after the header (not even the mask) has arrived when the refusal comes."""
    reader = MessageReader(LIMIT)
    with pytest.raises(ProtocolViolation) as refused:
        list(reader.feed(header))
    assert refused.value.code in (CLOSE_MESSAGE_TOO_BIG, CLOSE_UNSUPPORTED_DATA)


def test_a_fragmented_message_is_refused_once_its_declared_total_passes_the_limit():
    reader = MessageReader(LIMIT)
    first = client_frame(OP_TEXT, b"a" * (LIMIT - 10), final=False)
    assert list(reader.feed(first)) == []
    over = bytes((0x80, 0xFE)) + (11).to_bytes(2, "big")  # a continuation's header only
    with pytest.raises(ProtocolViolation) as refused:
        list(reader.feed(over))
    assert refused.value.code == CLOSE_MESSAGE_TOO_BIG


def test_a_message_of_exactly_the_limit_is_accepted():
    payload = b"m" * LIMIT
    assert read_all(client_frame(OP_TEXT, payload))[0] == [(OP_TEXT, payload)]
    fragmented = (client_frame(OP_TEXT, payload[:100], final=False)
                  + client_frame(OP_CONTINUATION, payload[100:]))
    assert read_all(fragmented)[0] == [(OP_TEXT, payload)]
