"""Phone numbers in, E.164 out: validated, normalised and de-duplicated.

Numbers must carry their country code (a leading ``+``): a bulk sender has no
sensible default region. ``is_possible_number`` (length per country) is used
rather than ``is_valid_number``, because test ranges such as ``+1500555xxxx``
are not allocated and would otherwise be refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers

MAX_E164_DIGITS = 15
_SEPARATORS = re.compile(r"[\s().\-/]")
_CANONICAL = re.compile(r"\+[1-9]\d{6,14}")


@dataclass(frozen=True, slots=True)
class InvalidPhone:
    index: int
    value: str
    reason: str


class InvalidPhoneNumber(ValueError):
    def __init__(self, raw: object, reason: str) -> None:
        super().__init__(f"{raw!r}: {reason}")
        self.raw = raw
        self.reason = reason


def normalise_phone(raw: object) -> str:
    """``raw`` in E.164 (``+15551234567``), or ``InvalidPhoneNumber`` saying why not."""
    if not isinstance(raw, str):
        raise InvalidPhoneNumber(raw, "must be a string")
    compact = _SEPARATORS.sub("", raw)
    if not compact.startswith("+"):
        raise InvalidPhoneNumber(raw, "must start with + and the country code")
    if not compact[1:].isascii() or not compact[1:].isdigit():
        raise InvalidPhoneNumber(raw, "may contain only digits after the +")
    if len(compact) - 1 > MAX_E164_DIGITS:
        raise InvalidPhoneNumber(raw, f"has more than {MAX_E164_DIGITS} digits")
    if not _CANONICAL.fullmatch(compact):
        raise InvalidPhoneNumber(raw, "is too short")
    try:
        number = phonenumbers.parse(compact, None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumber(raw, str(exc.args[0]) if exc.args else "unparsable") from None
    if not phonenumbers.is_possible_number(number):
        raise InvalidPhoneNumber(raw, "is not a possible number for its country")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_recipients(raws: list[object]) -> tuple[list[str], list[InvalidPhone]]:
    """Unique E.164 numbers in first-seen order, and every invalid entry with its reason."""
    seen: dict[str, None] = {}
    invalid: list[InvalidPhone] = []
    for index, raw in enumerate(raws):
        try:
            seen.setdefault(normalise_phone(raw), None)
        except InvalidPhoneNumber as exc:
            invalid.append(InvalidPhone(index, str(raw)[:32], exc.reason))
    return list(seen), invalid
