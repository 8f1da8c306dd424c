"""How many SMS segments a body costs: GSM-7 or UCS-2, split the way handsets join it.

GSM-7 fits 160 septets in one SMS and 153 per part of a longer one; the
extension-table characters (``€ [ ] { } ^ ~ | \\`` and form feed) take two
septets and are never split across parts. Anything outside GSM-7 makes the
whole body UCS-2: 70 UTF-16 units alone, 67 per part, and a surrogate pair
(an emoji, say) is never split either.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

GSM7 = "GSM-7"
UCS2 = "UCS-2"

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

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


def _count_parts(sizes: list[int], part_limit: int) -> int:
    parts, used = 1, 0
    for size in sizes:
        if used + size > part_limit:
            parts += 1
            used = 0
        used += size
    return parts


def analyse_body(text: str) -> SmsEncoding:
    """Encoding, size in septets or UTF-16 units, and segments of ``text``.

    An empty body counts as one segment: what is sent is still one SMS.
    """
    outside = non_gsm_characters(text)
    encoding, sizes = _units_per_char(text, outside)
    units = sum(sizes)
    segments = (1 if units <= SINGLE_LIMITS[encoding]
                else _count_parts(sizes, PART_LIMITS[encoding]))
    return SmsEncoding(encoding, units, segments, outside)


def segment_cost(segments: int, price_per_segment: Decimal) -> Decimal:
    """What one accepted recipient costs, rounded half-up to 4 decimal places."""
    return (Decimal(segments) * price_per_segment).quantize(MONEY_QUANTUM, ROUND_HALF_UP)
