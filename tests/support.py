"""Test helpers behind the fixtures: live servers, databases and recording clients."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
import requests.adapters
import socketio
import websocket

from config import TestingConfig
from tests.fakes.eventlog import read_log

if TYPE_CHECKING:
    from flask import Flask

    from tests.fakes.smsc import FakeSmsc
    from tests.fakes.twilio_api import FakeTwilio

ROOT = Path(__file__).resolve().parent.parent
OUTPUT_DIR = ROOT / "test-output"
REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# The testing settings' fixed keys: hubs started here and apps built in process sign alike.
JWT_SECRET = TestingConfig.JWT_SECRET_KEY
WEBHOOK_SECRET = TestingConfig.WEBHOOK_SECRET
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "admin password 123"


def require_service(name: str, available: bool, reason: str = "") -> None:
    """Skip when a service is missing, or fail when ``REQUIRE_SERVICES=1``."""
    if available:
        return
    message = f"{name} is not reachable{': ' + reason if reason else ''}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} (REQUIRE_SERVICES=1)")
    pytest.skip(message)


def postgres_reachable() -> bool:
    try:
        import psycopg

        with psycopg.connect(POSTGRES_URL, connect_timeout=2):
            return True
    except Exception:
        return False


def redis_reachable() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping())
    except Exception:
        return False


@contextlib.contextmanager
def fresh_postgres_database(template: str = "template1") -> Iterator[str]:
    """A new PostgreSQL database for one server, a copy of ``template``, dropped afterwards."""
    import psycopg

    name = f"hub_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    base, _, _ = POSTGRES_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


BACKENDS = ("sqlite", "postgresql")


@contextlib.contextmanager
def empty_database(backend: str, directory: Path) -> Iterator[str]:
    """An empty database: a SQLite file in ``directory``, or a fresh PostgreSQL database.

    A PostgreSQL database is dropped afterwards; without PostgreSQL the test
    is skipped, or fails under ``REQUIRE_SERVICES=1``.
    """
    if backend == "sqlite":
        yield f"sqlite:///{directory / 'hub.db'}"
        return
    require_service("PostgreSQL", postgres_reachable())
    with fresh_postgres_database() as url:
        yield url


@contextlib.contextmanager
def migrated_database(backend: str, directory: Path, *, admin: bool = True) -> Iterator[str]:
    """``empty_database`` with the migrations' schema (and the seeded admin unless told not).

    The migrations run once per test process into a template, which each new
    database copies (a file copy on SQLite, ``CREATE DATABASE ... TEMPLATE`` on
    PostgreSQL): the same schema as migrating every database, without the
    Alembic run each hub would otherwise wait for.
    """
    template = _migrated_template(backend, admin)
    if backend == "sqlite":
        path = directory / "hub.db"
        shutil.copyfile(template.removeprefix("sqlite:///"), path)
        yield f"sqlite:///{path}"
        return
    with fresh_postgres_database(template.rpartition("/")[2]) as url:
        yield url


_templates: dict[tuple[str, bool], str] = {}


def _migrated_template(backend: str, admin: bool) -> str:
    """The URL of the migrated database new ones copy; it is gone when the process exits."""
    if (backend, admin) not in _templates:
        directory = Path(tempfile.mkdtemp(prefix="hub-template-"))
        cleanup = contextlib.ExitStack()
        atexit.register(cleanup.close)
        cleanup.callback(shutil.rmtree, directory, ignore_errors=True)
        url = cleanup.enter_context(empty_database(backend, directory))
        migrate_database(url)
        if admin:
            seed_admin(url)
        _templates[backend, admin] = url
    return _templates[backend, admin]


def make_app(database_url: str, **overrides: Any) -> Flask:
    """The hub's app on this database (testing settings), for work done in process,
    migrations included: tests migrate their databases up and down."""
    from app import create_app, install_migrations
    from config import _normalise_database_url

    app = create_app("testing", SQLALCHEMY_DATABASE_URI=_normalise_database_url(database_url),
                     **overrides)
    install_migrations(app)
    return app


@contextlib.contextmanager
def app_on(database_url: str, **overrides: Any) -> Iterator[Flask]:
    """``make_app`` inside its app context, its connections closed on the way out.

    An engine left open would hold a PostgreSQL connection until the process
    ends and keep a test database from being dropped cleanly.
    """
    from extensions import db

    app = make_app(database_url, **overrides)
    with app.app_context():
        try:
            yield app
        finally:
            db.session.remove()
            db.engine.dispose()


def migrate_database(database_url: str) -> None:
    """Build the schema the way production does: the Alembic migrations."""
    import flask_migrate

    with app_on(database_url):
        flask_migrate.upgrade()


def seed_admin(database_url: str) -> str:
    from services import auth

    with app_on(database_url):
        if auth.get_user_by_email(ADMIN_EMAIL) is None:
            auth.create_user(ADMIN_EMAIL, ADMIN_PASSWORD, name="Admin", admin=True)
    return ADMIN_EMAIL


def sql_scalar(database_url: str, statement: str, **params: Any) -> Any:
    """One value read straight from a hub's database, as an operator's SQL would."""
    import sqlalchemy

    from config import _normalise_database_url

    engine = sqlalchemy.create_engine(_normalise_database_url(database_url))
    try:
        with engine.connect() as connection:
            return connection.execute(sqlalchemy.text(statement), params).scalar()
    finally:
        engine.dispose()


def sql_execute(database_url: str, statement: str) -> None:
    """One statement run straight on a hub's database and committed: a fault a test puts
    under the hub (a trigger that refuses its writes), or takes away again."""
    import sqlalchemy

    from config import _normalise_database_url

    engine = sqlalchemy.create_engine(_normalise_database_url(database_url))
    try:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(statement))
    finally:
        engine.dispose()


@contextlib.contextmanager
def rows_locked(database_url: str, select_for_update: str, **params: Any) -> Iterator[None]:
    """Rows of a hub's PostgreSQL database locked by ``select_for_update`` in a transaction
    held open until the block ends: the hub's writes to them wait meanwhile."""
    import sqlalchemy

    from config import _normalise_database_url

    engine = sqlalchemy.create_engine(_normalise_database_url(database_url))
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(select_for_update), params)
            yield
            connection.rollback()
    finally:
        engine.dispose()


