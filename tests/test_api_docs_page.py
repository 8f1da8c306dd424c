"""/api/docs in a real browser: Swagger UI runs routes with the signed-in token, and the
Socket.IO events are rendered from the AsyncAPI document, under a strict
Content-Security-Policy and without a console error (the ``page`` fixture fails
on any).
"""

from __future__ import annotations

import json

import pytest

from tests import test_browser
from tests.support import OUTPUT_DIR

# The Chromium fixtures of the page tests: ``page`` fails the test on any console error.
browser, page = test_browser.browser, test_browser.page

# The policy the hub's pages must live with: no inline script or style, nothing from
# elsewhere. Answers that carry none (yet) get this one, so the test holds either way.
STRICT_POLICY = "; ".join([
    "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
    "connect-src 'self'", "object-src 'none'", "base-uri 'none'", "form-action 'self'",
    "frame-ancestors 'none'"])


@pytest.fixture
def docs(page):
    """The browser page, every answer under the strict policy, opened on /api/docs."""
    def with_policy(route):
        response = route.fetch()
        headers = {**response.headers}
        headers.setdefault("content-security-policy", STRICT_POLICY)
        route.fulfill(response=response, headers=headers)

    page.context.route("**/*", with_policy)
    page.goto("/api/docs")
    page.wait_for_selector("#swagger-ui .opblock")
    return page


def _sign_in(docs, user) -> None:
    docs.fill("#email", user.email)
    docs.fill("#password", user.password)
    docs.click("#login-btn")
    docs.wait_for_selector("#whoami:has-text('user')")


def _operation(docs, tag: str, method: str, path: str):
    """Swagger UI's block of one operation, by its deep-link id."""
    slug = path.strip("/").replace("/", "_").replace("-", "_").replace("{", "_").replace("}", "_")
    return docs.locator(f"#operations-{tag}-{method}_{slug}")


def _execute(operation) -> tuple[str, str]:
    """Expand the operation, "Try it out", "Execute": the status and body it shows."""
    if operation.locator(".opblock-body").count() == 0:
        operation.locator(".opblock-summary").click()
    if operation.locator("button.try-out__btn:has-text('Try it out')").count():
        operation.locator("button.try-out__btn").click()
    if operation.locator("button.btn-clear").count():
        operation.locator("button.btn-clear").click()
    operation.locator("button.execute").click()
    live = operation.locator(".live-responses-table tbody .response")
    live.wait_for()
    return (live.locator(".response-col_status").inner_text().strip(),
            live.locator(".response-col_description pre").first.inner_text())


def test_api_docs_runs_routes_with_the_signed_in_or_pasted_token(docs, sqlite_admin,
                                                                sqlite_user):
    _sign_in(docs, sqlite_admin)

    me = _operation(docs, "auth", "get", "/api/auth/me")
    status, body = _execute(me)
    assert status == "200"
    answer = json.loads(body)
    assert answer["user"]["email"] == sqlite_admin.email and answer["role"] == "admin"
    signed_in = docs.evaluate("() => sessionStorage.getItem('hub.access')")
    assert f"Bearer {signed_in}" in me.locator(".curl-command").inner_text()

    # A body route, sent with the example Swagger UI fills in from the document.
    send = _operation(docs, "messages", "post", "/api/messages")
    status, body = _execute(send)
    assert status == "202"
    assert json.loads(body)["status"] == "SENDING"
    docs.screenshot(path=str(OUTPUT_DIR / "api-docs.png"), full_page=False)

    # "Forget token" signs Swagger UI out too; a pasted token signs it in again.
    docs.click("#logout-btn")
    status, _ = _execute(_operation(docs, "socket", "get", "/api/socket/online-count"))
    assert status == "401"
    assert [problem for problem in docs.problems if "401" in problem], docs.problems
    docs.problems[:] = [problem for problem in docs.problems if "401" not in problem]
    docs.fill("#token", sqlite_user.token)
    docs.click("#use-token-btn")
    status, body = _execute(me)
    assert status == "200" and json.loads(body)["user"]["email"] == sqlite_user.email


def test_api_docs_shows_every_socket_event_with_payload_and_ack(docs, sqlite_hub):
    docs.wait_for_selector("#asyncapi details.event")
    document = sqlite_hub.api.get("/api/asyncapi.json").json()
    shown = docs.locator("#asyncapi details.event")
    assert sorted(shown.evaluate_all("nodes => nodes.map(n => n.dataset.event)")) \
        == sorted(document["operations"])

    join = docs.locator("#asyncapi details[data-event='join_room']")
    join.locator("summary").click()
    assert "client → hub" in join.inner_text()
    assert '"room:lobby"' in join.locator("pre.example").first.inner_text()
    assert join.locator("tr[data-property='room']").count() == 1        # the ack's field
    assert join.locator("tr[data-property='error.code']").count() == 1  # the failure's

    update = docs.locator("#asyncapi details[data-event='recipient_update']")
    update.locator("summary").click()
    assert "hub → client" in update.inner_text()
    assert update.locator("tr[data-property='version']").count() == 1
    docs.screenshot(path=str(OUTPUT_DIR / "api-docs-events.png"), full_page=False)

