"""The pages in a real browser: Debian's Chromium driven by Playwright, headless.

Screenshots go to test-output/. Any console error or uncaught page error fails
the test.
"""

import os
import shutil
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from tests.support import (
    OUTPUT_DIR,
    REQUIRE_SERVICES,
    CuttableProxy,
    eventually,
    register_user,
)

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run",
               "--disable-quic"]


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM) or shutil.which("chromium") is None:
        if REQUIRE_SERVICES:
            pytest.fail("Chromium is not installed (REQUIRE_SERVICES=1)")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=LAUNCH_ARGS)
        yield browser
        browser.close()


def _open_page(browser, base_url):
    context = browser.new_context(base_url=base_url, viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
            if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.problems = problems
    return context, page


@pytest.fixture
def page(browser, sqlite_hub):
    context, page = _open_page(browser, sqlite_hub.url)
    yield page
    context.close()
    assert page.problems == [], page.problems


@pytest.fixture
def proxied_page(browser, sqlite_hub):
    """A page that reaches the hub through a proxy the test can cut."""
    proxy = CuttableProxy("127.0.0.1", sqlite_hub.port)
    proxy.start()
    context, page = _open_page(browser, f"http://127.0.0.1:{proxy.port}")
    page.proxy = proxy
    yield page
    context.close()
    proxy.cut()
    assert page.problems == [], page.problems


@pytest.fixture
def page_on(browser):
    """Factory: a page on a hub of the test's own (``page`` is on the shared one)."""
    opened = []

    def open_on(base_url):
        context, page = _open_page(browser, base_url)
        opened.append((context, page))
        return page

    yield open_on
    for context, page in opened:
        context.close()
        assert page.problems == [], page.problems


def _sign_in(page, user):
    page.fill("#email", user.email)
    page.fill("#password", user.password)
    page.click("#login-btn")
    page.wait_for_function("() => document.getElementById('whoami').textContent"
                           ".startsWith('user')")


def test_test_socket_page_end_to_end(page, sqlite_hub, sqlite_user, sqlite_admin):
    browser_user, hub_admin = sqlite_user, sqlite_admin
    page.goto("/testSocket")
    _sign_in(page, browser_user)
    page.click("#connect-btn")
    page.wait_for_selector("#conn-state[data-state='connected']")

    page.fill("#room-input", "room:browser")
    page.click("#join-btn")
    page.wait_for_selector("#rooms-list li:has-text('room:browser')")
    page.fill("#room-input", "admins")
    page.click("#join-btn")
    page.wait_for_selector("#event-log tr.failed:has-text('forbidden')")

    page.fill("#send-phones", "+15551234567\n+15005550001\n+15551234568")
    page.click("#send-btn")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#recipients-table tbody tr')].length === 3 && "
        "[...document.querySelectorAll('#recipients-table tbody tr')].every("
        "r => ['DELIVERED', 'FAILED'].includes(r.dataset.status))", timeout=15000)
    failed = page.locator("#recipients-table tr[data-status='FAILED']")
    assert "+15005550001" in failed.inner_text() and "Invalid phone number" in \
        failed.inner_text()
    page.wait_for_selector("#message-summary[data-status='SENT']")

    page.click("#subscribe-analytics-btn")
    page.wait_for_selector("#analytics-figures [data-figure='messages']")
    eventually(lambda: page.inner_text("#analytics-figures [data-figure='delivered'] strong")
               == "2", timeout=10)

    response = sqlite_hub.api.post(f"/api/socket/notify/{browser_user.id}", hub_admin.token,
                                   json={"title": "<img src=x onerror=alert(1)>",
                                         "message": "from the REST API"})
    note_id = response.json()["notification"]["id"]
    item = page.wait_for_selector(f"#notifications-list li[data-notification-id='{note_id}']")
    assert "<img src=x onerror=alert(1)>" in item.inner_text()
    unread_before = int(page.inner_text("#unread-badge"))
    assert unread_before >= 1
    item.query_selector(".mark-read-btn").click()
    page.wait_for_selector(f"#notifications-list li[data-notification-id='{note_id}']"
                           "[data-read='true']")
    assert int(page.inner_text("#unread-badge")) == unread_before - 1

    page.fill("#log-filter", "recipient_updates")
    visible = page.locator("#event-log tbody tr:visible")
    eventually(lambda: visible.count() > 0 and all(
        "recipient_updates" in text for text in visible.all_inner_texts()), timeout=5)
    page.screenshot(path=str(OUTPUT_DIR / "testSocket.png"), full_page=True)