def sent_phones(send_log: str | Path) -> list[str]:
    """The phones of every send the simulated provider accepted (its ``SIMULATED_SMS_SEND_LOG``)."""
    return [entry["phone"] for entry in read_log(send_log)]


def free_port() -> int:
    """A port nothing listens on, for a server started a moment later.

    Taken below the kernel's ephemeral range (``ip_local_port_range``, from
    32768): a port the kernel hands out for binding to 0 may meanwhile become
    the source port of one of the suite's own outgoing connections, and the
    server then finds it in use. Each pytest-xdist worker draws from its own
    slice of that range, so that two workers never pick one port at once.
    """
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    span = (32_768 - 20_000) // workers
    while True:
        port = random.randrange(20_000 + worker * span, 20_000 + (worker + 1) * span)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def run_flask(database_url: str, *arguments: str, env: dict | None = None,
              typed: str | None = None) -> subprocess.CompletedProcess:
    """``flask ARGUMENTS`` against this database, as an operator runs it on a node's host."""
    environment = {**os.environ, "HUB_ENV": "testing", "DATABASE_URL": database_url,
                   **(env or {})}
    return subprocess.run([sys.executable, "-m", "flask", "--app", "app", *arguments], cwd=ROOT,
                          env=environment, input=typed, capture_output=True, text=True,
                          timeout=60)


# An idempotent request is sent again, once, when its idle keep-alive connection turns out
# to be closed, as browsers do: the hub closes a connection idle for HTTP_HEADER_TIMEOUT and
# says so (``Keep-Alive: timeout=N``), which Node's agents heed and ``requests`` does not, so
# a GET sent at that instant found the connection closing and had no answer.
RESEND_IDEMPOTENT = requests.adapters.Retry(total=1, connect=0, read=1, status=0, redirect=0)


