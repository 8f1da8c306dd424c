"""Production refuses to start on settings that would weaken it; development just works."""

import os
import subprocess
import sys

import pytest

from tests.support import ROOT

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
def test_trust_proxy_headers_is_a_number_of_hops(monkeypatch, value, hops):
    from config import _env_proxy_hops

    monkeypatch.setenv("TRUST_PROXY_HEADERS", value)
    assert _env_proxy_hops("TRUST_PROXY_HEADERS") == hops


@pytest.mark.parametrize("value", ["-1", "yes please", "1.5"])
def test_trust_proxy_headers_refuses_what_is_not_a_number_of_hops(monkeypatch, value):
    from config import _env_proxy_hops

    monkeypatch.setenv("TRUST_PROXY_HEADERS", value)
    with pytest.raises(RuntimeError, match="TRUST_PROXY_HEADERS must be a number of proxy hops"):
        _env_proxy_hops("TRUST_PROXY_HEADERS")


def test_the_hub_does_not_start_on_a_guess_at_its_proxies():
    started = _start({**GOOD, "TRUST_PROXY_HEADERS": "all"})
    assert started.returncode != 0
    assert "TRUST_PROXY_HEADERS must be a number of proxy hops" in started.stderr
