"""The database goes away and comes back: clear errors meanwhile, recovery without restart."""

from urllib.parse import urlsplit, urlunsplit

import pytest
import socketio

from tests.support import (
    CuttableProxy,
    RecordingClient,
    eventually,
    mint_token,
    register_user,
)


@pytest.fixture
def hub_behind_proxy(hub_factory):
    parts = urlsplit(hub_factory.database("postgresql"))
    proxy = CuttableProxy(parts.hostname, parts.port or 5432)
    proxy.start()
    hub_factory.callback(proxy.cut)
    proxied = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
    # No caches: every connect and call asks the database, which is what is cut.
    server = hub_factory({"USER_CACHE_SECONDS": "0", "TOKEN_CACHE_SECONDS": "0"},
                         database_url=proxied, name="faults")
    return server, proxy


def test_database_outage_gives_clear_errors_and_recovers(hub_behind_proxy):
    server, proxy = hub_behind_proxy
    user = register_user(server)
    client = RecordingClient(server.url)
    client.connect(token=user.token)
    assert client.call("get_notifications")["ok"] is True

    proxy.cut()
    response = server.api.get("/api/notifications", user.token)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "unavailable"
    answer = client.call("get_notifications")
    assert answer == {"ok": False, "error": {"code": "unavailable",
                                             "message": "Service temporarily unavailable"}}
    assert client.sio.connected
    refused = RecordingClient(server.url)
    with pytest.raises(socketio.exceptions.ConnectionError):
        refused.connect(token=user.token)
    assert refused.connect_error["data"]["code"] == "unavailable"
    assert server.api.get("/readyz").status_code == 503
    admin_token = mint_token("1", role="admin")

    proxy.restore()
    eventually(lambda: server.api.get("/api/notifications", user.token).status_code == 200,
               timeout=15, interval=0.3)
    assert client.call("get_notifications")["ok"] is True
    again = RecordingClient(server.url)
    again.connect(token=user.token)
    assert again.call("get_rooms") == [f"user:{user.id}"]
    assert server.api.get("/readyz").status_code == 200
    again.close()
    client.close()
    # The refused connect left nothing behind: no sid, no half-registered socket.
    internals = eventually(lambda: (i := server.api.get(
        "/api/socket/debug/internals", admin_token).json()) and i["engineioSockets"] == 0 and i)
    assert internals["socketioSids"] == internals["socketioRoomIndex"] == 0
    assert internals["authenticating"] == 0
    assert internals["registryConnections"] == internals["pendingConnect"] == 0
