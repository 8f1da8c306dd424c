"""Every setting declared once, in config.py: the README's tables are generated from it, a
variable read without a declaration is caught, and a node says what it runs with.

The start-up line is read from a live ``python app.py`` and a live gunicorn
worker: every declared setting is in it, secrets only as ``***``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import config
from config import Setting, declared, mask_url
from scripts import settings_docs
from tests.support import (
    GUNICORN,
    ROOT,
    LiveServer,
    fresh_postgres_database,
    migrate_database,
    postgres_reachable,
    require_service,
)

# Runs config.py in a fresh interpreter with os.environ recording every name asked for,
# in every environment, and prints them.
RECORD_READS = textwrap.dedent("""
    import os, sys
    asked = set()

    class Recording(dict):
        def get(self, key, default=None):
            asked.add(key)
            return super().get(key, default)

        def __getitem__(self, key):
            asked.add(key)
            return super().__getitem__(key)

        def __contains__(self, key):
            asked.add(key)
            return super().__contains__(key)

    os.environ = Recording(os.environ)
    os.getenv = os.environ.get
    sys.path.insert(0, sys.argv[1])
    import config
    for name in config.CONFIGS:
        config.get_config(name)
    config.get_config()
    print(" ".join(sorted(asked)))
""")
PRODUCTION_KEYS = {"JWT_SECRET_KEY": "k" * 40, "WEBHOOK_SECRET": "webhook-secret-value"}


def _variables_read(folder: Path) -> set[str]:
    """The environment variables the config.py in ``folder`` reads, in any environment."""
    env = {key: value for key, value in os.environ.items() if key != "HUB_ENV"}
    run = subprocess.run([sys.executable, "-c", RECORD_READS, str(folder)], cwd=folder,
                         env={**env, **PRODUCTION_KEYS, "DATABASE_URL": "sqlite://"},
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return set(run.stdout.split())


def _readme_rows() -> set[str]:
    return set(re.findall(r"^\| `([A-Z0-9_]+)` \|", (ROOT / "README.md").read_text(),
                          flags=re.MULTILINE))


def test_the_readme_tables_are_what_config_py_declares():
    readme = (ROOT / "README.md").read_text()
    assert settings_docs.rewrite(readme) == readme, "README.md is stale: run `make docs`"
    assert _readme_rows() == {setting.name for setting in config.all_settings()}


def test_every_variable_config_py_reads_is_declared_and_has_its_row():
    read = _variables_read(ROOT)
    declared_names = {setting.name for setting in config.all_settings()}
    assert read - declared_names == set(), "declare these in config.SETTINGS"
    assert read - _readme_rows() == set(), "run `make docs`"
    assert {"HUB_ENV", "DATABASE_URL", "JWT_SECRET_KEY"} <= read


def test_a_variable_read_beside_the_declarations_is_caught(tmp_path):
    """The check above fails for a setting someone reads without declaring it."""
    doctored = (ROOT / "config.py").read_text() + '\nSMS_API_KEY = os.environ.get("SMS_API_KEY")\n'
    (tmp_path / "config.py").write_text(doctored)
    assert "SMS_API_KEY" in _variables_read(tmp_path) - {s.name for s in config.all_settings()}


def test_a_setting_declared_without_running_make_docs_makes_the_readme_stale(monkeypatch):
    readme = (ROOT / "README.md").read_text()
    added = Setting("TWILIO_AUTH_TOKEN", "", "the Twilio account's auth token", config.SECRET)
    monkeypatch.setitem(config.SETTINGS, "Messages and analytics",
                        (*config.SETTINGS["Messages and analytics"], added))
    regenerated = settings_docs.rewrite(readme)
    assert regenerated != readme
    assert "| `TWILIO_AUTH_TOKEN` | unset | the Twilio account's auth token |" in regenerated


def test_make_docs_leaves_a_current_readme_alone_and_restores_a_removed_row():
    readme = (ROOT / "README.md").read_text()
    check = subprocess.run([sys.executable, "scripts/settings_docs.py", "--check"], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    docs = subprocess.run(["make", "--no-print-directory", "docs"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert docs.returncode == 0, docs.stderr
    assert (ROOT / "README.md").read_text() == readme
    stale = re.sub(r"^\| `NODE_TTL` \|.*\n", "", readme, flags=re.MULTILINE)
    assert stale != readme and settings_docs.rewrite(stale) == readme


def test_each_environment_has_its_declared_default_and_the_readme_says_so():
    ttl, registration = declared("NODE_TTL"), declared("REGISTRATION_ENABLED")
    assert [ttl.read(name, {}) for name in config.ENVIRONMENTS] == [15.0, 3.0, 15.0]
    assert [registration.read(name, {}) for name in config.ENVIRONMENTS] == [True, True, False]
    assert ttl.read("testing", {"NODE_TTL": "7"}) == 7.0
    assert settings_docs.default_cell(ttl) == "`15`; testing: `3`"
    assert settings_docs.default_cell(registration) == "`true`; production: `false`"


def test_the_testing_keys_are_fixed_whatever_the_shell_exports():
    key = declared("JWT_SECRET_KEY")
    assert key.read("testing", {"JWT_SECRET_KEY": "x" * 40}) == config.TestingConfig.JWT_SECRET_KEY
    assert key.read("production", {"JWT_SECRET_KEY": "x" * 40}) == "x" * 40


@pytest.mark.parametrize(("variable", "value", "complaint"), [
    ("PORT", "abc", "PORT must be a whole number, not 'abc'"),
    ("NODE_TTL", "soon", "NODE_TTL must be a number, not 'soon'"),
    ("REGISTRATION_ENABLED", "maybe",
     "REGISTRATION_ENABLED must be true or false (1/0, yes/no, on/off), not 'maybe'"),
    ("LOG_FORMAT", "xml", "LOG_FORMAT must be one of text, json, not 'xml'"),
    ("HUB_ENV", "staging", "HUB_ENV must be one of development, testing, production"),
])
def test_a_value_that_does_not_parse_stops_the_start_saying_what_was_expected(
        variable, value, complaint):
    env = {**os.environ, "HUB_ENV": "testing", "DATABASE_URL": "sqlite://", variable: value}
    started = subprocess.run([sys.executable, "-c", "from app import create_app; create_app()"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert started.returncode != 0
    assert complaint in started.stderr


@pytest.mark.parametrize(("url", "shown"), [
    ("sqlite:////srv/hub/hub.db", "sqlite:////srv/hub/hub.db"),
    ("sqlite://", "sqlite://"),
    ("memory://", "memory://"),
    ("postgresql+psycopg://hub:s3cr%40t@db:5432/hub", "postgresql+psycopg://hub:***@db:5432/hub"),
    ("redis://:hunter2@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    ("rediss://default:pw@cache:6380/1?ssl_cert_reqs=none",
     "rediss://default:***@cache:6380/1?ssl_cert_reqs=none"),
    ("redis://cache:6379/0?password=hunter2&db=2", "redis://cache:6379/0?password=***&db=2"),
    ("postgresql://hub@db/hub", "postgresql://hub@db/hub"),
])
def test_urls_are_shown_without_their_passwords(url, shown):
    assert mask_url(url) == shown


def _startup_settings(server: LiveServer) -> dict[str, str]:
    lines = [line for line in server.log_text().splitlines() if "settings in effect: " in line]
    assert len(lines) == 1, server.log_text()[-2000:]
    pairs = shlex.split(lines[0].split("settings in effect: ", 1)[1])
    return dict(pair.split("=", 1) for pair in pairs)


SECRETS = {"JWT_SECRET_KEY": "jwt-key-that-must-not-be-logged-0123456789",
           "WEBHOOK_SECRET": "webhook-key-that-must-not-be-logged",
           "METRICS_TOKEN": "metrics-token-that-must-not-be-logged"}


@pytest.mark.parametrize("command", ["app.py", "gunicorn"])
def test_a_node_logs_every_setting_in_effect_with_secrets_masked(tmp_path, command):
    require_service("PostgreSQL", postgres_reachable())
    with fresh_postgres_database() as url:
        migrate_database(url)
        with_password = url.replace("postgres@", "postgres:db-password-not-logged@", 1)
        assert with_password != url
        server = LiveServer(with_password, name=f"settings-{command}",
                            command=GUNICORN if command == "gunicorn" else None,
                            env={"HUB_ENV": "production", "CORS_ALLOWED_ORIGINS":
                                 "https://app.example.com", "NODE_TTL": "12.5", **SECRETS})
        server.start()
        try:
            shown = _startup_settings(server)
            log = server.log_text()
        finally:
            server.stop()
    assert list(shown) == [setting.name for setting in config.all_settings()]
    for secret in (*SECRETS.values(), "db-password-not-logged"):
        assert secret not in log
    assert {name: shown[name] for name in SECRETS} == dict.fromkeys(SECRETS, "***")
    assert shown["DATABASE_URL"].startswith("postgresql+psycopg://postgres:***@127.0.0.1")
    assert shown["HUB_ENV"] == "production" and shown["PORT"] == str(server.port)
    assert shown["NODE_TTL"] == "12.5" and shown["REGISTRATION_ENABLED"] == "false"
    assert shown["CORS_ALLOWED_ORIGINS"] == "https://app.example.com"
    assert shown["SOCKETIO_MESSAGE_QUEUE"] == "unset"
