"""The OpenAPI and AsyncAPI documents: complete, with true examples, and matching the wire.

Every route the Flask app registers is in the OpenAPI document with its
schemas and an example; every Socket.IO event of docs/API.md is in the
AsyncAPI document; every example validates against its own schema; and what a
real client receives over a real websocket validates against the AsyncAPI
document's schemas.
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema_rs
import pytest
import requests

from services.messaging.webhook_signing import sign_webhook_body
from tests.support import (
    ROOT,
    WEBHOOK_SECRET,
    RecordingClient,
    make_app,
    mint_token,
    register_user,
)

# Served by the app but not part of the API: the pages (HTML for people) and their files.
NOT_API = {"static": "the pages' files", "pages.test_socket": "an HTML page",
           "pages.dashboard": "an HTML page", "openapi.openapi_page": "this documentation"}


@pytest.fixture(scope="module")
def openapi(sqlite_hub) -> dict[str, Any]:
    return requests.get(sqlite_hub.url + "/api/openapi.json", timeout=10).json()


@pytest.fixture(scope="module")
def asyncapi(sqlite_hub) -> dict[str, Any]:
    return requests.get(sqlite_hub.url + "/api/asyncapi.json", timeout=10).json()


def _validator(document: dict[str, Any], schema: dict[str, Any]):
    """A JSON Schema validator for ``schema`` whose ``#/components/...`` refs reach ``document``."""
    return jsonschema_rs.Draft202012Validator({**schema, "components": document["components"]})


def _assert_valid(document: dict[str, Any], schema: dict[str, Any], instance: Any,
                  where: str) -> None:
    errors = [error.message for error in _validator(document, schema).iter_errors(instance)]
    assert errors == [], f"{where}: {errors} in {instance!r}"


def _flask_routes() -> set[tuple[str, str]]:
    app = make_app("sqlite://")
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint in NOT_API:
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((re.sub(r"<(?:\w+:)?(\w+)>", "{}", rule.rule), method.lower()))
    return routes


def _operations(openapi: dict[str, Any]):
    for path, methods in openapi["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def test_every_flask_route_is_documented_with_schemas_and_examples(openapi):
    documented = {(re.sub(r"\{\w+\}", "{}", path), method)
                  for path, method, _ in _operations(openapi)}
    assert documented == _flask_routes()
    for path, method, operation in _operations(openapi):
        where = f"{method.upper()} {path}"
        successes = [status for status in operation["responses"] if status.startswith("2")]
        assert len(successes) == 1, where
        for status, response in operation["responses"].items():
            for media in response["content"].values():
                assert "schema" in media and "example" in media, f"{where} {status}"
        for parameter in operation.get("parameters", []):
            assert "schema" in parameter, f"{where} {parameter['name']}"
            assert "example" in parameter or "example" in parameter["schema"], \
                f"{where} {parameter['name']} has no example"
        if "requestBody" in operation:
            [media] = operation["requestBody"]["content"].values()
            assert "schema" in media and "example" in media, where
        if method == "post" and not path.startswith("/api/auth/") and "{" not in path:
            assert "requestBody" in operation or path in {
                "/api/socket/ping", "/api/notifications/read-all"}, f"{where} has no body"


def test_every_openapi_example_fits_its_schema(openapi):
    for path, method, operation in _operations(openapi):
        where = f"{method.upper()} {path}"
        media_types = [(f"{where} request", operation.get("requestBody", {}).get("content", {}))]
        media_types += [(f"{where} {status}", response["content"])
                        for status, response in operation["responses"].items()]
        for label, content in media_types:
            for media in content.values():
                _assert_valid(openapi, media["schema"], media["example"], label)
        for parameter in operation.get("parameters", []):
            example = parameter.get("example", parameter["schema"].get("example"))
            _assert_valid(openapi, parameter["schema"], example, f"{where} {parameter['name']}")


def test_request_examples_pass_the_hubs_own_validation():
    """The marshmallow schemas check more than JSON Schema can say (e-mail syntax, sizes)."""
    from blueprints.openapi import ROUTES
    from schemas.documentation import example_of

    for route in ROUTES:
        for schema in filter(None, (route.body, route.form, route.query)):
            errors = schema().validate(example_of(schema))
            assert errors == {}, f"{route.method.upper()} {route.path}: {errors}"


def test_every_route_answers_its_example_as_documented(sqlite_hub, openapi):
    """Each operation, sent as "Try it out" sends it (the examples, the admin's token),
    answers its documented success status with a body that fits the documented schema."""
    admin, user = register_user(sqlite_hub, admin=True), register_user(sqlite_hub)
    sent = sqlite_hub.api.post("/api/messages", user.token,
                               json={"body": "x", "recipients": ["+15551234567"]}).json()
    sqlite_hub.api.post(f"/api/socket/notify/{admin.id}", admin.token,
                        json={"title": "t", "message": "m"})
    notification = sqlite_hub.api.get("/api/notifications", admin.token).json()
    path_ids = {"userId": admin.id, "messageId": sent["id"],
                "notificationId": notification["notifications"][0]["id"],
                "phone": "%2B15551234567"}
    # What a reader types instead of an example that is a placeholder or must be unique.
    bodies = {"/api/auth/register": {"email": f"docs-{user.id}@example.com",
                                     "password": "correct horse battery"},
              "/api/auth/login": {"email": admin.email, "password": admin.password}}
    tokens = {"/api/auth/refresh": admin.refresh_token,
              "/api/auth/logout": register_user(sqlite_hub, admin=True).token}
    for path, method, operation in _operations(openapi):
        if path.startswith("/api/webhooks/twilio/"):
            continue  # Twilio-signed, on a hub sending through Twilio: tests/test_twilio.py
        where = f"{method.upper()} {path}"
        if path.endswith(("/pause", "/resume", "/cancel")):
            # Each needs a message still sending (paused, for resume): one of 300
            # recipients made just before, which the send takes longer than a request.
            path_ids["messageId"] = sqlite_hub.api.post("/api/messages", user.token, json={
                "body": "x", "recipients": [f"+1555123{i:04d}" for i in range(300)]}).json()["id"]
            if path.endswith("/resume"):
                sqlite_hub.api.post(f"/api/messages/{path_ids['messageId']}/pause", user.token)
        url = re.sub(r"\{(\w+)\}", lambda m: str(path_ids[m.group(1)]), path)
        headers = {"Authorization": f"Bearer {tokens.get(path, admin.token)}"}
        body = None
        if "requestBody" in operation:
            example = operation["requestBody"]["content"]["application/json"]["example"]
            body = json.dumps(bodies.get(path, example)).encode()
            headers["Content-Type"] = "application/json"
        if path == "/api/webhooks/delivery":
            headers["X-Signature"] = sign_webhook_body(body, WEBHOOK_SECRET)
        response = requests.request(method, sqlite_hub.url + url, data=body, headers=headers,
                                    timeout=15)
        [(status, documented)] = [(status, answer) for status, answer
                                  in operation["responses"].items() if status.startswith("2")]
        assert str(response.status_code) == status, f"{where}: {response.text[:300]}"
        [(media_type, media)] = documented["content"].items()
        assert response.headers["Content-Type"].startswith(media_type), where
        answer = response.json() if media_type == "application/json" else response.text
        _assert_valid(openapi, media["schema"], answer, where)


def _api_md_events(heading: str) -> set[str]:
    """The event names in the first column of the table under ``heading`` in docs/API.md."""
    text = (ROOT / "docs" / "API.md").read_text()
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE))


