"""SMS pumping: daily recipient quotas per user, and registration closed in production."""

import os
import subprocess
import sys
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support import (
    ROOT,
    register_user,
    run_flask,
    sent_phones,
    sql_scalar,
)


def _phones(count):
    tag = uuid.uuid4().int % 10_000_000
    return [f"+1558{(tag + i) % 10_000_000:07d}" for i in range(count)]


def _send(server, user, phones):
    return server.api.post("/api/messages", user.token,
                           json={"body": "quota", "recipients": phones})


def _set_quota(server, admin, user, quota):
    response = server.api.request("PUT", f"/api/users/{user.id}/quota", admin.token,
                                  json={"dailyRecipientQuota": quota})
    assert response.status_code == 200, response.text
    return response.json()


def test_recipients_past_the_daily_quota_are_refused_with_429(hub, api, user, admin):
    assert _set_quota(hub, admin, user, 5)["dailyRecipientQuota"] == 5
    first = _phones(3)
    assert _send(hub, user, first).status_code == 202
    refused_phones = _phones(3)
    refused = _send(hub, user, refused_phones)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert error["message"] == ("Daily recipient quota of 5 reached: 3 used today, "
                                "3 more requested")
    assert error["details"]["dailyRecipientQuota"] == 5
    assert error["details"]["usedToday"] == 3 and error["details"]["requested"] == 3
    assert error["details"]["renewsAt"].endswith("T00:00:00.000Z")
    assert 0 < int(refused.headers["Retry-After"]) <= 86400
    assert _send(hub, user, _phones(2)).status_code == 202  # exactly fills the day
    quota = api.get(f"/api/users/{user.id}/quota", user.token).json()
    assert quota["usedToday"] == 5 and quota["remainingToday"] == 0
    assert quota["isDefault"] is False
    assert sql_scalar(hub.database_url, "SELECT count(*) FROM messages WHERE user_id = :u",
                      u=user.id) == 2
    assert not set(refused_phones) & set(sent_phones(hub.send_log))


def test_concurrent_messages_cannot_squeeze_past_the_quota(hub, user, admin):
    _set_quota(hub, admin, user, 4)
    start = threading.Barrier(10)

    def send_one(phone):
        with requests.Session() as session:
            start.wait()
            return session.post(hub.url + "/api/messages", timeout=30,
                                headers={"Authorization": f"Bearer {user.token}"},
                                json={"body": "squeeze", "recipients": [phone]}).status_code

    with ThreadPoolExecutor(10) as pool:
        statuses = Counter(pool.map(send_one, _phones(10)))
    assert statuses == {202: 4, 429: 6}
    assert sql_scalar(hub.database_url, "SELECT count(*) FROM messages WHERE user_id = :u",
                      u=user.id) == 4


def test_only_admins_set_quotas_and_users_see_only_their_own(hub, api, make_user, admin):
    alice, bob = make_user(), make_user()
    forbidden = api.request("PUT", f"/api/users/{alice.id}/quota", alice.token,
                            json={"dailyRecipientQuota": 10**6})
    assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "forbidden"
    assert api.get(f"/api/users/{alice.id}/quota", bob.token).status_code == 403
    own = api.get(f"/api/users/{alice.id}/quota", alice.token).json()
    assert own["isDefault"] is True and own["usedToday"] == 0
    for bad in (-1, "5", 1.5, True):
        invalid = api.request("PUT", f"/api/users/{alice.id}/quota", admin.token,
                              json={"dailyRecipientQuota": bad})
        assert invalid.status_code == 400, bad
    missing = api.request("PUT", f"/api/users/{2**31 - 1}/quota", admin.token,
                          json={"dailyRecipientQuota": 1})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    _set_quota(hub, admin, alice, 0)
    assert _send(hub, alice, _phones(1)).status_code == 429
    assert _set_quota(hub, admin, alice, None)["isDefault"] is True
    assert _send(hub, alice, _phones(1)).status_code == 202


@pytest.fixture(scope="module")
def quota_hub(module_hub_factory):
    return module_hub_factory({"DAILY_RECIPIENT_QUOTA": "4"}, name="quota", admin=False)


def _flask_users(database_url, *arguments):
    return run_flask(database_url, "users", *arguments, env={"DAILY_RECIPIENT_QUOTA": "4"})


def test_daily_recipient_quota_applies_to_every_user_and_the_cli_overrides_it(quota_hub):
    someone = register_user(quota_hub)
    assert _send(quota_hub, someone, _phones(4)).status_code == 202
    refused = _send(quota_hub, someone, _phones(1))
    assert refused.status_code == 429
    assert refused.json()["error"]["details"]["dailyRecipientQuota"] == 4
    raised = _flask_users(quota_hub.database_url, "quota", someone.email, "--daily", "6")
    assert raised.returncode == 0, raised.stderr
    assert raised.stdout.strip() == (f"{someone.email}: 6 recipients per UTC day (own quota), "
                                     "4 used today")
    assert _send(quota_hub, someone, _phones(2)).status_code == 202
    assert _send(quota_hub, someone, _phones(1)).status_code == 429
    back = _flask_users(quota_hub.database_url, "quota", someone.email, "--default")
    assert "4 recipients per UTC day (the default), 6 used today" in back.stdout
    unknown = _flask_users(quota_hub.database_url, "quota", "nobody@example.com")
    assert unknown.returncode != 0 and "no user with email nobody@example.com" in unknown.stderr
    assert "Traceback" not in unknown.stderr


PRODUCTION = {"HUB_ENV": "production", "JWT_SECRET_KEY": "p" * 40,
              "WEBHOOK_SECRET": "production-webhook-secret", "METRICS_TOKEN": "m" * 40}


def test_production_closes_registration_unless_opened(hub_factory):
    # An empty setting counts as unset: production's own default decides.
    server = hub_factory({**PRODUCTION, "REGISTRATION_ENABLED": ""}, name="production",
                         admin=False)
    refused = server.api.post("/api/auth/register", json={
        "email": "pumper@example.com", "password": "long enough pw"})
    assert refused.status_code == 403
    assert refused.json()["error"] == {"code": "forbidden",
                                       "message": "Registration is disabled"}
    opened = subprocess.run(
        [sys.executable, "-c",
         "from app import create_app; print(create_app().config['REGISTRATION_ENABLED'])"],
        cwd=ROOT, env={**os.environ, **PRODUCTION, "DATABASE_URL": server.database_url,
                       "REGISTRATION_ENABLED": "1"},
        capture_output=True, text=True, timeout=60)
    assert opened.stdout.strip() == "True", opened.stderr
