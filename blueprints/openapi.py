"""``/api/openapi.json``: the REST API described from its marshmallow schemas, and ``/api/docs``."""

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, render_template

from schemas import auth, messages, notifications, quotas, responses
from schemas.common import MAX_ID, MAX_USER_ID

openapi_bp = Blueprint("openapi", __name__)

BEARER = [{"bearer": []}]


def _error(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": "ErrorSchema"}}}


def _ok(schema: str, status: str = "200", description: str = "OK") -> dict:
    return {status: {"description": description,
                     "content": {"application/json": {"schema": schema}}}}


def _body(schema) -> dict:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _query(schema) -> list:
    return [{"in": "query", "schema": schema}]


def _path_id(name: str, maximum: int = MAX_ID) -> dict:
    return {"in": "path", "name": name, "required": True,
            "schema": {"type": "integer", "minimum": 1, "maximum": maximum}}


def _user_id() -> dict:
    return _path_id("userId", MAX_USER_ID)


COMMON = {"400": _error("Invalid input"), "401": _error("Missing or invalid token"),
          "429": _error("Rate limited")}

# (path, method, summary, spec) for every REST route.
ROUTES = [
    ("/api/auth/register", "post", "Create an account", {
        "requestBody": _body(auth.RegisterSchema), "security": [],
        "responses": {**_ok("UserEnvelopeSchema", "201",
                            "Created, or the same answer when the email is taken"),
                      "403": _error("Registration closed")}}),
    ("/api/auth/login", "post", "Log in", {
        "requestBody": _body(auth.LoginSchema), "security": [],
        "responses": _ok("LoginResponseSchema")}),
    ("/api/auth/refresh", "post", "A new access token from a refresh token", {
        "responses": _ok("AccessTokenSchema")}),
    ("/api/auth/logout", "post", "Revoke the session of the presented token", {"responses": {
        "200": {"description": "Revoked"}}}),
    ("/api/auth/me", "get", "The caller", {"responses": _ok("UserEnvelopeSchema")}),
    ("/api/socket/stats", "get", "Connections per node (admin)", {
        "responses": {**_ok("StatsSchema"), "403": _error("Admins only")}}),
    ("/api/socket/user/{userId}/online", "get", "Whether a user is online", {
        "parameters": [_user_id()],
        "responses": {**_ok("OnlineSchema"), "403": _error("Only yourself, or admins")}}),
    ("/api/socket/online-count", "get", "Distinct users online", {
        "responses": _ok("CountSchema")}),
    ("/api/socket/notify/{userId}", "post", "Store and emit a notification (admin)", {
        "parameters": [_user_id()], "requestBody": _body(notifications.NotifySchema),
        "responses": {**_ok("NotifyResponseSchema", "201", "Stored and emitted"),
                      "403": _error("Admins only"), "404": _error("No such user"),
                      "409": _error("Idempotency-Key reused with another body")}}),
    ("/api/socket/broadcast", "post", "Notify every user (admin)", {
        "requestBody": _body(notifications.BroadcastSchema),
        "responses": {**_ok("BroadcastResponseSchema", "201", "Stored and emitted"),
                      "403": _error("Admins only")}}),
    ("/api/socket/ping", "post", "Ping every connection (admin)", {
        "responses": {**_ok("PingResponseSchema"), "403": _error("Admins only")}}),
    ("/api/notifications", "get", "The caller's notifications, newest first", {
        "parameters": _query(notifications.NotificationQuerySchema),
        "responses": _ok("NotificationPageSchema")}),
    ("/api/notifications/{notificationId}/read", "post", "Mark one read", {
        "parameters": [_path_id("notificationId")],
        "responses": {"200": {"description": "Marked"}, "404": _error("Not found")}}),
    ("/api/notifications/read-all", "post", "Mark all read", {
        "responses": _ok("CountSchema")}),
    ("/api/messages", "post", "Send a message to many phones", {
        "requestBody": _body(messages.MessageCreateSchema),
        "responses": {**_ok("MessageSchema", "202", "Accepted; delivery runs in the background"),
                      "409": _error("Idempotency-Key reused"), "413": _error("Too large"),
                      "429": _error("Rate limited, or the daily recipient quota is used up")}}),
    ("/api/messages", "get", "The caller's messages, newest first", {
        "parameters": _query(messages.MessageListQuerySchema),
        "responses": _ok("MessagePageSchema")}),
    ("/api/messages/{messageId}", "get", "One message with counts and cost", {
        "parameters": [_path_id("messageId")],
        "responses": {**_ok("MessageSchema"), "404": _error("Not found")}}),
    ("/api/messages/{messageId}/recipients", "get", "A message's recipients, paged", {
        "parameters": [_path_id("messageId"), *_query(messages.RecipientListQuerySchema)],
        "responses": {**_ok("RecipientPageSchema"), "404": _error("Not found")}}),
    ("/api/users/{userId}/quota", "get", "A user's daily recipient quota and use", {
        "parameters": [_user_id()],
        "responses": {**_ok("QuotaSchema"), "403": _error("Only yourself, or admins"),
                      "404": _error("No such user")}}),
    ("/api/users/{userId}/quota", "put", "Set a user's daily recipient quota (admin)", {
        "parameters": [_user_id()], "requestBody": _body(quotas.QuotaUpdateSchema),
        "responses": {**_ok("QuotaSchema"), "403": _error("Admins only"),
                      "404": _error("No such user")}}),
    ("/api/webhooks/delivery", "post", "Delivery receipts (HMAC-SHA256 in X-Signature)", {
        "security": [], "parameters": [{"in": "header", "name": "X-Signature",
                                        "required": True, "schema": {"type": "string"}}],
        "requestBody": _body(messages.DeliveryReceiptSchema),
        "responses": _ok("ReceiptResultSchema")}),
    ("/api/analytics/dashboard", "get", "dashboard_stats of the caller", {
        "responses": {"200": {"description": "Figures (README: Analytics figures)"}}}),
    ("/api/analytics/messages", "get", "message_stats of the caller", {
        "responses": {"200": {"description": "Figures"}}}),
    ("/api/analytics/usage", "get", "usage_stats of the caller", {
        "responses": {"200": {"description": "Figures"}}}),
    ("/api/analytics/global", "get", "System-wide figures (admin)", {
        "responses": {"200": {"description": "Figures"}, "403": _error("Admins only")}}),
]


def build_spec() -> dict:
    spec = APISpec(title="Realtime messaging hub", version="1.0.0", openapi_version="3.0.3",
                   plugins=[MarshmallowPlugin()])
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer",
                                               "bearerFormat": "JWT"})
    for name in dir(responses):
        schema = getattr(responses, name)
        if isinstance(schema, type) and name.endswith("Schema") and name != "Schema":
            spec.components.schema(name, schema=schema)
    operations: dict[str, dict] = {}
    for path, method, summary, details in ROUTES:
        operation = {"summary": summary, "security": BEARER, **details}
        operation["responses"] = {**COMMON, **details["responses"]}
        operations.setdefault(path, {})[method] = operation
    for path, methods in operations.items():
        spec.path(path=path, operations=methods)
    return spec.to_dict()


@openapi_bp.get("/api/openapi.json")
def openapi_document():
    return build_spec()


@openapi_bp.get("/api/docs")
def openapi_page():
    return render_template("api_docs.html", spec=build_spec())