class Api:
    """Small REST client: JSON in, ``requests.Response`` out."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(max_retries=RESEND_IDEMPOTENT)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def request(self, method: str, path: str, token: str | None = None,
                headers: dict | None = None, **kwargs: Any) -> requests.Response:
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.session.request(method, self.base_url + path, headers=headers,
                                    timeout=15, **kwargs)

    def get(self, path: str, token: str | None = None, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, token, **kwargs)

    def post(self, path: str, token: str | None = None, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, token, **kwargs)


GUNICORN = [str(Path(sys.executable).parent / "gunicorn"), "-c", "gunicorn.conf.py",
            "-b", "127.0.0.1:{port}", "wsgi:app"]


def api_from(server: LiveServer, address: str) -> Api:
    """REST calls to ``server`` coming from ``address`` (a loopback address)."""
    api = Api(server.url)
    api.session = session_from(address)
    return api


class LiveServer:
    """``python app.py`` (or ``command``, e.g. ``GUNICORN``) in a subprocess on a free port,
    logging to test-output/."""

    def __init__(self, database_url: str, name: str = "hub", env: dict | None = None,
                 port: int | None = None, command: list[str] | None = None) -> None:
        self.database_url = database_url
        self.name = name
        self.port = port or free_port()
        self.extra_env = env or {}
        self.command = [part.replace("{port}", str(self.port))
                        for part in command or [sys.executable, "app.py"]]
        self.process: subprocess.Popen | None = None
        self.log_path = OUTPUT_DIR / f"server-{name}-{self.port}.log"
        self.send_log = self.extra_env.get("SIMULATED_SMS_SEND_LOG")
        self.admin_email = ADMIN_EMAIL
        self.api = Api(self.url)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def channel(self) -> str | None:
        """Its message-queue channel when set (``flask`` commands beside it need the same)."""
        return self.extra_env.get("SOCKETIO_CHANNEL")

    def start(self, timeout: float = 20.0) -> None:
        OUTPUT_DIR.mkdir(exist_ok=True)
        env = {
            **os.environ,
            "HUB_ENV": "testing",
            "DATABASE_URL": self.database_url,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }
        if "SOCKETIO_MESSAGE_QUEUE" not in self.extra_env:
            env.pop("SOCKETIO_MESSAGE_QUEUE", None)
        log = open(self.log_path, "a")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(self.command, cwd=ROOT, env=env,
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early; see {self.log_path}:\n"
                                   + self.log_path.read_text()[-3000:])
            try:
                requests.get(self.url + "/api/socket/online-count", timeout=1)
                return
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start; see {self.log_path}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """``kill -9``: no clean-up at all, as when a machine dies."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log_text(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


class HubFactory(contextlib.ExitStack):
    """Live hubs on databases of their own, all stopped (and their databases dropped) on close.

    Behind the ``hub_factory`` fixtures. A call is one ``python app.py`` with
    the given settings on a new database built by the migrations with its
    seeded admin; ``nodes`` starts several on one PostgreSQL database joined
    by Redis, ``nginx`` puts a proxy in front. Whatever a test adds with
    ``callback`` or ``enter_context`` is undone with them, last first.
    """

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        super().__init__()
        self.tmp_path_factory = tmp_path_factory

    def database(self, backend: str = "sqlite", *, migrate: bool = True,
                 admin: bool = True) -> str:
        """A new database (``empty_database``), migrated (``migrated_database``) and with the
        admin unless told not."""
        directory = self.tmp_path_factory.mktemp(backend)
        return self.enter_context(migrated_database(backend, directory, admin=admin) if migrate
                                  else empty_database(backend, directory))

    def __call__(self, env: dict[str, str] | None = None, *, backend: str = "sqlite",
                 database_url: str | None = None, admin: bool = True, name: str = "hub",
                 send_log: bool = False, command: list[str] | None = None,
                 port: int | None = None, start: bool = True) -> LiveServer:
        """A hub with ``env`` on a new ``backend`` database, or on ``database_url`` as it is.

        ``send_log``: the simulated provider logs every send (``server.send_log``).
        """
        env = dict(env or {})
        if send_log:
            env.setdefault("SIMULATED_SMS_SEND_LOG",
                           str(self.tmp_path_factory.mktemp("sends") / "sent.jsonl"))
        url = database_url or self.database(backend, admin=admin)
        server = LiveServer(url, name=name, env=env, port=port, command=command)
        self.callback(server.stop)
        if start:
            server.start()
        return server

    def nodes(self, count: int = 2, env: dict[str, str] | None = None, *, name: str = "node",
              commands: list[list[str] | None] | None = None,
              start: bool = True) -> list[LiveServer]:
        """``count`` hubs sharing one new PostgreSQL database and a Redis message queue.

        Node ids and names are ``NAME-a``, ``NAME-b``...; ``commands`` gives
        node by node another command (e.g. ``GUNICORN``). Unless ``env`` names
        its own ``SOCKETIO_MESSAGE_QUEUE``, the nodes get the test Redis and a
        channel no other test uses.
        """
        require_service("Redis", redis_reachable())
        env = dict(env or {})
        if "SOCKETIO_MESSAGE_QUEUE" not in env:
            env |= {"SOCKETIO_MESSAGE_QUEUE": REDIS_URL,
                    "SOCKETIO_CHANNEL": f"hub-test-{uuid.uuid4().hex[:8]}"}
        url = self.database("postgresql")
        letters = "abcdefghijklmnopqrstuvwxyz"[:count]
        nodes = [self({**env, "NODE_ID": f"{name}-{letter}"}, database_url=url,
                      name=f"{name}-{letter}", command=command, start=False)
                 for letter, command in zip(letters, commands or [None] * count, strict=True)]
        if start:
            for node in nodes:
                node.start()
        return nodes

    def nginx(self, http_config: str, *, start: bool = True) -> Nginx:
        """Debian's nginx with ``http_config`` (see ``Nginx``); skipped when it is missing."""
        require_service("nginx", nginx_available(), NGINX)
        proxy = Nginx(http_config)
        self.callback(proxy.stop)
        if start:
            proxy.start()
        return proxy