# Every task of the page's main thread over 50 ms, from the start of the page.
LONG_TASKS = """
window.longTasks = [];
new PerformanceObserver((list) => {
  list.getEntries().forEach((e) => window.longTasks.push({start: e.startTime, ms: e.duration}));
}).observe({type: 'longtask', buffered: true});
"""
COUNTS = ("() => Object.fromEntries([...document.querySelectorAll('#recipient-counts "
          "[data-count-status]')].map(e => [e.dataset.countStatus, "
          "Number(e.querySelector('strong').textContent)]))")


def _track_on_page(page, user, message_id):
    page.add_init_script(LONG_TASKS)
    page.goto("/testSocket")
    _sign_in(page, user)
    page.click("#connect-btn")
    page.wait_for_selector("#conn-state[data-state='connected']")
    page.fill("#message-id", message_id)
    page.click("#track-btn")


def _wait_until_finished(page, total, timeout):
    page.wait_for_function(
        f"() => {{ const c = ({COUNTS})(); return c.DELIVERED + c.FAILED === {total}; }}",
        timeout=timeout * 1000, polling=500)


def _rest_counts(hub, user, message_id):
    """Each status's recipients as REST lists them, page by page."""
    counts: dict[str, int] = {}
    after = None
    while True:
        query = f"limit=1000&after={after}" if after else "limit=1000"
        page = hub.api.get(f"/api/messages/{message_id}/recipients?{query}", user.token).json()
        for recipient in page["recipients"]:
            counts[recipient["status"]] = counts.get(recipient["status"], 0) + 1
        after = page["nextCursor"]
        if after is None:
            return counts


def _final_figures_match_rest(page, hub, user, message_id, total):
    message = eventually(lambda: (lambda m: m if m["status"] != "SENDING" else None)(
        hub.api.get(f"/api/messages/{message_id}", user.token).json()), timeout=30)
    page.wait_for_selector(f"#message-summary[data-status='{message['status']}']")
    shown = page.evaluate(COUNTS)
    rest = _rest_counts(hub, user, message_id)
    assert shown == {status: rest.get(status, 0) for status in shown}, (shown, rest)
    assert sum(shown.values()) == total == message["recipientCount"]
    assert shown["DELIVERED"] == message["deliveredCount"]
    assert shown["FAILED"] == message["failedCount"]
    summary = page.inner_text("#message-summary")
    assert f"sent {message['successCount']}" in summary
    assert f"delivered {message['deliveredCount']}" in summary


def test_test_socket_follows_ten_thousand_recipients_smoothly(page, sqlite_hub, sqlite_user):
    phones = [f"+1555{i:07d}" for i in range(9_998)] + ["+15005550001", "+15005550009"]
    sent = sqlite_hub.api.post("/api/messages", sqlite_user.token,
                               json={"body": "ten thousand", "recipients": phones})
    assert sent.status_code == 202, sent.text
    message_id = sent.json()["id"]
    _track_on_page(page, sqlite_user, message_id)
    rows = []
    deadline = time.monotonic() + 300
    while page.evaluate(f"() => ({COUNTS})()")["DELIVERED"] + 2 < len(phones):
        rows.append(page.locator("#recipients-table tbody tr").count())
        assert time.monotonic() < deadline, "the page did not follow the message to its end"
        time.sleep(1)
    _wait_until_finished(page, len(phones), timeout=60)
    _final_figures_match_rest(page, sqlite_hub, sqlite_user, message_id, len(phones))

    rows.append(page.locator("#recipients-table tbody tr").count())
    assert 0 < max(rows) < 500, rows
    assert page.get_attribute("#conn-state", "data-connects") == "1"
    long_tasks = [task for task in page.evaluate("window.longTasks")
                  if task["start"] > 1000 and task["ms"] > 200]
    assert long_tasks == [], long_tasks

    page.select_option("#recipient-filter", "FAILED")
    page.wait_for_function("() => document.querySelectorAll('#recipients-table tbody tr')"
                           ".length === 2")
    statuses = page.eval_on_selector_all("#recipients-table tbody tr",
                                         "rows => rows.map(r => r.dataset.status)")
    assert statuses == ["FAILED", "FAILED"]
    assert int(page.get_attribute("#log-hidden", "data-hidden")) == 0 or \
        "older events hidden" in page.inner_text("#log-hidden")
    page.screenshot(path=str(OUTPUT_DIR / "testSocket-10000.png"), full_page=True)


