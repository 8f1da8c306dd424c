"""What one SMS segment costs to each country: ``SMS_PRICES``, else ``SMS_PRICE_PER_SEGMENT``.

Providers bill per destination country, so a bulk sender's preview must price
each recipient by the region of its number. ``SMS_PRICES`` is inline JSON
(``{"FR": 0.04}``), or a path to a JSON file of the same shape or to a CSV
file whose header is ``country,price``. Countries are ISO 3166-1 alpha-2
codes that ``phonenumbers`` knows, or ``ZZ`` for numbers with no region
(international freephone, satellite); any other country pays
``SMS_PRICE_PER_SEGMENT``. A table is read once, when the hub starts: a bad
one stops the start with the file, the line and what is wrong, rather than
pricing messages by a guess. Prices have at most six decimal places (what a
recipient row keeps), so the cost of every accepted recipient, rounded the
way ``segment_cost`` rounds it, is the same in the preview and in the bill.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

import phonenumbers
from flask import Flask, current_app

from services.messaging.phones import NO_COUNTRY

COUNTRIES = frozenset(phonenumbers.SUPPORTED_REGIONS) | {NO_COUNTRY}
PRICE_PLACES = 6
PRICE_INTEGER_DIGITS = 6  # Numeric(12, 6): the recipients table's price column
CSV_HEADER = ["country", "price"]


class PriceConfigError(ValueError):
    """``SMS_PRICES`` cannot be used; the message says where and why."""


@dataclass(frozen=True)
class PriceTable:
    """Price of one segment per country, and the price of every country not listed."""

    default: Decimal
    by_country: dict[str, Decimal] = field(default_factory=dict)

    def price_for(self, country: str) -> Decimal:
        return self.by_country.get(country, self.default)


def parse_price(text: object, where: str) -> Decimal:
    """A price as the table may hold it: a finite, non-negative number of at most six
    decimal places that fits the recipients' price column."""
    if isinstance(text, bool) or not isinstance(text, (str, int, float, Decimal)):
        raise PriceConfigError(f"{where}: the price must be a number, not {text!r}")
    try:
        price = Decimal(str(text).strip())
    except InvalidOperation:
        raise PriceConfigError(f"{where}: the price must be a number, not {text!r}") from None
    shown = repr(text.strip()) if isinstance(text, str) else repr(f"{price:f}")
    if not price.is_finite() or price < 0:
        raise PriceConfigError(f"{where}: the price must be a number of 0 or more, "
                               f"not {shown}")
    exponent = price.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -PRICE_PLACES:
        raise PriceConfigError(f"{where}: the price {shown} has more than {PRICE_PLACES} "
                               "decimal places")
    if price >= Decimal(10) ** PRICE_INTEGER_DIGITS:
        raise PriceConfigError(f"{where}: the price {shown} is too large (at most "
                               f"{Decimal(10) ** PRICE_INTEGER_DIGITS - 1}.999999)")
    return price


def _parse_country(text: object, where: str) -> str:
    country = text.strip().upper() if isinstance(text, str) else text
    if country not in COUNTRIES:
        raise PriceConfigError(f"{where}: {text!r} is not an ISO 3166-1 alpha-2 country code "
                               "that phone numbers have (or ZZ for numbers with no country)")
    return country


def _add(prices: dict[str, Decimal], country: str, price: Decimal, where: str) -> None:
    if country in prices:
        raise PriceConfigError(f"{where}: {country} is priced twice")
    prices[country] = price


def _from_json(text: str, source: str) -> dict[str, Decimal]:
    try:
        table = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise PriceConfigError(f"{source}: not valid JSON at line {exc.lineno} column "
                               f"{exc.colno}: {exc.msg}") from None
    if not isinstance(table, dict):
        raise PriceConfigError(f'{source}: must be a JSON object such as {{"FR": 0.04}}')
    prices: dict[str, Decimal] = {}
    for key, value in table.items():
        where = f"{source}: {key!r}"
        if not isinstance(value, (int, Decimal)) or isinstance(value, bool):
            raise PriceConfigError(f"{where}: the price must be a JSON number, not "
                                   f"{json.dumps(value)}")
        _add(prices, _parse_country(key, where), parse_price(value, where), where)
    return prices


def _from_csv(text: str, source: str) -> dict[str, Decimal]:
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if header is None or [cell.strip().lower() for cell in header] != CSV_HEADER:
        raise PriceConfigError(f"{source} line 1: the header must be 'country,price', "
                               f"not {','.join(header or [])!r}")
    prices: dict[str, Decimal] = {}
    for row in rows:
        where = f"{source} line {rows.line_num}"
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != 2:
            raise PriceConfigError(f"{where}: expected 'country,price', got {','.join(row)!r}")
        _add(prices, _parse_country(row[0], where), parse_price(row[1], where), where)
    return prices


def load_prices(setting: str, default: Decimal) -> PriceTable:
    """The table ``SMS_PRICES`` describes (inline JSON or a file's path), over ``default``.

    ``PriceConfigError`` says what is wrong, naming the file and line.
    """
    text = setting.strip()
    if not text:
        return PriceTable(default)
    if text.startswith(("{", "[")):
        return PriceTable(default, _from_json(text, "SMS_PRICES (inline JSON)"))
    path = Path(text)
    try:
        content = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise PriceConfigError(f"SMS_PRICES: cannot read {text}: "
                               f"{getattr(exc, 'strerror', None) or exc}") from None
    source = f"SMS_PRICES file {text}"
    if content.lstrip().startswith("{"):
        return PriceTable(default, _from_json(content, source))
    return PriceTable(default, _from_csv(content, source))


def install_prices(app: Flask) -> None:
    """Read ``SMS_PRICES`` once, at start; a bad table stops the start with its reason."""
    try:
        default = parse_price(app.config["SMS_PRICE_PER_SEGMENT"], "SMS_PRICE_PER_SEGMENT")
        app.extensions["sms_prices"] = load_prices(app.config["SMS_PRICES"] or "", default)
    except PriceConfigError as exc:
        raise RuntimeError(str(exc)) from None


def prices() -> PriceTable:
    """This app's price table."""
    return current_app.extensions["sms_prices"]