@dataclass
class TestUser:
    id: int
    email: str
    password: str
    token: str
    refresh_token: str
    role: str

    __test__ = False

    @classmethod
    def from_login(cls, body: dict, password: str) -> TestUser:
        user = body["user"]
        return cls(id=int(user["id"]), email=user["email"], password=password,
                   token=body["accessToken"], refresh_token=body["refreshToken"],
                   role=user["role"])


def register_user(server: LiveServer, admin: bool = False) -> TestUser:
    """A new registered, logged-in user of ``server`` (``admin=True``: its seeded admin)."""
    if admin:
        email, password = server.admin_email, ADMIN_PASSWORD
    else:
        email = f"user-{uuid.uuid4().hex[:12]}@example.com"
        password = "correct horse battery"
        response = requests.post(f"{server.url}/api/auth/register",
                                 json={"email": email, "password": password}, timeout=10)
        assert response.status_code == 201, response.text
    response = requests.post(f"{server.url}/api/auth/login",
                             json={"email": email, "password": password}, timeout=10)
    assert response.status_code == 200, response.text
    return TestUser.from_login(response.json(), password)


def promote_user(server: LiveServer, user: TestUser) -> TestUser:
    """``user`` made an admin (as ``flask users promote`` does), logged in again for an admin
    token. Done in this process: a second admin is set-up here, not the subject."""
    from services import accounts

    with app_on(server.database_url):
        accounts.set_role(accounts.find_user(user.email), admin=True)
    response = requests.post(f"{server.url}/api/auth/login",
                             json={"email": user.email, "password": user.password}, timeout=10)
    assert response.status_code == 200, response.text
    return TestUser.from_login(response.json(), user.password)


class RecordingClient:
    """A python-socketio client that records every event it receives, in order."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.sio = socketio.Client(reconnection=False)
        # python-engineio's client hands each message to a thread of its own, so two events
        # could be recorded out of their order on the wire; recording is quick, so they are
        # taken in the reading thread instead, in order.
        trigger = self.sio.eio._trigger_event
        self.sio.eio._trigger_event = lambda event, *args, **kwargs: trigger(
            event, *args, **{**kwargs, "run_async": False})
        self.events: list[tuple[str, Any]] = []
        self.connect_error: Any = None
        self.disconnected = threading.Event()
        self._changed = threading.Condition()
        self.sio.on("*", self._record)
        self.sio.on("connect_error", self._on_connect_error)
        self.sio.on("disconnect", self._on_disconnect)

    def _record(self, event: str, *args: Any) -> None:
        with self._changed:
            self.events.append((event, args[0] if len(args) == 1 else list(args)))
            self._changed.notify_all()

    def _on_connect_error(self, data: Any = None) -> None:
        self.connect_error = data

    def _on_disconnect(self, *args: Any) -> None:
        self.disconnected.set()

    def connect(self, token: str | None = None, auth: Any = None, headers: dict | None = None,
                query: str = "", transports: tuple[str, ...] = ("websocket",)) -> None:
        if auth is None and token is not None:
            auth = {"token": token}
        url = self.base_url + (f"?{query}" if query else "")
        self.sio.connect(url, auth=auth, headers=headers or {}, transports=list(transports),
                         wait_timeout=10)

    @property
    def sid(self) -> str | None:
        return self.sio.get_sid()

    def call(self, event: str, *args: Any, timeout: float = 10) -> Any:
        data = args[0] if len(args) == 1 else (tuple(args) if args else None)
        return self.sio.call(event, data, timeout=timeout)

    def emit(self, event: str, *args: Any) -> None:
        data = args[0] if len(args) == 1 else (tuple(args) if args else None)
        self.sio.emit(event, data)

    def received(self, event: str) -> list[Any]:
        with self._changed:
            return [payload for name, payload in self.events if name == event]

    def wait_for(self, event: str, predicate: Callable[[Any], bool] = lambda _: True,
                 timeout: float = 10) -> Any:
        """The first payload of ``event`` matching ``predicate``, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for name, payload in self.events:
                    if name == event and predicate(payload):
                        return payload
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = Counter(name for name, _ in self.events)
                    raise AssertionError(f"no matching {event!r} within {timeout}s; "
                                         f"received {dict(seen)}")
                self._changed.wait(remaining)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.sio.disconnect()