def test_the_event_log_is_a_ring_that_can_be_paused(page, sqlite_user):
    page.goto("/testSocket")
    _sign_in(page, sqlite_user)
    page.click("#connect-btn")
    page.wait_for_selector("#conn-state[data-state='connected']")
    for _ in range(120):
        page.click("#get-rooms-btn")
    page.wait_for_function("() => Number(document.getElementById('log-hidden').dataset.hidden) > 0",
                           timeout=20000)
    assert page.get_attribute("#log-hidden", "data-kept") == "200"
    assert page.locator("#event-log tbody tr").count() < 60
    assert "older events hidden" in page.inner_text("#log-hidden")
    page.click("#pause-log-btn")
    page.wait_for_selector("#log-hidden:has-text('(paused)')")
    newest = page.inner_text("#event-log tbody tr:first-child")
    page.click("#measure-btn")
    page.wait_for_function("() => document.getElementById('ack-rtt').textContent.endsWith('ms')")
    assert page.inner_text("#event-log tbody tr:first-child") == newest
    page.click("#pause-log-btn")
    eventually(lambda: page.inner_text("#event-log tbody tr:first-child") != newest)


def test_a_page_whose_connection_is_killed_resumes_and_ends_exact(proxied_page, sqlite_hub,
                                                                 sqlite_user):
    page = proxied_page
    phones = [f"+1555777{i:04d}" for i in range(3_000)] + ["+15005550001"]
    message_id = sqlite_hub.api.post("/api/messages", sqlite_user.token, json={
        "body": "cut halfway", "recipients": phones}).json()["id"]
    _track_on_page(page, sqlite_user, message_id)
    page.wait_for_function(f"() => ({COUNTS})().DELIVERED >= {len(phones) // 2}",
                           timeout=120000, polling=100)
    page.proxy.cut()
    page.wait_for_selector("#conn-state[data-state='disconnected']")
    time.sleep(0.5)
    page.proxy.restore()
    page.wait_for_selector("#conn-state[data-connects='2'][data-state='connected']",
                           timeout=20000)
    _wait_until_finished(page, len(phones), timeout=120)
    _final_figures_match_rest(page, sqlite_hub, sqlite_user, message_id, len(phones))
    resumed = page.locator("#event-log tbody tr", has_text='"resumed":true')
    assert resumed.count() == 1


def test_dashboard_charts_update_after_a_message_completes(page, sqlite_hub, sqlite_admin):
    hub_admin = sqlite_admin
    page.goto("/dashboard")
    _sign_in(page, hub_admin)
    page.wait_for_selector("#conn-state[data-state='connected']")
    page.wait_for_function("() => Number(document.getElementById('chart-hourly')"
                           ".dataset.updatedCount) >= 1")
    before = int(page.get_attribute("#chart-hourly", "data-updated-count"))
    total_before = page.inner_text("#stat-messages-total")
    response = sqlite_hub.api.post("/api/messages", hub_admin.token,
                                   json={"body": "dashboard", "recipients": ["+15550001111"]})
    message_id = response.json()["id"]
    page.wait_for_function(
        f"() => Number(document.getElementById('chart-hourly').dataset.updatedCount) > {before}",
        timeout=10000)
    page.wait_for_selector(f"#recent-messages tr[data-message-id='{message_id}']"
                           "[data-status='SENT']", timeout=10000)
    eventually(lambda: page.inner_text("#stat-messages-total") != total_before, timeout=10)
    # The figure and the chart say the same: delivered of sent, and every recipient once.
    assert page.inner_text(".figure:has(#stat-delivery-rate) span") == "Delivered of sent"
    assert page.inner_text(".card:has(#chart-delivery) h2") == "Outcomes of all recipients"
    delivered, awaiting, failed, unsent = eventually(lambda: (lambda slices: slices if sum(
        slices[:2]) else None)(page.evaluate(
            "() => Chart.getChart('chart-delivery').data.datasets[0].data")), timeout=10)
    assert delivered + awaiting + failed + unsent == int(page.inner_text("#stat-recipients-total"))
    assert page.inner_text("#stat-delivery-rate") == \
        f"{100 * delivered / (delivered + awaiting):.1f}%"
    page.wait_for_selector("#global-panel:not([hidden])")
    page.wait_for_selector("#nodes-table tbody tr")
    page.screenshot(path=str(OUTPUT_DIR / "dashboard.png"), full_page=True)


