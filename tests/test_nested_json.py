"""Deeply nested JSON: malformed input like any other, on every transport and on REST.

Python's JSON decoder raises ``RecursionError`` past about a thousand levels,
and nothing caught it: one socket sending nested packets wrote 161 MB of
tracebacks a minute and was never dropped, and the login route answered 500.
"""

import json

import pytest
import websocket

from tests.support import (
    AckProbe,
    PollingClient,
    RecordingClient,
    assert_acks_stay_flat,
    close_code,
    raw_websocket,
    register_user,
    rss_kb,
)

# Each fits in MAX_MESSAGE_SIZE (16 KB): nesting in an event's argument, an Engine.IO
# message that is nothing but nesting, and nested objects.
NESTED_PACKETS = [
    '42["join_room",' + "[" * 7000 + "]" * 7000 + "]",
    "4" + "[" * 16000,
    '42["pong",' + '{"a":' * 2500 + "1" + "}" * 2500 + "]",
    '42["get_notifications",' + '{"x":[' * 2000 + "]}" * 2000 + "]",
    "42" + "[" * 16000,
]
MAX_PROTOCOL_ERRORS = 5


def _new_log_lines(hub, before: str) -> str:
    return hub.log_text()[len(before):]


def _bystander(hub):
    user = register_user(hub)
    client = RecordingClient(hub.url)
    client.connect(token=user.token)
    return client, AckProbe.baseline(client)


def test_nested_packets_on_a_websocket_close_it_with_bounded_logging(sqlite_hub, sqlite_user):
    calm, baseline = _bystander(sqlite_hub)
    log_before = sqlite_hub.log_text()
    rss_before = rss_kb(sqlite_hub.process.pid)
    with AckProbe(calm) as during:
        ws = raw_websocket(sqlite_hub)
        assert ws.recv().startswith("0{")
        ws.send("40" + json.dumps({"token": sqlite_user.token}))
        for packet in NESTED_PACKETS[:MAX_PROTOCOL_ERRORS]:
            ws.send(packet)
        ws.settimeout(5)
        try:
            close_code(ws)  # returns once the hub closes; a timeout means it never did
        except websocket.WebSocketTimeoutException:
            pytest.fail("five nested packets left the connection open")
    logged = _new_log_lines(sqlite_hub, log_before)
    assert "Traceback" not in logged and "RecursionError" not in logged
    assert logged.count("protocol error") <= 2
    assert rss_kb(sqlite_hub.process.pid) - rss_before < 10 * 1024
    assert_acks_stay_flat(baseline, during)
    calm.close()


def test_nested_packets_over_long_polling_end_the_session_with_bounded_logging(
        sqlite_hub, sqlite_user):
    calm, baseline = _bystander(sqlite_hub)
    log_before = sqlite_hub.log_text()
    polling = PollingClient(sqlite_hub, timeout=5)
    assert polling.open().status == 200
    polling.connect(sqlite_user.token)
    with AckProbe(calm) as during:
        statuses = [polling.send(packet).status for packet in NESTED_PACKETS]
    assert statuses == [200] * len(NESTED_PACKETS), statuses
    after = polling.send('42["get_rooms"]')
    assert after.status == 400, "the session outlived five nested packets"
    assert after.json()["error"]["code"] == "invalid_session"
    logged = _new_log_lines(sqlite_hub, log_before)
    assert "Traceback" not in logged and "RecursionError" not in logged
    assert logged.count("protocol error") <= 2
    assert_acks_stay_flat(baseline, during)
    calm.close()


def _nested_body(depth: int = 100_000) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("path,who", [("/api/auth/login", None), ("/api/auth/register", None),
                                      ("/api/messages", "user"),
                                      ("/api/socket/notify/{user_id}", "admin")])
@pytest.mark.parametrize("body", [_nested_body(), '{"a":' * 50_000 + "1" + "}" * 50_000])
def test_deeply_nested_rest_bodies_are_400_json(sqlite_hub, sqlite_user, sqlite_admin, path,
                                                who, body):
    token = {"user": sqlite_user.token, "admin": sqlite_admin.token}.get(who)
    log_before = sqlite_hub.log_text()
    response = sqlite_hub.api.post(path.format(user_id=sqlite_user.id), token, data=body,
                                   headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == {
        "code": "invalid_json",
        "message": "Body is JSON nested too deeply: at most about 1,000 levels are read"}
    assert "Traceback" not in _new_log_lines(sqlite_hub, log_before)