def connect_refusal(server: LiveServer, token: Any) -> Any:
    """What ``connect_error`` says when a connect with ``token`` is refused (it must be)."""
    client = RecordingClient(server.url)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(token=token)
    return client.connect_error


def eventually(check: Callable[[], Any], timeout: float = 5.0, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns a truthy value; fail with its last value."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = check()
    assert value, f"condition not met within {timeout}s (last value {value!r})"
    return value


def all_recipients(server: LiveServer, token: str, message_id: str | int) -> list[dict]:
    """Every recipient of a message as REST lists them, page after page."""
    found, after = [], None
    while True:
        page = server.api.get(f"/api/messages/{message_id}/recipients", token,
                              params={"limit": 1000, **({"after": after} if after else {})}
                              ).json()
        found += page["recipients"]
        after = page["nextCursor"]
        if after is None:
            return found


def wait_until_final(server: LiveServer, token: str, message_id: str | int,
                     timeout: float = 90) -> dict:
    """The message once it is neither sending nor paused, as REST shows it."""
    def final() -> dict | None:
        message = server.api.get(f"/api/messages/{message_id}", token).json()
        return message if message["status"] not in ("SENDING", "PAUSED") else None
    return eventually(final, timeout=timeout, interval=0.3)


# Sending through the fakes of tests/fakes: the sender both fakes are told to expect, and
# the public address the fake Twilio signs its callbacks for.
SMS_SENDER = "+15017122661"
PUBLIC_BASE_URL = "https://hub.example.com"


def twilio_config(fake: FakeTwilio, **overrides: object) -> dict[str, object]:
    """The settings a hub sending through ``fake`` has, as ``app.config`` holds them."""
    return {"TWILIO_ACCOUNT_SID": fake.account_sid, "TWILIO_AUTH_TOKEN": fake.auth_token,
            "TWILIO_FROM": SMS_SENDER, "TWILIO_MESSAGING_SERVICE_SID": "",
            "TWILIO_API_BASE": fake.api_base, "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
            "TWILIO_TIMEOUT": 2.0, "TWILIO_MAX_IN_FLIGHT": 4, **overrides}


def twilio_hub_env(fake: FakeTwilio, **overrides: object) -> dict[str, str]:
    """A live hub's environment for sending through the fake Twilio (``twilio_config``)."""
    return {key: str(value) for key, value in twilio_config(fake, **overrides).items()
            if value != ""} | {"SMS_PROVIDER": "twilio"}


def smpp_hub_env(fake: FakeSmsc, **settings: str) -> dict[str, str]:
    """A live hub's environment for sending through the fake SMSC."""
    return {"SMS_PROVIDER": "smpp", "SMPP_HOST": fake.host, "SMPP_PORT": str(fake.port),
            "SMPP_SYSTEM_ID": fake.system_id, "SMPP_PASSWORD": fake.password,
            "SMPP_SOURCE_ADDR": SMS_SENDER, **settings}


def mint_token(sub: Any, secret: str = JWT_SECRET, expires_in: int = 900,
               algorithm: str = "HS256", **claims: Any) -> str:
    """A token as another service sharing the key would mint it."""
    import jwt

    payload = {"sub": sub, "exp": int(time.time()) + expires_in, **claims}
    return jwt.encode(payload, secret, algorithm=algorithm)


class CuttableProxy:
    """A TCP forwarder on a free port that a test can cut and restore, like a network fault;
    ``delay`` holds each chunk that long in each direction, like a distant server."""

    def __init__(self, target_host: str, target_port: int, delay: float = 0.0) -> None:
        self.target = (target_host, target_port)
        self.delay = delay
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._connections += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if self.delay:
                    time.sleep(self.delay)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.close()

    def cut(self) -> None:
        """Refuse new connections and drop the open ones."""
        if self._listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would not.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for sock in self._connections:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
            self._connections.clear()

    def restore(self) -> None:
        self.start()


def rss_kb(pid: int) -> int:
    """Resident memory of a process, from ``/proc``."""
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


ENGINE_PATH = "/socket.io/"
# Another loopback address: a client the hub cannot tell from a different machine.
OTHER_ADDRESS = "127.0.0.2"


def raw_websocket(server: LiveServer | Nginx, query: str = "EIO=4&transport=websocket",
                  source: str = "127.0.0.1", headers: list[str] | None = None,
                  timeout: float = 10) -> websocket.WebSocket:
    """A WebSocket to the Engine.IO path from ``source``, with exactly these headers.

    Raises ``websocket.WebSocketBadStatusException`` when the hub answers
    anything but 101.
    """
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout,
                                    source_address=(source, 0))
    try:
        return websocket.create_connection(
            f"ws://127.0.0.1:{server.port}{ENGINE_PATH}?{query}", socket=sock,
            header=headers or [], suppress_origin=True, timeout=timeout)
    except Exception:
        sock.close()
        raise