def test_test_socket_page_shows_inbound_messages_as_they_arrive(page, sqlite_hub, sqlite_admin):
    page.goto("/testSocket")
    _sign_in(page, sqlite_admin)
    page.click("#connect-btn")
    page.wait_for_selector("#conn-state[data-state='connected']")
    page.fill("#inbound-from", "+15557770001")
    page.fill("#inbound-body", " help ")
    page.click("#inject-inbound-btn")
    row = page.wait_for_selector("#inbound-table tbody tr[data-keyword='HELP']")
    assert "+15557770001" in row.inner_text()
    page.fill("#inbound-from", "<b>not a number</b>")
    page.fill("#inbound-body", "<img src=x onerror=alert(1)>")
    page.click("#inject-inbound-btn")
    row = page.wait_for_selector("#inbound-table tbody tr:has-text('unparseable')")
    assert "<img src=x onerror=alert(1)>" in row.inner_text()
    assert page.inner_text("#inbound-badge") == "2"
    page.screenshot(path=str(OUTPUT_DIR / "testSocket-inbound.png"), full_page=True)


def test_dashboard_counts_the_replies_its_user_receives(page, sqlite_hub, sqlite_user,
                                                       sqlite_admin):
    phone = "+15557770002"
    sent = sqlite_hub.api.post("/api/messages", sqlite_user.token,
                               json={"body": "dashboard", "recipients": [phone]})
    message_id = sent.json()["id"]
    eventually(lambda: sqlite_hub.api.get(f"/api/messages/{message_id}", sqlite_user.token)
               .json()["status"] == "SENT", timeout=10)
    page.goto("/dashboard")
    _sign_in(page, sqlite_user)
    page.wait_for_selector("#conn-state[data-state='connected']")
    page.wait_for_function("() => document.getElementById('stat-inbound').textContent "
                           "!== '–'")
    before = int(page.inner_text("#stat-inbound").split()[0])
    injected = sqlite_hub.api.post("/api/simulator/inbound", sqlite_admin.token,
                                   json={"from": phone, "body": "Running late"})
    assert injected.status_code == 201, injected.text
    eventually(lambda: int(page.inner_text("#stat-inbound").split()[0]) == before + 1,
               timeout=10)


@pytest.mark.parametrize("path", ["/testSocket", "/dashboard", "/api/docs", "/api/openapi.json",
                                  "/static/js/hub_client.js", "/api/socket/online-count"])
def test_every_answer_carries_the_security_headers(sqlite_hub, path):
    response = requests.get(sqlite_hub.url + path, timeout=10)
    policy = dict(directive.strip().split(" ", 1)
                  for directive in response.headers["Content-Security-Policy"].split(";"))
    assert policy["frame-ancestors"] == "'none'"
    assert policy["script-src"] == "'self'" and policy["default-src"] == "'self'"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"


def test_an_injected_inline_handler_does_not_run(page):
    page.goto("/testSocket")
    page.evaluate("document.body.insertAdjacentHTML('beforeend', "
                  "'<img src=\"data:,\" onerror=\"window.injected = 1\">')")
    eventually(lambda: any("Content Security Policy" in problem for problem in page.problems))
    assert page.evaluate("window.injected") is None
    page.problems.clear()  # the refusal is the console error this test expects


