"""Behind a real nginx: every limit and record keys on the client, never on the proxy or on
what the client wrote into ``X-Forwarded-For``.

The hub runs with the production settings and ``TRUST_PROXY_HEADERS=1``
behind Debian's nginx, configured as ``docs/deployment.md`` shows (without
TLS; ``test_deployment_guide.py`` runs the guide's own configuration). Clients
connect from distinct loopback addresses (127.0.0.x), so nginx reports a
different real address for each, as it would for machines on the internet.
"""

import json
import uuid

import pytest
import socketio
import websocket

from tests.support import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    JWT_SECRET,
    WEBHOOK_SECRET,
    Nginx,
    eventually,
    nginx_proxy_config,
    raw_socketio_connect,
    session_from,
    sql_scalar,
)


@pytest.fixture(scope="module")
def proxied(module_hub_factory):
    """A production hub (no ``METRICS_TOKEN``) on SQLite, and nginx in front of it."""
    hub = module_hub_factory({
        "HUB_ENV": "production", "JWT_SECRET_KEY": JWT_SECRET, "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "TRUST_PROXY_HEADERS": "1", "MAX_CONNECTIONS_PER_USER": "1000",
        "REGISTRATION_ENABLED": "true"}, name="proxied")
    return hub, module_hub_factory.nginx(nginx_proxy_config(f"server 127.0.0.1:{hub.port};"))


@pytest.fixture(scope="module")
def connection_address(proxied):
    """The address the hub recorded for a socket, read from its ``connections`` row."""
    return lambda sid: sql_scalar(proxied[0].database_url,
                                  "SELECT remote_addr FROM connections WHERE sid = :sid", sid=sid)


def _admin_token(nginx: Nginx, source: str) -> str:
    response = session_from(source).post(nginx.url + "/api/auth/login", timeout=10, json={
        "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    assert response.status_code == 200, response.text
    return response.json()["accessToken"]


def test_wrong_passwords_from_a_forging_client_do_not_lock_out_another(proxied):
    _, nginx = proxied
    attacker, admin = session_from("127.0.0.2"), session_from("127.0.0.3")
    statuses = [
        attacker.post(nginx.url + "/api/auth/login", timeout=10,
                      headers={"X-Forwarded-For": "127.0.0.3"},
                      json={"email": ADMIN_EMAIL, "password": f"guess {attempt}"}).status_code
        for attempt in range(11)
    ]
    assert statuses == [401] * 10 + [429]  # LOGIN_RATE_LIMIT: 10 a minute per client
    response = admin.post(nginx.url + "/api/auth/login", timeout=10,
                          json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    assert response.status_code == 200, response.text


def test_registrations_from_one_client_do_not_close_registration_for_others(proxied):
    _, nginx = proxied

    def register(session, forged: str = "") -> int:
        return session.post(nginx.url + "/api/auth/register", timeout=10,
                            headers={"X-Forwarded-For": forged} if forged else {},
                            json={"email": f"user-{uuid.uuid4().hex[:12]}@example.com",
                                  "password": f"password {uuid.uuid4().hex}"}).status_code
    spammer = session_from("127.0.0.10")
    statuses = [register(spammer, forged=f"192.0.2.{index}") for index in range(21)]
    assert 429 not in statuses[:20] and statuses[20] == 429  # REGISTER_RATE_LIMIT: 20 an hour
    assert register(session_from("127.0.0.11")) != 429


def test_the_201st_socket_from_one_address_is_refused_whatever_it_forwards(proxied):
    _, nginx = proxied
    token = _admin_token(nginx, "127.0.0.4")
    sockets = []
    try:
        for index in range(200):
            forged = {"X-Forwarded-For": f"198.51.100.{index % 250}, 203.0.113.{index % 250}"}
            ws, kind, answer = raw_socketio_connect(nginx.url, token, "127.0.0.4", forged)
            sockets.append(ws)
            assert kind == "40", (index, answer)
        # The address cap counts Engine.IO sessions, so the 201st is refused before
        # its WebSocket opens: 429 with the hub's JSON error.
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            raw_socketio_connect(nginx.url, token, "127.0.0.4", {"X-Forwarded-For": "192.0.2.201"})
        assert refused.value.status_code == 429
        assert json.loads(refused.value.resp_body) == {"error": {
            "code": "too_many_connections", "message": "Too many connections from this address"}}
        ws, kind, answer = raw_socketio_connect(nginx.url, token, "127.0.0.5")
        sockets.append(ws)
        assert kind == "40", answer  # another client is not affected
    finally:
        for ws in sockets:
            ws.close()


def test_connections_record_the_real_address_on_either_transport(proxied, connection_address):
    _, nginx = proxied
    token = _admin_token(nginx, "127.0.0.6")
    ws, kind, answer = raw_socketio_connect(nginx.url, token, "127.0.0.6",
                                            {"X-Forwarded-For": "203.0.113.9"})
    assert kind == "40", answer
    polling = socketio.Client(reconnection=False, http_session=session_from("127.0.0.7"))
    polling.connect(nginx.url, auth={"token": token}, transports=["polling"],
                    headers={"X-Forwarded-For": "203.0.113.10"}, wait_timeout=10)
    try:
        assert eventually(lambda: connection_address(answer["sid"])) == "127.0.0.6"
        assert eventually(lambda: connection_address(polling.get_sid())) == "127.0.0.7"
    finally:
        ws.close()
        polling.disconnect()


def test_metrics_are_not_served_through_the_proxy_without_the_token(proxied):
    _, nginx = proxied
    response = session_from("127.0.0.8").get(nginx.url + "/metrics", timeout=10)
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "Metrics need METRICS_TOKEN to be set"


def test_origin_checks_read_the_host_nginx_passes_and_never_a_forwarded_host(proxied):
    _, nginx = proxied
    token = _admin_token(nginx, "127.0.0.9")
    host = f"hub-{uuid.uuid4().hex[:6]}.test"
    ws, kind, _ = raw_socketio_connect(nginx.url, token, "127.0.0.9", {
        "Host": host, "Origin": f"http://{host}"})
    ws.close()
    assert kind == "40"
    with pytest.raises(Exception, match="403"):
        raw_socketio_connect(nginx.url, token, "127.0.0.9", {
            "Host": host, "Origin": "http://evil.test", "X-Forwarded-Host": "evil.test"})
