"""The OpenAPI document, and schemathesis fuzzing every REST route against it."""

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.support import register_user


@pytest.fixture(scope="module")
def fuzzing_admin(sqlite_hub):
    """The seeded admin; whatever daily quota the fuzzer gives it is taken back after."""
    admin = register_user(sqlite_hub, admin=True)
    yield admin
    sqlite_hub.api.request("PUT", f"/api/users/{admin.id}/quota", admin.token,
                           json={"dailyRecipientQuota": None})


@pytest.fixture(scope="module")
def api_schema(sqlite_hub):
    return schemathesis.openapi.from_url(sqlite_hub.url + "/api/openapi.json")


def test_document_lists_every_rest_route(sqlite_hub):
    spec = requests.get(sqlite_hub.url + "/api/openapi.json", timeout=5).json()
    assert spec["openapi"].startswith("3.")
    assert {"/api/messages", "/api/socket/notify/{userId}", "/api/webhooks/delivery",
            "/api/auth/login", "/api/notifications"} <= set(spec["paths"])
    assert requests.get(sqlite_hub.url + "/api/docs", timeout=5).status_code == 200


def test_no_route_errors_or_breaks_its_schema(api_schema, fuzzing_admin):
    headers = {"Authorization": f"Bearer {fuzzing_admin.token}"}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck),
                  database=None)
        def exercise(case):
            case.call_and_validate(headers=headers,
                                   checks=[not_a_server_error, response_schema_conformance])

        exercise()