def test_asyncapi_lists_every_event_of_the_contract_and_of_the_code(asyncapi):
    from blueprints.socket_events import EVENT_PAYLOADS

    by_action: dict[str, set[str]] = {"receive": set(), "send": set()}
    for name, operation in asyncapi["operations"].items():
        by_action[operation["action"]].add(name)
    assert by_action["receive"] == _api_md_events("Client → server events") == set(EVENT_PAYLOADS)
    assert by_action["send"] == _api_md_events("Server → client events")
    assert asyncapi["asyncapi"] == "3.0.0"
    messages = asyncapi["channels"]["socket"]["messages"]
    for name, operation in asyncapi["operations"].items():
        refs = operation["messages"] + operation.get("reply", {}).get("messages", [])
        for ref in refs:
            message = messages[ref["$ref"].rsplit("/", 1)[1]]
            assert message["examples"], name
            for example in message["examples"]:
                _assert_valid(asyncapi, message["payload"], example["payload"],
                              f"{name}: {message['name']}")
        if operation["action"] == "receive":
            takes_payload = messages[name]["payload"] != {"type": "null"}
            assert takes_payload == (EVENT_PAYLOADS[name] != "none"), name


class Wire:
    """Checks what a real client sends and receives against the AsyncAPI document."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.messages = document["channels"]["socket"]["messages"]
        self.checked: set[str] = set()

    def check(self, message: str, payload: Any) -> Any:
        _assert_valid(self.document, self.messages[message]["payload"], payload, message)
        self.checked.add(message)
        return payload

    def ack(self, client: RecordingClient, event: str, *args: Any) -> Any:
        """Send ``event`` (its payload checked first) and check the acknowledgement."""
        if args or self.messages[event]["payload"] == {"type": "null"}:
            self.check(event, args[0] if args else None)
        answer = client.call(event, *args)
        failed = isinstance(answer, dict) and answer.get("ok") is False
        return self.check("ack_failure" if failed else f"{event}_ack", answer)

    def event(self, client: RecordingClient, event: str, predicate=lambda _: True) -> Any:
        return self.check(event, client.wait_for(event, predicate))


def test_what_travels_on_the_socket_fits_the_asyncapi_document(sqlite_hub, asyncapi):
    wire = Wire(asyncapi)
    api = sqlite_hub.api
    user, admin = register_user(sqlite_hub), register_user(sqlite_hub, admin=True)
    clients = [RecordingClient(sqlite_hub.url) for _ in range(4)]
    watcher, other_tab, admin_socket, expiring = clients
    try:
        watcher.connect(token=user.token)
        other_tab.connect(token=user.token)
        admin_socket.connect(token=admin.token)
        expiring.connect(token=mint_token(str(user.id), expires_in=3))
        wire.event(watcher, "session")
        wire.event(expiring, "auth_expiring")

        wire.ack(watcher, "join_room", "room:docs")
        wire.ack(watcher, "leave_room", "room:docs")
        wire.ack(watcher, "join_room", "admins")
        assert set(wire.ack(watcher, "get_rooms")) == {f"user:{user.id}"}
        watcher.emit("join_room", "admins")
        wire.event(watcher, "error")

        sent = api.post("/api/messages", user.token,
                        json={"body": "docs", "recipients": ["+15551234567", "+15005550001"]})
        assert sent.status_code == 202, sent.text
        message_id = sent.json()["id"]
        wire.ack(watcher, "track_message", message_id)
        wire.event(watcher, "message_update", lambda m: m["status"] != "SENDING")
        wire.event(watcher, "recipient_update", lambda r: "errorCode" in r)
        wire.ack(watcher, "untrack_message", message_id)
        wire.ack(watcher, "track_message", {"messageId": message_id, "batch": True})
        wire.event(watcher, "recipient_updates", lambda b: len(b["updates"]) == 2)
        wire.ack(watcher, "untrack_message", message_id)
        injected = api.post("/api/simulator/inbound", admin.token,
                            json={"from": "+15551234567", "body": "HELP"})
        assert injected.status_code == 201, injected.text
        wire.event(watcher, "inbound_message")

        notified = api.post(f"/api/socket/notify/{user.id}", admin.token,
                            json={"title": "docs", "message": "check", "data": {"a": 1}})
        assert notified.status_code == 201, notified.text
        note = wire.event(watcher, "notification")
        wire.ack(watcher, "get_notifications", {"limit": 5})
        wire.ack(watcher, "get_notifications")
        wire.ack(watcher, "mark_notification_read", note["id"])
        wire.event(other_tab, "notification_read", lambda p: "id" in p)
        wire.ack(watcher, "mark_all_notifications_read")

        assert api.post("/api/socket/ping", admin.token).status_code == 200
        ping = wire.event(watcher, "ping")
        wire.ack(watcher, "pong", {"timestamp": ping["timestamp"]})

        wire.ack(admin_socket, "subscribe_analytics")
        for kind in ("dashboard_stats", "message_stats", "usage_stats"):
            update = wire.event(admin_socket, "analytics_update", lambda u, k=kind: u["type"] == k)
            schema = {"$ref": f"#/components/schemas/{kind.title().replace('_', '')}"}
            _assert_valid(asyncapi, schema, update["data"], kind)
        wire.event(admin_socket, "global_analytics_update")
        wire.ack(admin_socket, "unsubscribe_analytics")

        wire.ack(watcher, "authenticate", user.token)
        wire.event(expiring, "auth_expired")
    finally:
        for client in clients:
            client.close()
    every_message = set(wire.messages) - {"ack_failure"}
    assert every_message <= wire.checked, f"not seen on the wire: {every_message - wire.checked}"
    assert "ack_failure" in wire.checked


def test_api_docs_page_and_documents_are_served(sqlite_hub):
    page = requests.get(sqlite_hub.url + "/api/docs", timeout=10)
    assert page.status_code == 200
    for script in ("vendor/swagger-ui-bundle.js", "js/api_docs.js", "js/hub_client.js"):
        assert f"/static/{script}" in page.text
        assert requests.get(f"{sqlite_hub.url}/static/{script}", timeout=10).status_code == 200
    assert re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.text) is None, "inline script"
    assert re.search(r"<[^>]*\son[a-z]+\s*=", page.text) is None, "inline event handler"
    servers = requests.get(sqlite_hub.url + "/api/asyncapi.json", timeout=10).json()["servers"]
    assert servers["hub"]["host"] == sqlite_hub.url.removeprefix("http://")


def test_vendored_files_match_the_manifest():
    import hashlib
    import json

    manifest = json.loads((ROOT / "static" / "vendor" / "MANIFEST.json").read_text())
    assert {"swagger-ui-bundle.js", "swagger-ui.css"} <= {entry["file"] for entry in manifest}
    for entry in manifest:
        content = (ROOT / "static" / "vendor" / entry["file"]).read_bytes()
        assert hashlib.sha256(content).hexdigest() == entry["sha256"], entry["file"]

