"""Segments, encodings, cost and phone normalisation: the pure rules, edge by edge."""

from decimal import Decimal

import pytest

from services.messaging.phones import InvalidPhoneNumber, normalise_phone, normalise_recipients
from services.messaging.sms_encoding import GSM7, UCS2, analyse_body, segment_cost
from services.messaging.webhook_signing import sign_webhook_body, verify_webhook_signature


@pytest.mark.parametrize(("text", "encoding", "units", "segments"), [
    ("a" * 160, GSM7, 160, 1),
    ("a" * 161, GSM7, 161, 2),
    ("a" * 306, GSM7, 306, 2),
    ("a" * 307, GSM7, 307, 3),
    ("a" * 159 + "€", GSM7, 161, 2),
    ("a" * 158 + "[", GSM7, 160, 1),
    ("{}[]~^|\\€", GSM7, 18, 1),
    ("a" * 152 + "€" + "a" * 10, GSM7, 164, 2),
    ("a" * 70, GSM7, 70, 1),
    ("é" * 70, GSM7, 70, 1),
    ("ê" * 70, UCS2, 70, 1),
    ("ê" * 71, UCS2, 71, 2),
    ("😀", UCS2, 2, 1),
    ("a" * 68 + "😀", UCS2, 70, 1),
    ("a" * 69 + "😀", UCS2, 71, 2),
    ("a" * 66 + "😀" + "a" * 5, UCS2, 73, 2),
    ("`", UCS2, 1, 1),
    ("", GSM7, 0, 1),
])
def test_encoding_units_and_segments(text, encoding, units, segments):
    result = analyse_body(text)
    assert (result.encoding, result.units, result.segments) == (encoding, units, segments)


def test_extension_character_is_not_split_across_parts():
    # 152 septets then a 2-septet '€': it cannot start at position 153, so it opens part 2.
    text = "a" * 152 + "€" + "a" * 152
    assert analyse_body(text).segments == 3
    assert analyse_body("a" * 153 + "€" + "a" * 151).segments == 2


def test_surrogate_pair_is_not_split_across_parts():
    assert analyse_body("a" * 66 + "😀" + "a" * 66).segments == 3
    assert analyse_body("a" * 67 + "😀" + "a" * 65).segments == 2


def test_segment_cost_is_decimal_rounded_half_up():
    assert segment_cost(2, Decimal("0.0075")) == Decimal("0.0150")
    assert segment_cost(1, Decimal("0.00005")) == Decimal("0.0001")
    assert isinstance(segment_cost(3, Decimal("0.01")), Decimal)


@pytest.mark.parametrize(("raw", "expected"), [
    ("+15551234567", "+15551234567"),
    ("+1 (555) 123-4567", "+15551234567"),
    ("+44 20 7946 0958", "+442079460958"),
    ("+15005550001", "+15005550001"),
    ("+1.500.555.0009", "+15005550009"),
])
def test_phone_normalisation(raw, expected):
    assert normalise_phone(raw) == expected


@pytest.mark.parametrize("raw", ["5551234567", "+1555abc4567", "+1234", "+44207946095812345678",
                                 "", "+", 15551234567, None, "++15551234567", "+0123456789"])
def test_invalid_phones_say_why(raw):
    with pytest.raises(InvalidPhoneNumber) as caught:
        normalise_phone(raw)
    assert caught.value.reason


def test_recipients_are_deduplicated_after_normalisation_and_invalid_ones_named():
    recipients = normalise_recipients(
        ["+15551234567", "+1 555 123 4567", "nope", "+15551234568", 7])
    assert recipients.phones == ["+15551234567", "+15551234568"]
    assert [(bad.index, bad.value) for bad in recipients.invalid] == [(2, "nope"), (4, "7")]
    assert recipients.duplicates_removed == 1


@pytest.mark.parametrize(("raw", "country"), [
    ("+14155552671", "US"),
    ("+1 416 555 0199", "CA"),
    ("+33 6 12 34 56 78", "FR"),
    ("+49 1512 3456789", "DE"),
    ("+44 7400 123456", "GB"),
    ("+44 7911 123456", "GG"),  # Guernsey shares +44
    ("+800 1234 5678", "ZZ"),  # international freephone: no country
    ("+15551234567", "ZZ"),  # 555 is no area code: valid in none of +1's countries
])
def test_each_number_has_its_country_or_zz(raw, country):
    assert normalise_recipients([raw]).countries == {normalise_phone(raw): country}


def test_countries_are_left_unknown_when_not_asked_for():
    raws = ["+44 7911 123456", "+15551234567", "+1 555 123 4567", "bad"]
    asked, not_asked = normalise_recipients(raws), normalise_recipients(raws, countries=False)
    assert asked.countries == {"+447911123456": "GG", "+15551234567": "ZZ"}
    assert not_asked.countries == dict.fromkeys(asked.countries)
    assert (not_asked.invalid, not_asked.duplicates_removed) == (asked.invalid, 1)


def test_parsing_offers_a_pause_every_twenty_entries():
    pauses = []
    normalise_recipients([f"+1555123{i:04d}" for i in range(250)] + ["bad"] * 50,
                         pause=lambda: pauses.append(1))
    assert len(pauses) == 15


@pytest.mark.parametrize(("text", "outside"), [
    ("plain GSM text {€}", ()),
    ("Café ✓ and ✓ again", ("✓",)),
    ("Price: 5€ 😀 ok`", ("😀", "`")),
    ("Привет", ("П", "р", "и", "в", "е", "т")),
    ("", ()),
])
def test_the_characters_that_force_ucs2_are_named_once_in_order(text, outside):
    shape = analyse_body(text)
    assert shape.non_gsm_characters == outside
    assert shape.encoding == (UCS2 if outside else GSM7)


def test_webhook_signature_round_trip_and_refusals():
    body = b'{"providerMessageId": "x", "status": "DELIVERED"}'
    signature = sign_webhook_body(body, "secret")
    assert verify_webhook_signature(body, signature=signature, secret="secret")
    assert verify_webhook_signature(body, signature="sha256=" + signature, secret="secret")
    assert not verify_webhook_signature(body + b" ", signature=signature, secret="secret")
    assert not verify_webhook_signature(body, signature=signature, secret="other")
    assert not verify_webhook_signature(body, signature=None, secret="secret")
    assert not verify_webhook_signature(body, signature="", secret="secret")