def test_a_page_upgrades_its_own_long_polling_session(page, sqlite_hub, sqlite_user):
    """The session is bound to the page: its first poll (same-origin, no Origin), its posts
    and its WebSocket (with the page's Origin) must all be taken as the same client."""
    page.goto("/testSocket")
    rooms = page.evaluate("""token => new Promise((resolve, reject) => {
        const socket = io(window.location.origin, {
            transports: ['polling', 'websocket'], auth: {token}, reconnection: false});
        socket.on('connect_error', error => reject(new Error(error.message)));
        socket.io.engine.on('upgrade', async () => {
            try {
                const rooms = await socket.timeout(5000).emitWithAck('get_rooms');
                resolve({transport: socket.io.engine.transport.name, rooms});
            } catch (error) { reject(error); }
            socket.disconnect();
        });
        setTimeout(() => reject(new Error('no upgrade within 10 s')), 10000);
    })""", sqlite_user.token)
    assert rooms == {"transport": "websocket", "rooms": [f"user:{sqlite_user.id}"]}


@pytest.mark.parametrize("path", ["/testSocket", "/dashboard"])
def test_log_out_ends_the_session_on_the_server(page, sqlite_hub, sqlite_user, path):
    page.goto(path)
    _sign_in(page, sqlite_user)
    access = page.evaluate("sessionStorage.getItem('hub.access')")
    refresh = page.evaluate("sessionStorage.getItem('hub.refresh')")
    page.click("#logout-btn")
    page.wait_for_function(
        "() => document.getElementById('whoami').textContent === 'not signed in'")
    assert page.evaluate("sessionStorage.length") == 0
    assert page.inner_text("#login-error") == ""
    for response in (sqlite_hub.api.post("/api/auth/refresh", refresh),
                     sqlite_hub.api.get("/api/auth/me", access)):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "token_revoked"


def test_log_out_waits_for_the_dashboards_own_requests(page, sqlite_user):
    """A load still on its way when the user logs out would reach a revoked session."""
    held = []
    page.route("**/api/messages?limit=20", lambda route: held.append(route))
    page.goto("/dashboard")
    _sign_in(page, sqlite_user)
    deadline = time.monotonic() + 10
    while not held and time.monotonic() < deadline:
        page.wait_for_timeout(20)
    assert held, "the dashboard never asked for its messages"
    page.click("#logout-btn", no_wait_after=True)
    page.wait_for_timeout(200)
    assert page.inner_text("#whoami").startswith("user"), "logged out before its request ended"
    held[0].continue_()
    page.wait_for_function(
        "() => document.getElementById('whoami').textContent === 'not signed in'")
    assert page.inner_text("#login-error") == ""


def test_test_socket_previews_the_cost_and_downloads_the_report(page, sqlite_user):
    page.goto("/testSocket")
    _sign_in(page, sqlite_user)
    page.click("#connect-btn")
    page.wait_for_selector("#conn-state[data-state='connected']")
    page.fill("#send-body", "Fête ✓ ce soir")
    page.fill("#send-phones", "+33612345678\n+1 201 555 0123\n+12015550123\nnope")
    page.click("#preview-btn")
    page.wait_for_selector("#preview-countries tr[data-country='US']")
    assert page.inner_text("#preview-ucs2") == "UCS-2 because of: ê (U+00EA) ✓ (U+2713)"
    summary = page.inner_text("#preview-summary")
    assert summary == ("2 recipients (1 duplicates removed, 0 suppressed, 1 invalid) · UCS-2 · "
                       "1 segment · cost $0.0150")
    assert "#3 nope: must start with + and the country code" in page.inner_text(
        "#preview-invalid")
    assert page.locator("#preview-countries tbody tr").all_inner_texts() == [
        "FR\t1\t0.0075\t$0.0075", "US\t1\t0.0075\t$0.0075"]
    page.screenshot(path=str(OUTPUT_DIR / "testSocket-preview.png"), full_page=True)

    page.fill("#send-phones", "+33612345678\n+12015550123")
    page.click("#send-btn")
    page.wait_for_selector("#message-summary[data-status='SENT']", timeout=15000)
    message_id = page.input_value("#message-id")
    with page.expect_download() as download:
        page.click("#report-btn")
    assert download.value.suggested_filename == f"message-{message_id}-report.csv"
    lines = download.value.path().read_text(encoding="utf-8").splitlines()
    assert lines[0] == ("phone,status,providerStatus,errorCode,providerErrorCode,parts,cost,"
                        "sentAt,deliveredAt")
    assert sorted(line.split(",")[0] for line in lines[1:]) == ["'+12015550123",
                                                                "'+33612345678"]


