"""Production refuses to start on settings that would weaken it; development just works;
the SQLite file is its owner's only."""

import contextlib
import os
import sqlite3
import stat
import subprocess
import sys

import pytest

from tests.support import ROOT, migrate_database, register_user

GOOD = {"JWT_SECRET_KEY": "p" * 40, "WEBHOOK_SECRET": "webhook-secret",
        "CORS_ALLOWED_ORIGINS": "https://app.example.com"}


def _start(env_overrides: dict) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items()
           if key not in {"JWT_SECRET_KEY", "WEBHOOK_SECRET", "CORS_ALLOWED_ORIGINS"}}
    env.update({"HUB_ENV": "production", "DATABASE_URL": "sqlite:///:memory:", **env_overrides})
    return subprocess.run([sys.executable, "-c", "from app import create_app; create_app()"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("overrides", "complaint"), [
    ({"JWT_SECRET_KEY": ""}, "JWT_SECRET_KEY must be set"),
    ({"JWT_SECRET_KEY": "short-key"}, "JWT_SECRET_KEY must be set"),
    ({"WEBHOOK_SECRET": ""}, "WEBHOOK_SECRET must be set"),
    ({"CORS_ALLOWED_ORIGINS": "*"}, "never '*'"),
    ({"CORS_ALLOWED_ORIGINS": "https://app.example.com,null"}, "never '*'"),
])
def test_production_refuses_weak_settings(overrides, complaint):
    started = _start({**GOOD, **overrides})
    assert started.returncode != 0
    assert complaint in started.stderr


def test_production_starts_with_proper_settings():
    started = _start(GOOD)
    assert started.returncode == 0, started.stderr


@pytest.mark.parametrize(("value", "hops"), [
    ("", 0), ("0", 0), ("false", 0), ("1", 1), ("true", 1), ("TRUE", 1), ("2", 2), (" 3 ", 3),
])
def test_trust_proxy_headers_is_a_number_of_hops(value, hops):
    from config import declared

    assert declared("TRUST_PROXY_HEADERS").read("production", {"TRUST_PROXY_HEADERS": value}) \
        == hops


@pytest.mark.parametrize("value", ["-1", "yes please", "1.5"])
def test_trust_proxy_headers_refuses_what_is_not_a_number_of_hops(value):
    from config import declared

    with pytest.raises(RuntimeError, match="TRUST_PROXY_HEADERS must be a number of proxy hops"):
        declared("TRUST_PROXY_HEADERS").read("production", {"TRUST_PROXY_HEADERS": value})


def test_the_hub_does_not_start_on_a_guess_at_its_proxies():
    started = _start({**GOOD, "TRUST_PROXY_HEADERS": "all"})
    assert started.returncode != 0
    assert "TRUST_PROXY_HEADERS must be a number of proxy hops" in started.stderr


@contextlib.contextmanager
def _usual_umask():
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_sqlite_database_is_readable_by_its_owner_only(hub_factory, tmp_path):
    """Created under the usual umask 022, the file and its WAL files were world-readable."""
    folder = tmp_path / "data"
    url = f"sqlite:///{folder / 'hub.db'}"
    server = hub_factory(database_url=url, name="private-sqlite", start=False)
    with _usual_umask():
        migrate_database(url)
        server.start()
    register_user(server)  # writes: the WAL files exist now
    files = {path.name: _mode(path) for path in folder.iterdir()}
    assert {"hub.db", "hub.db-wal", "hub.db-shm"} <= files.keys()
    assert set(files.values()) == {0o600}, files
    assert _mode(folder) == 0o700
    existing = tmp_path / "existing"
    existing.mkdir()
    with _usual_umask():
        migrate_database(f"sqlite:///{existing / 'hub.db'}")
    assert _mode(existing / "hub.db") == 0o600


def test_a_database_server_gets_the_configured_pool_and_sqlite_keeps_its_own():
    from app import create_app
    from extensions import db

    server = create_app("testing", SQLALCHEMY_DATABASE_URI="postgresql+psycopg://hub@db.invalid/hub",
                        DATABASE_POOL_SIZE=7, DATABASE_MAX_OVERFLOW=3)
    with server.app_context():
        assert (db.engine.pool.size(), db.engine.pool._max_overflow) == (7, 3)
    embedded = create_app("testing", DATABASE_POOL_SIZE=7, DATABASE_MAX_OVERFLOW=3)
    with embedded.app_context():
        assert type(db.engine.pool).__name__ == "StaticPool"


def test_serving_leaves_alembic_unloaded_and_the_flask_command_still_migrates(tmp_path):
    """Alembic is an eighth of a process's start, and only ``flask db`` uses it."""
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'hub.db'}"}
    serving = subprocess.run(
        [sys.executable, "-c", "import sys; from app import create_app; create_app(); "
                               "print(sorted(m for m in sys.modules if m.startswith('alembic')))"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert serving.returncode == 0, serving.stderr
    assert serving.stdout.strip() == "[]"
    migrated = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert migrated.returncode == 0, migrated.stderr
    with contextlib.closing(sqlite3.connect(tmp_path / "hub.db")) as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchone()


def test_aiohttp_is_imported_only_when_something_uses_it(tmp_path):
    """python-engineio imports it for its asyncio client; building it is a tenth of a start."""
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'hub.db'}"}
    check = subprocess.run([sys.executable, "-c", (
        "import sys; from app import create_app; create_app()\n"
        "built = 'aiohttp.connector' in sys.modules\n"
        "import engineio.async_client as client\n"
        "session = client.aiohttp.ClientSession\n"
        "from aiohttp import web\n"
        "print(built, session.__module__, 'aiohttp.connector' in sys.modules,\n"
        "      sys.modules['aiohttp'].ClientSession is session, web.Application.__name__)")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    assert check.stdout.split() == ["False", "aiohttp.client", "True", "True", "Application"]
