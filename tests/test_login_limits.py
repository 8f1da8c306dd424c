"""Password guessing: failed logins are limited per address and account, per account
from every address, and per address on every account; registration tells no one
which emails have accounts; common passwords are refused."""

import uuid

import pytest

from extensions import limiter
from tests.support import api_from, make_app, register_user

LIMITS = {"LOGIN_RATE_LIMIT": "3/minute", "LOGIN_ACCOUNT_RATE_LIMIT": "5/minute",
          "LOGIN_ADDRESS_RATE_LIMIT": "6/minute"}


@pytest.fixture(scope="module")
def guarded_hub(module_hub_factory):
    return module_hub_factory(LIMITS, name="guarded", admin=False)


def _login(api, email, password="wrong password"):
    return api.post("/api/auth/login", json={"email": email, "password": password})


def _assert_limited(response):
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "rate_limited"
    assert int(response.headers["Retry-After"]) > 0


def test_one_address_spraying_many_accounts_is_stopped(guarded_hub):
    sprayer = api_from(guarded_hub, "127.0.0.2")
    accounts = [f"sprayed-{uuid.uuid4().hex[:8]}@example.com" for _ in range(8)]
    statuses = [_login(sprayer, email).status_code for email in accounts[:6]]
    assert statuses == [401] * 6
    _assert_limited(_login(sprayer, accounts[6]))
    elsewhere = api_from(guarded_hub, "127.0.0.3")
    assert _login(elsewhere, accounts[7]).status_code == 401  # another address is not limited


def test_one_account_guessed_from_many_addresses_is_stopped(guarded_hub):
    target, other = register_user(guarded_hub), register_user(guarded_hub)
    statuses = [_login(api_from(guarded_hub, f"127.0.1.{n}"), target.email).status_code
                for n in range(1, 6)]
    assert statuses == [401] * 5
    fresh_address = api_from(guarded_hub, "127.0.1.99")
    _assert_limited(_login(fresh_address, target.email))
    # The price of the account limit: while it is spent, the owner waits too.
    _assert_limited(_login(fresh_address, target.email, target.password))
    assert _login(fresh_address, other.email, other.password).status_code == 200


def test_successful_logins_do_not_count(guarded_hub):
    someone = register_user(guarded_hub)
    regular = api_from(guarded_hub, "127.0.2.1")
    statuses = {_login(regular, someone.email, someone.password).status_code
                for _ in range(8)}
    assert statuses == {200}


def test_every_rate_limit_is_declared_on_its_route(tmp_path):
    """``RouteLimiter`` checks the limits routes declare and skips Flask-Limiter's hook for
    every other kind: none may exist, or it would silently go unchecked. That the declared
    ones still hold is what the tests above show."""
    app = make_app(f"sqlite:///{tmp_path / 'hub.db'}")
    manager = limiter.limit_manager
    assert manager.application_limits == [] and manager.default_limits == []
    assert {name: manager.blueprint_limits(app, name) for name in app.blueprints} == {
        name: [] for name in app.blueprints}
    assert not {"RATELIMIT_APPLICATION", "RATELIMIT_DEFAULT", "RATELIMIT_META"} & set(app.config)