def test_test_socket_schedules_pauses_resumes_and_cancels(page, sqlite_user):
    page.goto("/testSocket")
    _sign_in(page, sqlite_user)
    page.click("#connect-btn")
    page.wait_for_selector("#conn-state[data-state='connected']")
    page.fill("#send-phones", "+12015550188")
    page.fill("#send-at", "2099-01-01T09:00")  # beyond 30 days: refused, nothing tracked
    page.click("#send-btn")
    page.wait_for_selector("#event-log tr.failed:has-text('more than 30 days ahead')")
    tomorrow = (datetime.now() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    page.fill("#send-at", tomorrow)
    page.click("#send-btn")
    page.wait_for_selector("#message-summary[data-status='SCHEDULED']")
    for button, status in (("#pause-btn", "PAUSED"), ("#resume-btn", "SCHEDULED"),
                           ("#cancel-btn", "CANCELED")):
        page.click(button)
        page.wait_for_selector(f"#message-summary[data-status='{status}']")
    page.click("#pause-btn")
    page.wait_for_selector("#event-log tr.failed:has-text('this one is CANCELED')")
    page.screenshot(path=str(OUTPUT_DIR / "testSocket-controls.png"), full_page=True)
    # The 400 and the 409 are the two console errors this test expects.
    assert len(page.problems) == 2 and all("status of 4" in p for p in page.problems)
    page.problems.clear()


ROW_COLOR = "row => getComputedStyle(row).color"


def _cells(page, status):
    """The cells of the one recipient row in ``status``: phone, status, provider, error."""
    row = page.wait_for_selector(f"#recipients-table tr[data-status='{status}']", timeout=15000)
    return [cell.inner_text() for cell in row.query_selector_all("td")][:4]


def test_test_socket_shows_every_recipient_status_with_the_providers_words(page_on,
                                                                          hub_factory):
    """Each status in a colour of its own, the provider's words and the hub's beside it."""
    hub = hub_factory({"SMS_VALIDITY_SECONDS": "3", "SIMULATED_RECEIPT_DELAY": "0.1"},
                      name="statuses")
    user = register_user(hub)
    page = page_on(hub.url)
    page.goto("/testSocket")
    _sign_in(page, user)
    page.click("#connect-btn")
    page.wait_for_selector("#conn-state[data-state='connected']")
    page.fill("#send-phones", "+15551230001\n+15005550003\n+15005550004\n+15005550008")
    page.click("#send-btn")
    colors = {}
    expected = {
        "DELIVERED": ["+15551230001", "DELIVERED", "delivered", ""],
        "FAILED": ["+15005550003", "FAILED", "undelivered · 30003",
                   "delivery_failed: The handset was unreachable"],
        "SUPPRESSED": ["+15005550004", "SUPPRESSED", "failed · 21610",
                       "opted_out: The number opted out"],
        "UNKNOWN": ["+15005550008", "UNKNOWN", "",
                    "ambiguous_submit: No answer from the provider"],
    }
    for status, cells in expected.items():
        assert _cells(page, status) == cells
        colors[status] = page.eval_on_selector(
            f"#recipients-table tr[data-status='{status}']", ROW_COLOR)
    assert page.evaluate(f"() => ({COUNTS})()") == {
        "PENDING": 0, "SCHEDULED": 0, "SENDING": 0, "SENT": 0, "DELIVERED": 1, "FAILED": 1,
        "SUPPRESSED": 1, "EXPIRED": 0, "CANCELED": 0, "UNKNOWN": 1}
    page.wait_for_selector("#message-summary[data-status='SENT']:has-text('UNKNOWN 1')")
    page.select_option("#recipient-filter", "UNKNOWN")
    page.wait_for_function("() => document.querySelectorAll('#recipients-table tbody tr')"
                           ".length === 1")
    assert page.get_attribute("#recipients-table tbody tr", "data-status") == "UNKNOWN"
    page.screenshot(path=str(OUTPUT_DIR / "testSocket-statuses.png"), full_page=True)
    page.select_option("#recipient-filter", "")

    # Paused before its time, it outlives its validity; one canceled before its time.
    soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    for send_at, action, status in ((soon, "pause", "EXPIRED"), (later, "cancel", "CANCELED")):
        message_id = hub.api.post("/api/messages", user.token, json={
            "body": status, "recipients": ["+15551230002"], "sendAt": send_at}).json()["id"]
        assert hub.api.post(f"/api/messages/{message_id}/{action}",
                            user.token).status_code == 200
        page.fill("#message-id", message_id)
        page.click("#track-btn")
        assert _cells(page, status)[1:] == [status, "", {
            "EXPIRED": "expired: Not sent within its validity",
            "CANCELED": "canceled: The message was canceled before this was sent"}[status]]
        colors[status] = page.eval_on_selector(
            f"#recipients-table tr[data-status='{status}']", ROW_COLOR)
    page.wait_for_selector("#message-summary[data-status='CANCELED']")
    assert len(set(colors.values())) == len(colors), colors


def test_dashboard_shows_scheduled_and_paused_messages_as_they_change(page, sqlite_hub,
                                                                     sqlite_user):
    page.goto("/dashboard")
    _sign_in(page, sqlite_user)
    page.wait_for_selector("#conn-state[data-state='connected']")

    def counts():
        return page.evaluate("() => Object.fromEntries([...document.querySelectorAll("
                             "'#message-status-counts [data-message-status]')].map(e => "
                             "[e.dataset.messageStatus, Number(e.querySelector('strong')"
                             ".textContent)]))")

    assert set(counts()) == {"SCHEDULED", "SENDING", "PAUSED", "SENT", "FAILED", "CANCELED"}
    send_at = datetime.now(UTC) + timedelta(days=1)
    message_id = sqlite_hub.api.post("/api/messages", sqlite_user.token, json={
        "body": "tomorrow", "recipients": ["+15551230003", "+15551230004"],
        "sendAt": send_at.isoformat()}).json()["id"]
    row = f"#recent-messages tr[data-message-id='{message_id}']"
    # The creation's message_update has no sendAt: the time comes with the message itself.
    page.wait_for_selector(f"{row}[data-status='SCHEDULED'] td:nth-child(3)"
                           ":text-matches('^SCHEDULED for .*2')")
    assert page.inner_text(f"{row} td:nth-child(4)") == "PENDING 2"
    # The counts are the analytics' (every message of the user), a moment behind the row.
    eventually(lambda: counts()["SCHEDULED"] == 1, timeout=10)
    colors = {"SCHEDULED": page.eval_on_selector(row, ROW_COLOR)}
    for action, status in (("pause", "PAUSED"), ("resume", "SCHEDULED"), ("cancel", "CANCELED")):
        answer = sqlite_hub.api.post(f"/api/messages/{message_id}/{action}", sqlite_user.token)
        assert answer.status_code == 200, answer.text
        page.wait_for_selector(f"{row}[data-status='{status}']")
        expected = {key: int(key == status) for key in ("SCHEDULED", "PAUSED", "CANCELED")}
        eventually(lambda expected=expected: {key: counts()[key] for key in expected}
                   == expected, timeout=10)
        headline = f"{expected['SCHEDULED']} / {expected['PAUSED']}"
        eventually(lambda headline=headline: page.inner_text("#stat-scheduled") == headline,
                   timeout=10)
        colors[status] = page.eval_on_selector(row, ROW_COLOR)
    assert page.inner_text(f"{row} td:nth-child(4)") == "CANCELED 2"
    page.wait_for_function("() => document.getElementById('stat-scheduled').textContent"
                           " === '0 / 0'")
    assert page.inner_text(f"{row} td:nth-child(3)") == "CANCELED"
    sent = sqlite_hub.api.post("/api/messages", sqlite_user.token, json={
        "body": "now", "recipients": ["+15551230005"]}).json()["id"]
    page.wait_for_selector(f"#recent-messages tr[data-message-id='{sent}'][data-status='SENT']")
    colors["SENT"] = page.eval_on_selector(f"#recent-messages tr[data-message-id='{sent}']",
                                           ROW_COLOR)
    assert len(set(colors.values())) == len(colors), colors
    page.screenshot(path=str(OUTPUT_DIR / "dashboard-scheduled.png"), full_page=True)
