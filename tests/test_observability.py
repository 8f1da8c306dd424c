"""Metrics, structured logs, and secrets kept out of every log line."""

import json

import pytest
import requests
import socketio

from tests.support import (
    RecordingClient,
    eventually,
    register_user,
)


@pytest.fixture(scope="module")
def json_log_hub(module_hub_factory):
    return module_hub_factory({"LOG_FORMAT": "json", "LOG_LEVEL": "DEBUG"}, name="jsonlog")


def _metric(text: str, name: str, labels: str = "") -> float:
    for line in text.splitlines():
        if line.startswith(f"{name}{{{labels}}}" if labels else f"{name} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_connections_events_and_acks(sqlite_hub, sqlite_user):
    before = requests.get(sqlite_hub.url + "/metrics", timeout=5).text
    client = RecordingClient(sqlite_hub.url)
    client.connect(token=sqlite_user.token)
    client.call("get_rooms")
    client.call("join_room", "admins")
    after = requests.get(sqlite_hub.url + "/metrics", timeout=5).text
    assert _metric(after, "hub_connects_total") == _metric(before, "hub_connects_total") + 1
    assert _metric(after, "hub_live_connections") >= 1
    assert _metric(after, "hub_events_in_total", 'event="get_rooms"') >= 1
    assert _metric(after, "hub_acks_total", 'outcome="forbidden"') >= 1
    assert "hub_emit_seconds_bucket" in after and "hub_dispatch_backlog" in after
    client.close()


def test_the_backlog_is_what_waits_to_be_sent_when_scraped(hub_factory):
    slow = hub_factory({"SIMULATED_SMS_LATENCY": "60", "DISPATCH_CONCURRENCY": "1"},
                       name="backlog")
    assert _metric(requests.get(slow.url + "/metrics", timeout=5).text,
                   "hub_dispatch_backlog") == 0
    owner = register_user(slow)
    posted = slow.api.post("/api/messages", owner.token, json={
        "body": "waiting", "recipients": ["+15557770001", "+15557770002", "+15557770003"]})
    assert posted.status_code == 202, posted.text
    assert _metric(requests.get(slow.url + "/metrics", timeout=5).text,
                   "hub_dispatch_backlog") == 3


def test_metrics_ignore_forwarded_addresses_by_default(sqlite_hub):
    response = requests.get(sqlite_hub.url + "/metrics",
                            headers={"X-Forwarded-For": "203.0.113.9"}, timeout=5)
    assert response.status_code == 200  # forwarded headers are not trusted by default


def test_json_logs_carry_socket_and_user_and_never_a_secret(json_log_hub):
    user = register_user(json_log_hub)
    client = RecordingClient(json_log_hub.url)
    client.connect(query=f"token={user.token}")
    client.call("join_room", "admins")
    client.call("authenticate", user.token)
    refused = RecordingClient(json_log_hub.url)
    with pytest.raises(socketio.exceptions.ConnectionError):
        refused.connect(token=user.refresh_token)
    json_log_hub.api.post("/api/auth/login", json={"email": user.email,
                                                    "password": user.password})
    client.close()

    def logged():
        text = json_log_hub.log_text()
        return text if "POST /api/auth/login" in text else None
    text = eventually(logged)
    for secret in (user.token, user.refresh_token, user.password,
                   user.token.split(".")[2], user.refresh_token.split(".")[2]):
        assert secret not in text
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert records, "no JSON log lines"
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    about_socket = [r for r in records if r["message"].startswith("socket ")]
    assert {r["message"].split(" from")[0] for r in about_socket} >= {
        "socket connected", "socket disconnected"}
    assert all(r["sid"] and r["user"] == user.id for r in about_socket)
