"""Who may use an Engine.IO session: its own client, within the address cap, in time.

An Engine.IO sid is all python-engineio asks for: whoever learns one (an
access log writes it in every polling request line) can poll, post or
upgrade that session from anywhere. Here the sid stays out of the logs,
every request on a session must come from the client that opened it,
sessions count against the per-address cap from their first request, a
session that never authenticates is closed after ``CONNECT_TIMEOUT``, and a
foreign Origin is refused with 403 before any upgrade.
"""

import json
import time

import pytest
import websocket

from tests.support import (
    OTHER_ADDRESS,
    AckProbe,
    PollingClient,
    RecordingClient,
    assert_acks_stay_flat,
    close_code,
    eventually,
    nginx_proxy_config,
    raw_websocket,
    register_user,
    rss_kb,
)

LISTED_ORIGIN = "https://app.example.com"
FOREIGN_ORIGIN = "https://evil.example"
ADDRESS_CAP = 30


@pytest.fixture(scope="module")
def guarded_hub(module_hub_factory):
    return module_hub_factory({"CORS_ALLOWED_ORIGINS": LISTED_ORIGIN}, name="guarded")


@pytest.fixture(scope="module")
def capped_hub(module_hub_factory):
    return module_hub_factory({"MAX_CONNECTIONS_PER_ADDRESS": str(ADDRESS_CAP),
                               "CONNECT_TIMEOUT": "60"}, name="capped")


@pytest.fixture(scope="module")
def impatient_hub(module_hub_factory):
    return module_hub_factory({"CONNECT_TIMEOUT": "1"}, name="impatient")


@pytest.fixture(scope="module")
def proxied_hub(module_hub_factory):
    """A hub behind nginx as docs/deployment.md configures it, trusting its forwarded address."""
    server = module_hub_factory({"TRUST_PROXY_HEADERS": "1", "MAX_CONNECTIONS_PER_ADDRESS": "5",
                                 "CONNECT_TIMEOUT": "60"}, name="proxied")
    return module_hub_factory.nginx(nginx_proxy_config(f"server 127.0.0.1:{server.port};"))


def _refusal(attempt) -> tuple[int, dict]:
    """Status and JSON body of a WebSocket handshake the hub must refuse."""
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        attempt()
    return refused.value.status_code, json.loads(refused.value.resp_body)


# Session ids in logs (item 2) -------------------------------------------------------


def test_session_ids_never_reach_the_log(guarded_hub):
    user = register_user(guarded_hub)
    client = RecordingClient(guarded_hub.url)
    client.connect(token=user.token, transports=("polling",))
    client.call("get_rooms")
    engine_sid, socket_sid = client.sio.eio.sid, client.sid
    client.close()
    from services.observability.log_redaction import sid_tag

    # Lines about the session (the access log's) and about the socket, each with its tag;
    # a hub that logged the raw ids, or lost them, never shows both tags.
    text = eventually(lambda: (t := guarded_hub.log_text()) and sid_tag(engine_sid) in t
                      and sid_tag(socket_sid) in t and t, timeout=15)
    assert "GET /socket.io/?transport=polling" in text, "no access log line to check"
    assert engine_sid not in text and socket_sid not in text


# Session takeover (item 2) ------------------------------------------------------------


def test_a_stolen_sid_cannot_take_over_a_long_polling_session(guarded_hub):
    victim_user, admin = register_user(guarded_hub), register_user(guarded_hub, admin=True)
    victim = RecordingClient(guarded_hub.url)
    victim.connect(token=victim_user.token, transports=("polling",))
    victim.wait_for("session")
    stolen = victim.sio.eio.sid
    baseline = AckProbe.baseline(victim, samples=10)
    rss_before = rss_kb(guarded_hub.process.pid)
    elsewhere = PollingClient(guarded_hub, source=OTHER_ADDRESS)
    elsewhere.sid = stolen
    other_origin = PollingClient(guarded_hub, origin=LISTED_ORIGIN)
    other_origin.sid = stolen
    with AckProbe(victim, interval=0.05) as during:
        for _ in range(50):
            status, body = _refusal(elsewhere.upgrade)
            assert (status, body["error"]["code"]) == (403, "forbidden")
            status, body = _refusal(other_origin.upgrade)
            assert (status, body["error"]["code"]) == (403, "forbidden")
            for attempt in (elsewhere.poll, lambda: elsewhere.send('42["get_rooms"]'),
                            other_origin.poll):
                answer = attempt()
                assert (answer.status, answer.json()["error"]["code"]) == (403, "forbidden")
    assert rss_kb(guarded_hub.process.pid) - rss_before < 10 * 1024
    assert_acks_stay_flat(baseline, during)
    response = guarded_hub.api.post(f"/api/socket/notify/{victim_user.id}", admin.token,
                                    json={"title": "still mine", "message": "m"})
    assert response.status_code == 201 and response.json()["delivered"] == 1
    assert victim.wait_for("notification")["title"] == "still mine"
    victim.close()


def test_the_client_that_opened_a_session_may_still_upgrade_it(guarded_hub):
    user = register_user(guarded_hub)
    polling = PollingClient(guarded_hub, origin=LISTED_ORIGIN)
    assert polling.open().status == 200
    polling.connect(user.token)
    ws = polling.upgrade()
    ws.send('421["get_rooms"]')
    answer = ws.recv()
    while not answer.startswith("431"):
        answer = ws.recv()
    assert json.loads(answer[3:]) == [[f"user:{user.id}"]]
    ws.close()


