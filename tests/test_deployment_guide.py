"""``docs/deployment.md``'s production set-up, followed as a new operator would.

The environment file, the commands, the systemd unit's command line and the
nginx configuration are read from the guide itself; only what must differ
on a test machine is replaced: the database, Redis and secrets, the ports,
and the certificate (a self-signed one for ``hub.example.com``). Two gunicorn
nodes then run behind nginx over TLS, and the guide's checks are made.
"""

import json
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import time
import uuid

import pytest
import urllib3
from sqlalchemy import select

from extensions import db
from models import Connection, Node
from tests.support import (
    GUNICORN,
    NGINX,
    REDIS_URL,
    ROOT,
    app_on,
    eventually,
    free_port,
    nginx_available,
    raw_socketio_connect,
    redis_reachable,
    require_service,
    session_from,
)

GUIDE = (ROOT / "docs" / "deployment.md").read_text()
SITE = "hub.example.com"


def _block(language: str, marker: str) -> str:
    """The guide's one fenced ``language`` block containing ``marker``."""
    blocks = [block for block in re.findall(rf"```{language}[^\n]*\n(.*?)```", GUIDE, re.S)
              if marker in block]
    assert len(blocks) == 1, f"docs/deployment.md: one ```{language} block with {marker!r}"
    return blocks[0]


def _environment_file() -> dict[str, str]:
    """The guide's ``/etc/hub/env``, parsed as systemd's EnvironmentFile is."""
    pairs = [line.split("=", 1) for line in _block("sh", "# /etc/hub/env").splitlines()
             if line.strip() and not line.startswith("#")]
    return {name.strip(): value.strip() for name, value in pairs}


def _unit_setting(name: str) -> str:
    (line,) = [line for line in _block("ini", "ExecStart=").splitlines()
               if line.startswith(f"{name}=")]
    return line.split("=", 1)[1]


def _self_signed_certificate(directory) -> None:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", f"/CN={SITE}", "-addext", f"subjectAltName=DNS:{SITE}",
                    "-keyout", str(directory / "privkey.pem"),
                    "-out", str(directory / "fullchain.pem")],
                   check=True, capture_output=True)


