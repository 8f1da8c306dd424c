"""The production entry point: gunicorn with gunicorn.conf.py serves the same hub."""

import socket
import time

from tests.support import GUNICORN, RecordingClient, eventually, register_user


def test_gunicorn_worker_serves_sockets_rest_and_readiness(hub_factory):
    server = hub_factory({"NODE_ID": "gunicorn-node", "HTTP_HEADER_TIMEOUT": "1"},
                         name="gunicorn", command=GUNICORN)
    eventually(lambda: server.api.get("/readyz").status_code == 200, timeout=20, interval=0.2)
    token = register_user(server, admin=True).token
    client = RecordingClient(server.url)
    client.connect(token=token)
    assert client.call("get_rooms") == ["admins", "user:1"]
    stats = server.api.get("/api/socket/stats", token).json()
    assert [n["id"] for n in stats["nodes"]] == ["gunicorn-node"]
    client.close()
    _assert_half_sent_head_is_closed(server.port)


def _assert_half_sent_head_is_closed(port: int) -> None:
    """The worker's handler has the request-head deadline (``HTTP_HEADER_TIMEOUT``, 1 s here)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert time.monotonic() - started < 5