def close_code(ws: websocket.WebSocket) -> int | None:
    """The code of the close frame that ends ``ws`` (None when the TCP connection just ends)."""
    try:
        while True:
            frame = ws.recv_frame()
            if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
                return int.from_bytes(frame.data[:2], "big") if len(frame.data) >= 2 else None
    except (websocket.WebSocketConnectionClosedException, OSError):
        return None


@dataclass
class HttpAnswer:
    status: int
    headers: dict[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


class PollingClient:
    """Engine.IO long-polling spoken by hand, from a chosen loopback address and Origin.

    Each request is one HTTP/1.1 exchange on a new connection, as a browser's
    XHR may be; ``sid`` is the session once ``open`` has made one. A request
    not answered within ``timeout`` raises ``TimeoutError``.
    """

    SEPARATOR = "\x1e"

    def __init__(self, server: LiveServer | Nginx | NodePeer, source: str = "127.0.0.1",
                 origin: str | None = None, headers: dict[str, str] | None = None,
                 timeout: float = 15) -> None:
        self.server = server
        self.source = source
        self.origin = origin
        self.headers = headers or {}
        self.timeout = timeout
        self.sid: str | None = None

    def request(self, method: str, query: str, body: str | None = None) -> HttpAnswer:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=self.timeout,
                                          source_address=(self.source, 0))
        headers = {**self.headers, **({"Origin": self.origin} if self.origin else {})}
        if body is not None:
            headers["Content-Type"] = "text/plain;charset=UTF-8"
        try:
            conn.request(method, f"{ENGINE_PATH}?{query}", body=body, headers=headers)
            response = conn.getresponse()
            text = response.read().decode("utf-8", "replace")
            return HttpAnswer(response.status, dict(response.getheaders()), text)
        finally:
            conn.close()

    def open(self) -> HttpAnswer:
        answer = self.request("GET", "EIO=4&transport=polling")
        if answer.status == 200 and answer.text.startswith("0{"):
            self.sid = json.loads(answer.text[1:])["sid"]
        return answer

    def send(self, *packets: str) -> HttpAnswer:
        return self.request("POST", f"EIO=4&transport=polling&sid={self.sid}",
                            self.SEPARATOR.join(packets))

    def poll(self) -> HttpAnswer:
        return self.request("GET", f"EIO=4&transport=polling&sid={self.sid}")

    def packets(self, answer: HttpAnswer) -> list[str]:
        return answer.text.split(self.SEPARATOR) if answer.status == 200 else []

    def connect(self, token: str) -> None:
        """Socket.IO CONNECT with ``token``; returns once the hub has accepted it."""
        assert self.send("40" + json.dumps({"token": token})).status == 200
        received: list[str] = []
        deadline = time.monotonic() + 10
        while not any(p.startswith("40{") for p in received):
            assert time.monotonic() < deadline, f"no CONNECT answer: {received}"
            received += self.packets(self.poll())

    def upgrade(self, headers: list[str] | None = None) -> websocket.WebSocket:
        """Move this session to a WebSocket (probe, then UPGRADE), as the official clients do.

        The upgrade carries this client's Origin unless ``headers`` says otherwise.
        """
        if headers is None:
            headers = [f"Origin: {self.origin}"] if self.origin else []
        ws = raw_websocket(self.server, f"EIO=4&transport=websocket&sid={self.sid}",
                           source=self.source, headers=headers)
        ws.send("2probe")
        assert ws.recv() == "3probe"
        ws.send("5")
        return ws