def _wait_for_event(ws, event: str, timeout: float = 10.0) -> list:
    """Read a raw Socket.IO WebSocket until ``event`` arrives, answering pings."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        packet = ws.recv()
        if packet == "2":
            ws.send("3")
        elif packet.startswith("42"):
            name, *args = json.loads(packet[2:])
            if name == event:
                return args
    raise AssertionError(f"no {event!r} within {timeout} s")


@pytest.fixture
def deployment(hub_factory, tmp_path):
    """Steps 2 to 5 of the guide: environment, schema and first admin, nodes, nginx."""
    require_service("Redis", redis_reachable())
    require_service("nginx", nginx_available(), NGINX)
    require_service("openssl", shutil.which("openssl") is not None)
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    database_url = hub_factory.database("postgresql", migrate=False)
    environment = _environment_file()
    assert environment["HUB_ENV"] == "production"
    environment.update({
        "DATABASE_URL": database_url, "SOCKETIO_MESSAGE_QUEUE": REDIS_URL,
        "JWT_SECRET_KEY": secrets.token_urlsafe(48),
        "WEBHOOK_SECRET": secrets.token_urlsafe(48),
        "METRICS_TOKEN": secrets.token_urlsafe(48)})
    env_file = tmp_path / "env"
    env_file.write_text("".join(f"{name}={value}\n" for name, value in environment.items()))

    password = f"first admin {uuid.uuid4().hex}"
    commands = _block("sh", "db upgrade").replace("/etc/hub/env", str(env_file))
    venv_bin = str(GUNICORN[0]).rsplit("/", 1)[0]
    setup = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", commands], cwd=ROOT,
        input=f"{password}\n{password}\n", capture_output=True, text=True, timeout=120,
        env={"PATH": f"{venv_bin}:/usr/bin:/bin", "HOME": str(tmp_path)},
        start_new_session=True)  # no terminal: the password prompt reads stdin
    assert setup.returncode == 0, setup.stdout + setup.stderr

    command = shlex.split(_unit_setting("ExecStart"))
    assert command[0] == "/srv/hub/.venv/bin/gunicorn"
    nodes = []
    for _ in range(2):
        port = free_port()
        node_id = _unit_setting("Environment").removeprefix("NODE_ID=")
        node_id = node_id.replace("%H", socket.gethostname()).replace("%i", str(port))
        nodes.append(hub_factory(
            {**environment, "NODE_ID": node_id}, database_url=database_url,
            name=f"guide-{port}", port=port,
            command=[GUNICORN[0], *(part.replace("%i", str(port)) for part in command[1:])]))
    config = (_block("nginx", "upstream hub")
              .replace("127.0.0.1:5001", f"127.0.0.1:{nodes[0].port}")
              .replace("127.0.0.1:5002", f"127.0.0.1:{nodes[1].port}")
              .replace("listen 443 ssl;", "listen 127.0.0.1:{port} ssl;")
              .replace("/etc/hub/tls", "{prefix}"))
    nginx = hub_factory.nginx(config, start=False)
    _self_signed_certificate(nginx.prefix)
    nginx.start()
    with app_on(database_url) as app:
        yield {"nodes": nodes, "nginx": nginx, "env": environment, "app": app,
               "admin": ("admin@example.com", password)}


def _connections(app) -> dict[str, tuple[str, str]]:
    """Every connection row: sid -> (node, recorded address)."""
    with app.app_context():
        rows = db.session.execute(select(Connection.sid, Connection.node_id,
                                         Connection.remote_addr)).all()
        db.session.rollback()
        return {sid: (node, address) for sid, node, address in rows}


def test_the_production_guide_gives_a_safe_working_deployment(deployment):
    nginx, env, app = deployment["nginx"], deployment["env"], deployment["app"]
    web = session_from("127.0.0.2")
    web.verify, web.trust_env = False, False  # the test's own certificate, whatever the env says
    site = {"Host": SITE}

    ready = web.get(nginx.url + "/readyz", headers=site, timeout=10)
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert ready.json()["checks"]["messageQueueListener"] == "ok"
    # Metrics: the token, and nothing without it.
    assert web.get(nginx.url + "/metrics", headers=site, timeout=10).status_code == 403
    metrics = web.get(nginx.url + "/metrics", timeout=10, headers={
        **site, "Authorization": f"Bearer {env['METRICS_TOKEN']}"})
    assert metrics.status_code == 200 and "hub_connects_total" in metrics.text
    # Registration is closed; the first admin, made by the guide's command, logs in.
    assert web.post(nginx.url + "/api/auth/register", headers=site, timeout=10, json={
        "email": "someone@example.com", "password": "a long enough password"}
                    ).status_code == 403
    email, password = deployment["admin"]
    login = web.post(nginx.url + "/api/auth/login", headers=site, timeout=10,
                     json={"email": email, "password": password})
    assert login.status_code == 200, login.text
    token, admin_id = login.json()["accessToken"], login.json()["user"]["id"]
    # The guide's quota: a message past the day's recipients is refused whole, with the quota.
    quota = int(env["DAILY_RECIPIENT_QUOTA"])
    over = web.post(nginx.url + "/api/messages", headers={
        **site, "Authorization": f"Bearer {token}"}, timeout=30, json={
        "body": "over the quota",
        "recipients": [f"+1555{n:07d}" for n in range(quota + 1)]})
    assert over.status_code == 429, over.text
    assert over.json()["error"]["code"] == "quota_exceeded"
    assert over.json()["error"]["details"]["dailyRecipientQuota"] == quota

    # A page of the site opens a socket through nginx over TLS: its own origin, its own address.
    ws, kind, answer = raw_socketio_connect(nginx.url, token, "127.0.0.3", {
        "Host": SITE, "Origin": f"https://{SITE}"})
    assert kind == "40", answer
    node_id, address = eventually(lambda: _connections(app).get(answer["sid"]))
    assert address == "127.0.0.3"
    nodes = deployment["nodes"]
    holder = next(node for node in nodes if node_id.endswith(f":{node.port}"))
    other = next(node for node in nodes if node is not holder)
    # A notification posted on the other node crosses the derived channel to the socket.
    sent = other.api.post(f"/api/socket/notify/{admin_id}", token,
                          json={"title": "through the channel", "message": "m"})
    assert sent.status_code == 201, sent.text
    assert _wait_for_event(ws, "notification")[0]["title"] == "through the channel"

    # Step 7: stopping the node that holds the socket.
    holder.process.terminate()
    sent_at = time.monotonic()
    holder.process.wait(timeout=30)
    assert time.monotonic() - sent_at < 5.0
    assert node_id not in {node for node, _ in _connections(app).values()}
    with app.app_context():
        assert db.session.get(Node, node_id) is None
    online = other.api.get(f"/api/socket/user/{admin_id}/online", token).json()
    assert online["online"] is False
    ws.close()
