"""``GET /api/messages/<id>/report.csv``: the recipients as a CSV a customer can open safely,
streamed a page at a time, for the owner and admins only."""

from __future__ import annotations

import csv
import io
import json

import pytest
from sqlalchemy import event

from extensions import db
from services.auth import Identity
from services.messaging import messages
from services.messaging.webhook_signing import sign_webhook_body
from tests.support import (
    BACKENDS,
    WEBHOOK_SECRET,
    app_on,
    eventually,
    migrate_database,
    register_user,
    seed_admin,
)

HEADER = ["phone", "status", "providerStatus", "errorCode", "providerErrorCode", "parts", "cost",
          "sentAt", "deliveredAt"]
INVALID, UNROUTABLE = "+15005550001", "+15005550009"


@pytest.fixture(scope="module", params=BACKENDS)
def slow_receipts_hub(request, module_hub_factory):
    """Receipts come 60 s after a send: the tests settle recipients with their own."""
    return module_hub_factory(env={"SIMULATED_RECEIPT_DELAY": "60"}, backend=request.param,
                              name=request.param)


def _sent_message(server, user, phones: list[str], body: str = "Report me") -> str:
    created = server.api.post("/api/messages", user.token, json={"body": body,
                                                                  "recipients": phones})
    assert created.status_code == 202, created.text
    message_id = created.json()["id"]
    eventually(lambda: server.api.get(f"/api/messages/{message_id}", user.token).json()
               ["status"] != "SENDING", timeout=30)
    return message_id


def _rest_recipients(server, user, message_id: str) -> list[dict]:
    rows, after = [], None
    while True:
        page = server.api.get(f"/api/messages/{message_id}/recipients", user.token,
                              params={"limit": 1000, **({"after": after} if after else {})}).json()
        rows += page["recipients"]
        after = page["nextCursor"]
        if after is None:
            return rows


def _report(server, token: str | None, message_id: str):
    return server.api.get(f"/api/messages/{message_id}/report.csv", token, stream=True)


def _receipt(server, provider_id: str, code: str) -> None:
    raw = json.dumps({"providerMessageId": provider_id, "status": "FAILED", "errorCode": code,
                      "errorMessage": "carrier said no"}).encode()
    answer = server.api.post("/api/webhooks/delivery", data=raw, headers={
        "Content-Type": "application/json",
        "X-Signature": sign_webhook_body(raw, WEBHOOK_SECRET)})
    assert answer.json()["applied"] == 1, answer.text


def test_the_report_streams_every_recipient_as_rest_has_it(slow_receipts_hub):
    server, owner = slow_receipts_hub, register_user(slow_receipts_hub)
    phones = [f"+1555300{i:04d}" for i in range(1_200)] + [INVALID, UNROUTABLE]
    message_id = _sent_message(server, owner, phones, body="✓ two parts " * 7)
    response = _report(server, owner.token, message_id)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"] \
        == f'attachment; filename="message-{message_id}-report.csv"'
    assert response.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in response.headers
    text = response.content.decode()
    assert text.startswith(",".join(HEADER) + "\r\n")
    rows = list(csv.DictReader(io.StringIO(text)))
    expected = [{
        "phone": "'" + r["phone"], "status": r["status"],
        "providerStatus": r["providerStatus"] or "", "errorCode": r.get("errorCode", ""),
        "providerErrorCode": r["providerErrorCode"] or "", "parts": str(r["parts"] or 2),
        "cost": f"{r['cost']:.4f}", "sentAt": r["sentAt"] or "",
        "deliveredAt": r["deliveredAt"] or ""}
        for r in _rest_recipients(server, owner, message_id)]
    assert len(expected) == 1_202 and rows == expected
    assert rows[-1]["errorCode"] == "unroutable" and rows[0]["cost"] == "0.0150"
    assert (rows[-2]["providerStatus"], rows[-2]["providerErrorCode"]) == ("failed", "21211")


def test_only_the_owner_and_admins_get_the_report(slow_receipts_hub):
    server = slow_receipts_hub
    owner, stranger = register_user(server), register_user(server)
    admin = register_user(server, admin=True)
    message_id = _sent_message(server, owner, ["+15553100001"])
    mine = _report(server, owner.token, message_id).content
    assert _report(server, admin.token, message_id).content == mine
    refused = _report(server, stranger.token, message_id)
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "not_found"
    missing = _report(server, owner.token, str(int(message_id) + 1000))
    assert missing.status_code == 404 and missing.json() == refused.json()
    anonymous = _report(server, None, message_id)
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "auth_required"


@pytest.mark.parametrize("code", ['=HYPERLINK("http://x.test","open")', "+1+2", "-2+3",
                                  "@SUM(A1)", "\tcmd", "\rcmd"])
def test_cells_a_spreadsheet_would_run_are_made_inert(slow_receipts_hub, code):
    server, owner = slow_receipts_hub, register_user(slow_receipts_hub)
    message_id = _sent_message(server, owner, ["+15553200001", "+15553200002"])
    recipients = _rest_recipients(server, owner, message_id)
    _receipt(server, recipients[0]["providerMessageId"], code)
    _receipt(server, recipients[1]["providerMessageId"], 'plain, "quoted"')
    rows = list(csv.DictReader(io.StringIO(_report(server, owner.token, message_id).text)))
    assert [row["errorCode"] for row in rows] == ["'" + code, 'plain, "quoted"']
    assert [row["status"] for row in rows] == ["FAILED", "FAILED"]
    assert [row["phone"] for row in rows] == ["'+15553200001", "'+15553200002"]


@pytest.fixture
def app_context(database_url):
    migrate_database(database_url)
    seed_admin(database_url)
    with app_on(database_url) as app:
        yield app


def test_the_report_reads_a_page_at_a_time_and_sends_the_header_first(app_context):
    recipients = messages.read_recipients([f"+1555400{i:04d}" for i in range(1_100)])
    message_id = int(messages.create(1, body="paged", recipients=recipients)["id"])
    message = messages.get_visible(Identity(user_id=1, role="admin"), message_id)
    statements: list[str] = []
    event.listen(db.engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *args: statements.append(statement))
    chunks = messages.report_csv(message)
    assert next(chunks) == ",".join(HEADER) + "\r\n"
    assert statements == [], "the header goes out before any recipient is read"
    sizes = []
    for chunk in chunks:
        sizes.append(chunk.count("\r\n"))
        assert len(statements) == len(sizes), "one page read per chunk sent"
    assert sizes == [200] * 5 + [100]
    assert len(statements) == 7 and all("LIMIT" in s.upper() for s in statements)
