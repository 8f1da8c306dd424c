"""The production entry point: gunicorn with gunicorn.conf.py serves the same hub."""

import os
import socket
import subprocess
import sys
import time

import requests

from tests.support import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    ROOT,
    RecordingClient,
    free_port,
    migrate_database,
    seed_admin,
)


def test_gunicorn_worker_serves_sockets_rest_and_readiness(tmp_path):
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    migrate_database(url)
    seed_admin(url)
    port = free_port()
    env = {**os.environ, "HUB_ENV": "testing", "DATABASE_URL": url, "NODE_ID": "gunicorn-node",
           "HTTP_HEADER_TIMEOUT": "1"}
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    process = subprocess.Popen([gunicorn, "-c", "gunicorn.conf.py", "-b", f"127.0.0.1:{port}",
                                "wsgi:app"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if requests.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        token = requests.post(base + "/api/auth/login", json={
            "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}, timeout=5).json()["accessToken"]
        client = RecordingClient(base)
        client.connect(token=token)
        assert client.call("get_rooms") == ["admins", "user:1"]
        stats = requests.get(base + "/api/socket/stats",
                             headers={"Authorization": f"Bearer {token}"}, timeout=5).json()
        assert [n["id"] for n in stats["nodes"]] == ["gunicorn-node"]
        client.close()
        _assert_half_sent_head_is_closed(port)
    finally:
        process.terminate()
        process.wait(timeout=20)


def _assert_half_sent_head_is_closed(port: int) -> None:
    """The worker's handler has the request-head deadline (``HTTP_HEADER_TIMEOUT``, 1 s here)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert time.monotonic() - started < 5