class AckProbe:
    """Times a well-behaved client's acks, one after another, while an attack runs.

    ``with AckProbe(client) as probe:`` calls ``get_rooms`` every ``interval``
    in a thread; afterwards ``probe.latencies`` holds each round trip.
    """

    def __init__(self, client: RecordingClient, interval: float = 0.01) -> None:
        self.client = client
        self.interval = interval
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            self.client.call("get_rooms", timeout=10)
            self.latencies.append(time.perf_counter() - started)
            self._stop.wait(self.interval)

    def __enter__(self) -> AckProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    @classmethod
    def baseline(cls, client: RecordingClient, samples: int = 30) -> AckProbe:
        """The client's acks with nothing else going on."""
        with cls(client) as probe:
            eventually(lambda: len(probe.latencies) >= samples, timeout=30)
        return probe

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        assert ordered, "no ack was timed"
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def assert_acks_stay_flat(baseline: AckProbe, during: AckProbe) -> None:
    """A bystander's acks during an attack stay near what they were before it.

    The floor of 250 ms keeps the check meaningful but robust on a loaded
    2-core machine (an unharmed ack takes 1-5 ms there).
    """
    limit = max(0.25, 5 * baseline.quantile(0.9))
    assert during.quantile(0.95) < limit, (during.quantile(0.95), baseline.quantile(0.9))
    assert max(during.latencies) < 2.0, max(during.latencies)


NGINX = os.environ.get("TEST_NGINX", "/usr/sbin/nginx")


def nginx_available() -> bool:
    return os.access(NGINX, os.X_OK)