# Origin before every upgrade (item 7) -------------------------------------------------


@pytest.mark.parametrize("query", [
    "EIO=4&transport=websocket&transport=websocket",
    "EIO=4&EIO=4&transport=websocket",
    "EIO=4&transport=websocket&j=1",
])
def test_foreign_origin_gets_403_json_on_every_websocket_path(guarded_hub, query):
    status, body = _refusal(lambda: raw_websocket(guarded_hub, query,
                                                  headers=[f"Origin: {FOREIGN_ORIGIN}"]))
    assert (status, body["error"]["code"]) == (403, "forbidden")


def test_foreign_origin_cannot_upgrade_a_long_polling_session(guarded_hub):
    polling = PollingClient(guarded_hub)
    assert polling.open().status == 200
    status, body = _refusal(lambda: polling.upgrade(headers=[f"Origin: {FOREIGN_ORIGIN}"]))
    assert (status, body["error"]["code"]) == (403, "forbidden")


def test_foreign_origin_gets_403_json_on_long_polling(guarded_hub):
    answer = PollingClient(guarded_hub, origin=FOREIGN_ORIGIN).open()
    assert (answer.status, answer.json()["error"]["code"]) == (403, "forbidden")


# Unauthenticated sessions (item 3) ------------------------------------------------------


def _open_unauthenticated(hub, count: int) -> tuple[list, list]:
    """Up to ``count`` sessions from the other address, half WebSocket, half polling."""
    opened, refusals = [], []
    for index in range(count):
        if index % 2:
            answer = PollingClient(hub, source=OTHER_ADDRESS).open()
            if answer.status == 200:
                opened.append(answer)
            else:
                refusals.append((answer.status, answer.json()))
            continue
        try:
            ws = raw_websocket(hub, source=OTHER_ADDRESS)
            assert ws.recv().startswith("0{")
            opened.append(ws)
        except websocket.WebSocketBadStatusException as refused:
            refusals.append((refused.status_code, json.loads(refused.resp_body)))
    return opened, refusals


def test_unauthenticated_sessions_count_against_the_address_cap(capped_hub):
    user = register_user(capped_hub)
    calm = RecordingClient(capped_hub.url)
    calm.connect(token=user.token)
    baseline = AckProbe.baseline(calm)
    rss_before = rss_kb(capped_hub.process.pid)
    with AckProbe(calm) as during:
        opened, refusals = _open_unauthenticated(capped_hub, 300)
    assert len(opened) == ADDRESS_CAP, f"{len(opened)} sessions without a token from one address"
    assert {status for status, _ in refusals} == {429}
    assert refusals[0][1] == {"error": {"code": "too_many_connections",
                                        "message": "Too many connections from this address"}}
    assert rss_kb(capped_hub.process.pid) - rss_before < 10 * 1024
    assert_acks_stay_flat(baseline, during)
    for ws in [item for item in opened if isinstance(item, websocket.WebSocket)][:5]:
        ws.close()

    def freed():
        more, _ = _open_unauthenticated(capped_hub, 1)
        return more
    eventually(freed, timeout=5)
    calm.close()


def test_sessions_that_do_not_authenticate_in_time_are_closed(impatient_hub):
    user = register_user(impatient_hub)
    calm = RecordingClient(impatient_hub.url)
    calm.connect(token=user.token)
    silent = raw_websocket(impatient_hub)
    assert silent.recv().startswith("0{")
    refused = raw_websocket(impatient_hub)
    refused.recv()
    refused.send("40" + json.dumps({"token": "not a token"}))
    assert refused.recv().startswith("44")
    departed = raw_websocket(impatient_hub)
    departed.recv()
    departed.send("40" + json.dumps({"token": user.token}))
    assert departed.recv().startswith("40{")
    departed.send("41")
    polling = PollingClient(impatient_hub)
    assert polling.open().status == 200
    started = time.monotonic()
    with AckProbe(calm) as during:
        for ws in (silent, refused, departed):
            assert close_code(ws) == 1000
        assert time.monotonic() - started < 5
        assert polling.poll().status in (200, 400)  # the close packet, or the session gone
        assert polling.poll().status == 400
    assert calm.sio.connected and calm.call("get_rooms") == [f"user:{user.id}"]
    assert max(during.latencies) < 2.0
    calm.close()


# Behind the proxy (items 2 and 3) -------------------------------------------------------


def test_behind_the_proxy_a_forged_forwarded_address_neither_evades_the_cap_nor_steals(
        proxied_hub):
    """nginx appends the real address to whatever ``X-Forwarded-For`` the client sent."""
    answers = [PollingClient(proxied_hub, source=OTHER_ADDRESS,
                             headers={"X-Forwarded-For": f"198.51.100.{index}"}).open()
               for index in range(12)]
    assert [answer.status for answer in answers] == [200] * 5 + [429] * 7
    victim = PollingClient(proxied_hub)
    assert victim.open().status == 200
    thief = PollingClient(proxied_hub, source=OTHER_ADDRESS,
                          headers={"X-Forwarded-For": "127.0.0.1"})
    thief.sid = victim.sid
    answer = thief.poll()
    assert (answer.status, answer.json()["error"]["code"]) == (403, "forbidden")
    status, body = _refusal(lambda: thief.upgrade(headers=["X-Forwarded-For: 127.0.0.1"]))
    assert (status, body["error"]["code"]) == (403, "forbidden")
