"""Phone numbers in, E.164 out: validated, normalised, de-duplicated, and their country.

Numbers must carry their country code (a leading ``+``): a bulk sender has no
sensible default region. ``is_possible_number`` (length per country) is used
rather than ``is_valid_number``, because test ranges such as ``+1500555xxxx``
are not allocated and would otherwise be refused. The country (what a
segment costs depends on it) is the region ``phonenumbers`` finds the number
valid in, ``ZZ`` when there is none.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import phonenumbers

MAX_E164_DIGITS = 15
NO_COUNTRY = "ZZ"
# How many entries ``normalise_recipients`` parses between two calls of its ``pause``
# (under a millisecond of work), which decides whether it is time to let others run.
PAUSE_EVERY = 20
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


def parse_phone(raw: object) -> phonenumbers.PhoneNumber:
    """``raw`` as a possible number with its country code, or ``InvalidPhoneNumber`` saying
    why not."""
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
    return number


def normalise_phone(raw: object) -> str:
    """``raw`` in E.164 (``+15551234567``), or ``InvalidPhoneNumber`` saying why not."""
    return phonenumbers.format_number(parse_phone(raw), phonenumbers.PhoneNumberFormat.E164)


def country_of(number: phonenumbers.PhoneNumber) -> str:
    """The number's ISO 3166-1 alpha-2 region, ``ZZ`` when it has none.

    ``phonenumbers`` answers ``001`` for non-geographic numbers (``+800``
    freephone) and nothing for a number valid in none of its calling code's
    regions (``+1 555 ...``); both are ``ZZ``.
    """
    region = phonenumbers.region_code_for_number(number)
    return region if region in phonenumbers.SUPPORTED_REGIONS else NO_COUNTRY


@dataclass(frozen=True, slots=True)
class Recipients:
    """A message's recipients as entered: the unique numbers (E.164, first-seen order) with
    their countries (``None`` when not looked up), the entries refused with their reasons,
    and how many repeats went."""

    countries: dict[str, str | None]
    invalid: list[InvalidPhone]
    duplicates_removed: int

    @property
    def phones(self) -> list[str]:
        return list(self.countries)


def normalise_recipients(raws: list[object], *, pause: Callable[[], None] | None = None,
                         countries: bool = True) -> Recipients:
    """Unique E.164 numbers in first-seen order with their country, and every invalid entry
    with its reason.

    Parsing 10,000 numbers takes a few hundred milliseconds; ``pause`` is called
    every ``PAUSE_EVERY`` entries so that a server can let others run meanwhile.
    Finding a number's country tries the patterns of each country sharing its
    calling code (25 for +1), more than the rest of its parsing: without
    ``countries`` it is not looked up (``None``).
    """
    found: dict[str, str | None] = {}
    invalid: list[InvalidPhone] = []
    for index, raw in enumerate(raws):
        if pause is not None and index % PAUSE_EVERY == PAUSE_EVERY - 1:
            pause()
        try:
            number = parse_phone(raw)
        except InvalidPhoneNumber as exc:
            invalid.append(InvalidPhone(index, str(raw)[:32], exc.reason))
            continue
        phone = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        if phone not in found:
            found[phone] = country_of(number) if countries else None
    return Recipients(found, invalid, len(raws) - len(invalid) - len(found))