class Nginx:
    """Debian's nginx, unprivileged, with its own prefix, config and free loopback port.

    ``http_config`` is what goes inside ``http {}`` (upstreams and servers);
    ``{port}`` in it is replaced by the port nginx listens on, ``{prefix}`` by
    its directory (files a test puts there, certificates say, nginx may
    read). As root, nginx runs as ``nobody`` so that it never holds
    privileges a test did not ask for.
    """

    def __init__(self, http_config: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.prefix = Path(tempfile.mkdtemp(prefix="hub-nginx-"))
        self.http_config = (http_config.replace("{port}", str(self.port))
                            .replace("{prefix}", str(self.prefix)))
        self.log_path = OUTPUT_DIR / f"nginx-{self.port}.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        scheme = "https" if " ssl;" in self.http_config else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        prefix = self.prefix
        temp = " ".join(f"{kind}_temp_path {prefix / kind};"
                        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (prefix / "nginx.conf").write_text(
            f"pid {prefix / 'nginx.pid'};\nworker_processes 1;\n"
            f"events {{ worker_connections 2048; }}\n"
            f"http {{\n  access_log {prefix / 'access.log'};\n  {temp}\n"
            f"{self.http_config}\n}}\n")
        unprivileged: dict[str, Any] = {}
        if os.geteuid() == 0:
            import pwd

            nobody = pwd.getpwnam("nobody")
            for path in (prefix, *prefix.iterdir()):
                os.chown(path, nobody.pw_uid, nobody.pw_gid)
            unprivileged = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
        OUTPUT_DIR.mkdir(exist_ok=True)
        error_log = open(self.log_path, "a")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
             "-e", str(prefix / "error.log"), "-g", "daemon off;"],
            stdout=error_log, stderr=subprocess.STDOUT, **unprivileged)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("nginx exited: " + self.error_log())
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=1):
                return
            time.sleep(0.05)
        raise RuntimeError("nginx did not start: " + self.error_log())

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text()[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        with contextlib.suppress(OSError), open(self.log_path, "a") as log:
            log.write((self.prefix / "error.log").read_text())
        shutil.rmtree(self.prefix, ignore_errors=True)


def nginx_proxy_config(upstream: str) -> str:
    """nginx in front of hub nodes as ``docs/deployment.md`` sets it up, minus TLS.

    ``upstream`` is the body of the ``upstream hub`` block (its ``server`` lines).
    """
    headers = """
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;"""
    return f"""
upstream hub {{ {upstream} }}
server {{
    listen 127.0.0.1:{{port}};
    location /socket.io/ {{
        proxy_pass http://hub;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";{headers}
        proxy_buffering off;
    }}
    location / {{
        proxy_pass http://hub;{headers}
    }}
}}
"""


class SourceAddressAdapter(requests.adapters.HTTPAdapter):
    """Connections from one loopback address: distinct clients without leaving the machine."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__(max_retries=RESEND_IDEMPOTENT)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def session_from(address: str) -> requests.Session:
    """A ``requests`` session whose connections come from ``address`` (127.x.y.z)."""
    session = requests.Session()
    adapter = SourceAddressAdapter(address)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def raw_socketio_connect(base_url: str, token: str, source: str = "127.0.0.1",
                         headers: dict | None = None) -> tuple[Any, str, Any]:
    """One bare Socket.IO connect over a WebSocket from ``source``, without a thread.

    Cheap enough for hundreds of sockets at once. Returns the open WebSocket,
    the answer's packet type (``"40"`` connected, ``"44"`` refused) and its
    payload (``{"sid"}``, or ``{"message", "data"}``). An ``https`` URL is
    reached over TLS without checking the certificate (a test's own).
    """
    import ssl
    from urllib.parse import urlsplit

    import websocket

    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    headers = dict(headers or {})
    # websocket-client writes Host and Origin itself (an Origin unless told not to).
    options = {"host": headers.pop("Host")} if "Host" in headers else {}
    if "Origin" in headers:
        options["origin"] = headers.pop("Origin")
    raw = socket.create_connection((parts.hostname, parts.port), timeout=10,
                                   source_address=(source, 0))
    if scheme == "wss":
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        raw = context.wrap_socket(raw, server_hostname=options.get("host", parts.hostname))
    ws = websocket.create_connection(
        f"{scheme}://{parts.hostname}:{parts.port}/socket.io/?EIO=4&transport=websocket",
        socket=raw, timeout=10, suppress_origin="origin" not in options,
        header=[f"{name}: {value}" for name, value in headers.items()], **options)
    assert ws.recv().startswith("0{")
    ws.send("40" + json.dumps({"token": token}))
    answer = ws.recv()
    return ws, answer[:2], json.loads(answer[2:])


JS_DIR = ROOT / "tests" / "js"


def js_packages() -> Path:
    """``tests/js`` with every npm package of its ``package.json`` installed."""
    require_service("Node.js", shutil.which("node") is not None and shutil.which("npm") is not None,
                    "apt-get install nodejs npm")
    wanted = json.loads((JS_DIR / "package.json").read_text())["dependencies"]
    with open(JS_DIR / ".npm-ci.lock", "w") as lock:  # one pytest-xdist worker installs
        fcntl.flock(lock, fcntl.LOCK_EX)
        if any(not (JS_DIR / "node_modules" / name).exists() for name in wanted):
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True,
                           capture_output=True, timeout=300)
    return JS_DIR


class NodePeer:
    """The benchmark kit's Node socket.io peer (``tests/js/node_peer.cjs``) on a free port.

    socket.io 4.8 with its defaults, the server the hub's protocol behaviour
    is compared with; it accepts tokens signed with the tests' key.
    """

    name = "node"

    def __init__(self) -> None:
        self.script = JS_DIR / "node_peer.cjs"
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.log_path = OUTPUT_DIR / f"node-peer-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def token(self, user_id: int) -> str:
        return mint_token(str(user_id))

    def start(self, timeout: float = 20.0) -> None:
        modules = js_packages() / "node_modules"
        OUTPUT_DIR.mkdir(exist_ok=True)
        log = open(self.log_path, "a")  # noqa: SIM115 - closed with the process
        env = {**os.environ, "PORT": str(self.port), "JWT_SECRET_KEY": JWT_SECRET,
               "NODE_PATH": str(modules)}
        self.process = subprocess.Popen(["node", str(self.script)], env=env, stdout=log,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Node peer exited; see {self.log_path}")
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=1):
                return
            time.sleep(0.05)
        raise RuntimeError("the Node peer did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def sockets_in_close_wait(port: int) -> int:
    """Connections to local ``port`` the peer has closed and the owner has not (CLOSE_WAIT).

    A server whose request handler hangs leaves its side of each abandoned
    connection in this state.
    """
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as handle:
            next(handle)
            for line in handle:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "08":
                    count += 1
    return count
