"""How many SMS segments a body costs: GSM-7 or UCS-2, split the way handsets join it.

GSM-7 fits 160 septets in one SMS and 153 per part of a longer one; the
extension-table characters (``€ [ ] { } ^ ~ | \\`` and form feed) take two
septets and are never split across parts. Anything outside GSM-7 makes the
whole body UCS-2: 70 UTF-16 units alone, 67 per part, and a surrogate pair
(an emoji, say) is never split either. The same split cuts a long body into
the parts an SMPP provider submits, so the parts the hub counts (and bills)
are the parts it sends.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

GSM7 = "GSM-7"
UCS2 = "UCS-2"

# GSM 03.38: a character's index is its septet; 0x1B escapes to the extension table.
GSM7_ESCAPE = 0x1B
GSM7_BASIC_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION_TABLE = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C,
                        "~": 0x3D, "]": 0x3E, "|": 0x40, "€": 0x65}
GSM7_BASIC = frozenset(GSM7_BASIC_TABLE) - {chr(GSM7_ESCAPE)}
GSM7_EXTENSION = frozenset(GSM7_EXTENSION_TABLE)
_GSM7_SEPTETS = {char: index for index, char in enumerate(GSM7_BASIC_TABLE)}
_GSM7_EXTENDED_CHARS = {septet: char for char, septet in GSM7_EXTENSION_TABLE.items()}

SINGLE_LIMITS = {GSM7: 160, UCS2: 70}
PART_LIMITS = {GSM7: 153, UCS2: 67}
MONEY_QUANTUM = Decimal("0.0001")


@dataclass(frozen=True, slots=True)
class SmsEncoding:
    encoding: str
    units: int
    segments: int
    # The characters outside GSM-7 that made the body UCS-2, each once, in order.
    non_gsm_characters: tuple[str, ...] = ()


def non_gsm_characters(text: str) -> tuple[str, ...]:
    """Each character of ``text`` that GSM-7 cannot carry, once, in order of appearance."""
    return tuple(ch for ch in dict.fromkeys(text)
                 if ch not in GSM7_BASIC and ch not in GSM7_EXTENSION)


def _units_per_char(text: str, outside: tuple[str, ...]) -> tuple[str, list[int]]:
    if not outside:
        return GSM7, [2 if ch in GSM7_EXTENSION else 1 for ch in text]
    return UCS2, [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def _part_starts(sizes: list[int], part_limit: int) -> list[int]:
    """Where each part begins (character indexes): a character never straddles two parts."""
    starts, used = [0], 0
    for index, size in enumerate(sizes):
        if used + size > part_limit:
            starts.append(index)
            used = 0
        used += size
    return starts


def analyse_body(text: str) -> SmsEncoding:
    """Encoding, size in septets or UTF-16 units, and segments of ``text``.

    An empty body counts as one segment: what is sent is still one SMS.
    """
    outside = non_gsm_characters(text)
    encoding, sizes = _units_per_char(text, outside)
    units = sum(sizes)
    segments = (1 if units <= SINGLE_LIMITS[encoding]
                else len(_part_starts(sizes, PART_LIMITS[encoding])))
    return SmsEncoding(encoding, units, segments, outside)


def split_body(text: str) -> tuple[str, list[str]]:
    """The encoding of ``text`` and its parts: the whole text when it fits one SMS, else
    pieces that each fit one part of a concatenated SMS (``analyse_body``'s segments)."""
    encoding, sizes = _units_per_char(text, non_gsm_characters(text))
    if sum(sizes) <= SINGLE_LIMITS[encoding]:
        return encoding, [text]
    starts = _part_starts(sizes, PART_LIMITS[encoding])
    ends = [*starts[1:], len(text)]
    return encoding, [text[start:end] for start, end in zip(starts, ends, strict=True)]


def encode_gsm7(text: str) -> bytes:
    """GSM-7 text as unpacked septets, one per octet (SMPP ``data_coding`` 0); an
    extension character is the escape septet then its own."""
    septets = bytearray()
    for char in text:
        if char in GSM7_EXTENSION_TABLE:
            septets += bytes((GSM7_ESCAPE, GSM7_EXTENSION_TABLE[char]))
        else:
            septets.append(_GSM7_SEPTETS[char])
    return bytes(septets)


def decode_gsm7(septets: bytes) -> str:
    """Unpacked GSM-7 septets back to text; a septet outside the tables reads as ``?``."""
    chars, escaped = [], False
    for septet in septets:
        if escaped:
            chars.append(_GSM7_EXTENDED_CHARS.get(septet, "?"))
            escaped = False
        elif septet == GSM7_ESCAPE:
            escaped = True
        else:
            chars.append(GSM7_BASIC_TABLE[septet] if septet < len(GSM7_BASIC_TABLE) else "?")
    return "".join(chars)


def segment_cost(segments: int, price_per_segment: Decimal) -> Decimal:
    """What one accepted recipient costs, rounded half-up to 4 decimal places."""
    return (Decimal(segments) * price_per_segment).quantize(MONEY_QUANTUM, ROUND_HALF_UP)
