"""What a message costs: the preview, priced per country by ``SMS_PRICES``, is the bill.

Each hub here prices three countries and leaves every other one (``ZZ``
included) at ``SMS_PRICE_PER_SEGMENT``. The expected figures are computed in
the tests from the prices and the segment rules, not read from the hub.
"""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal

import pytest

from tests.support import BACKENDS, eventually, register_user

PRICES = {"US": Decimal("0.0079"), "FR": Decimal("0.07125"), "DE": Decimal("0.083333")}
DEFAULT = Decimal("0.0075")
US = [f"+1201555{i:04d}" for i in range(120, 124)]
FR = [f"+336123456{i:02d}" for i in range(78, 81)]
DE = [f"+49151234567{i:02d}" for i in range(0, 3)]
NO_COUNTRY = ["+15551230001", "+80012345678"]


@pytest.fixture(scope="module", params=BACKENDS)
def priced_hub(request, module_hub_factory):
    return module_hub_factory(env={
        "SMS_PRICES": json.dumps({country: float(price) for country, price in PRICES.items()}),
        "SMS_PRICE_PER_SEGMENT": str(DEFAULT)}, backend=request.param, name=request.param)


def _cost(segments: int, price: Decimal) -> Decimal:
    return (segments * price).quantize(Decimal("0.0001"), ROUND_HALF_UP)


def _final(server, user, message_id: str) -> dict:
    def sent():
        message = server.api.get(f"/api/messages/{message_id}", user.token).json()
        return message if message["status"] != "SENDING" else None
    return eventually(sent, timeout=20)


@pytest.mark.parametrize(("body", "encoding", "segments"), [
    ("a" * 200, "GSM-7", 2),
    ("✓" * 140, "UCS-2", 3),
])
def test_the_preview_is_the_final_cost_to_the_cent_over_three_countries(
        priced_hub, body, encoding, segments):
    user = register_user(priced_hub)
    recipients = US + FR + DE + NO_COUNTRY
    preview = priced_hub.api.post("/api/messages/preview", user.token,
                                  json={"body": body, "recipients": recipients})
    assert preview.status_code == 200, preview.text
    figures = preview.json()
    by_country = {"US": US, "FR": FR, "DE": DE, "ZZ": NO_COUNTRY}
    expected = {country: len(phones) * _cost(segments, PRICES.get(country, DEFAULT))
                for country, phones in by_country.items()}
    assert figures["byCountry"] == [
        {"country": country, "recipients": len(by_country[country]),
         "pricePerSegment": float(PRICES.get(country, DEFAULT)), "cost": float(expected[country])}
        for country in sorted(by_country)]
    assert (figures["encoding"], figures["segments"]) == (encoding, segments)
    assert figures["cost"] == float(sum(expected.values()))

    created = priced_hub.api.post("/api/messages", user.token,
                                  json={"body": body, "recipients": recipients})
    assert created.status_code == 202, created.text
    final = _final(priced_hub, user, created.json()["id"])
    assert final["status"] == "SENT" and final["successCount"] == len(recipients)
    assert round(final["cost"], 2) == round(figures["cost"], 2)
    assert final["cost"] == figures["cost"]
    stored = priced_hub.api.get(f"/api/messages/{final['id']}/recipients", user.token).json()
    costs = {r["phone"]: r["cost"] for r in stored["recipients"]}
    assert costs == {phone: float(_cost(segments, PRICES.get(country, DEFAULT)))
                     for country, phones in by_country.items() for phone in phones}


def test_every_field_of_the_preview(priced_hub):
    user = register_user(priced_hub)
    body = "Fête ✓ from the hub 😀 ✓ é"
    entries = [US[0], "+1 (201) 555-0120", "555", FR[0], 7, DE[0], DE[0], "+33abc",
               NO_COUNTRY[0]]
    answer = priced_hub.api.post("/api/messages/preview", user.token,
                                 json={"body": body, "recipients": entries})
    assert answer.status_code == 200, answer.text
    refused = priced_hub.api.post("/api/messages", user.token,
                                  json={"body": body, "recipients": entries})
    assert refused.status_code == 400
    one = _cost(1, PRICES["US"]), _cost(1, PRICES["FR"]), _cost(1, PRICES["DE"]), _cost(1, DEFAULT)
    assert answer.json() == {
        "recipientCount": 4,
        "invalid": refused.json()["error"]["details"]["recipients"],
        "duplicatesRemoved": 2,
        "suppressed": 0,
        "encoding": "UCS-2",
        "segments": 1,
        "nonGsmCharacters": ["ê", "✓", "😀"],
        "cost": float(sum(one)),
        "byCountry": [
            {"country": "DE", "recipients": 1, "pricePerSegment": float(PRICES["DE"]),
             "cost": float(one[2])},
            {"country": "FR", "recipients": 1, "pricePerSegment": float(PRICES["FR"]),
             "cost": float(one[1])},
            {"country": "US", "recipients": 1, "pricePerSegment": float(PRICES["US"]),
             "cost": float(one[0])},
            {"country": "ZZ", "recipients": 1, "pricePerSegment": float(DEFAULT),
             "cost": float(one[3])},
        ],
    }
    assert [(item["index"], item["value"]) for item in answer.json()["invalid"]] \
        == [(2, "555"), (4, "7"), (7, "+33abc")]
    assert all(item["reason"] for item in answer.json()["invalid"])


def test_a_preview_stores_and_sends_nothing(priced_hub):
    user = register_user(priced_hub)
    answer = priced_hub.api.post("/api/messages/preview", user.token,
                                 json={"body": "Hello", "recipients": US + ["oops"]})
    assert answer.status_code == 200
    assert answer.json()["recipientCount"] == len(US)
    assert answer.json()["nonGsmCharacters"] == [] and answer.json()["encoding"] == "GSM-7"
    assert priced_hub.api.get("/api/messages", user.token).json()["messages"] == []
    quota = priced_hub.api.get(f"/api/users/{user.id}/quota", user.token).json()
    assert quota["usedToday"] == 0


@pytest.mark.parametrize(("payload", "status", "code"), [
    ({"body": "Hi"}, 400, "invalid_payload"),
    ({"body": "", "recipients": US}, 400, "invalid_payload"),
    ({"body": "Hi", "recipients": []}, 400, "invalid_payload"),
    ({"body": "Hi", "recipients": ["+12015550120"] * 10_001}, 400, "invalid_payload"),
])
def test_a_preview_of_a_bad_body_is_a_clear_400(priced_hub, payload, status, code):
    user = register_user(priced_hub)
    answer = priced_hub.api.post("/api/messages/preview", user.token, json=payload)
    assert answer.status_code == status
    assert answer.json()["error"]["code"] == code


def test_a_preview_needs_a_token(priced_hub):
    answer = priced_hub.api.post("/api/messages/preview",
                                 json={"body": "Hi", "recipients": US})
    assert answer.status_code == 401
