"""The API described for people and programs: ``/api/openapi.json`` (REST),
``/api/asyncapi.json`` (Socket.IO events) and ``/api/docs``, which shows both.

Both documents are built from the marshmallow schemas that validate and shape
the real traffic (``schemas/``); every body, parameter and response carries a
whole example composed from the fields' own. ``/api/docs`` renders the REST
document with the vendored Swagger UI (its "Try it out" sends the token the
page is signed in with) and the events with ``static/js/api_docs.js``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, render_template, request
from marshmallow import Schema

from blueprints.asyncapi import build_asyncapi
from blueprints.common import token_advice
from schemas import auth, inbound, messages, notifications, quotas, responses, twilio
from schemas.common import MAX_ID, MAX_USER_ID
from schemas.documentation import TITLE, VERSION, example_of, json_schema_spec
from services.auth import ACCESS_ONLY
from services.errors import AppError

openapi_bp = Blueprint("openapi", __name__)

BEARER = [{"bearer": []}]
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
METRICS_EXAMPLE = ("# TYPE hub_connections gauge\nhub_connections 3.0\n"
                   "# TYPE hub_events_in_total counter\nhub_events_in_total{event=\"pong\"} 12.0\n")


@dataclass(frozen=True)
class Document:
    """An answer that is no marshmallow shape: a text format, or another specification's."""

    media_type: str
    schema: dict[str, Any]
    example: Any


METRICS = Document("text/plain", {"type": "string"}, METRICS_EXAMPLE)
EMPTY_TWIML = Document("text/xml", {"type": "string", "description": "empty TwiML: no reply"},
                       "<Response/>")
REPORT = Document("text/csv", {"type": "string"},
                  "phone,status,providerStatus,errorCode,providerErrorCode,parts,cost,sentAt,"
                  "deliveredAt\r\n'+15005550001,FAILED,,invalid_number,,1,0.0000,"
                  "2026-05-01T09:30:01.000Z,\r\n")
OPENAPI = Document(JSON, {"type": "object", "required": ["openapi", "info", "paths"],
                          "description": "OpenAPI 3.1: this document"},
                   {"openapi": "3.1.0", "info": {"title": TITLE, "version": VERSION}, "paths": {}})
ASYNCAPI = Document(JSON, {"type": "object", "required": ["asyncapi", "info", "operations"],
                           "description": "AsyncAPI 3.0: the Socket.IO events"},
                    {"asyncapi": "3.0.0", "info": {"title": TITLE, "version": VERSION},
                     "operations": {}})


@dataclass(frozen=True, kw_only=True)
class Route:
    """One REST route: what it takes and what it answers."""

    path: str
    method: str
    summary: str
    answer: type[Schema] | Document
    status: str = "200"
    body: type[Schema] | None = None
    form: type[Schema] | None = None
    query: type[Schema] | None = None
    path_ids: tuple[str, ...] = ()
    path_phone: bool = False  # ``{phone}`` in the path: an E.164 number
    errors: dict[str, str] = field(default_factory=dict)
    access: str = "bearer"  # "bearer", "admin", "public", "refresh"
    description: str = ""
    headers: tuple[dict[str, Any], ...] = ()


IDEMPOTENCY_KEY = {"in": "header", "name": "Idempotency-Key", "required": False,
                   "description": "A retry with the same key (per caller, kept 24 h) gets the "
                                  "first answer; the same key with another body is 409",
                   "schema": {"type": "string", "maxLength": 255},
                   "example": "invoice-2026-05-1"}

ROUTES = [
    Route(path="/api/auth/register", method="post", summary="Create an account",
          body=auth.RegisterSchema, answer=responses.UserEnvelopeSchema, status="201",
          access="public", errors={"403": "Registration closed"},
          description="A taken email gets the same answer as a new one, and changes nothing."),
    Route(path="/api/auth/login", method="post", summary="Log in: an access and a refresh token",
          body=auth.LoginSchema, answer=responses.LoginResponseSchema, access="public",
          description="`make run` prints the demo admin's password on its first run."),
    Route(path="/api/auth/refresh", method="post", summary="A new access token",
          answer=responses.AccessTokenSchema, access="refresh",
          description="Send the **refresh** token as the bearer token."),
    Route(path="/api/auth/logout", method="post", summary="Revoke the presented token",
          answer=responses.RevokedSchema,
          description="Access or refresh token; its live sockets are dropped within a second."),
    Route(path="/api/auth/me", method="get", summary="The caller",
          answer=responses.MeSchema),
    Route(path="/api/socket/stats", method="get", summary="Connections per node",
          answer=responses.StatsSchema, access="admin"),
    Route(path="/api/socket/user/{userId}/online", method="get",
          summary="Whether a user is online", path_ids=("userId",),
          answer=responses.OnlineSchema, errors={"403": "Only yourself, or admins"}),
    Route(path="/api/socket/online-count", method="get", summary="Distinct users online",
          answer=responses.CountSchema),
    Route(path="/api/socket/notify/{userId}", method="post",
          summary="Store a notification for a user, then emit it", path_ids=("userId",),
          body=notifications.NotifySchema, answer=responses.NotifyResponseSchema,
          status="201", access="admin", headers=(IDEMPOTENCY_KEY,),
          errors={"404": "No such user", "409": "Idempotency-Key reused with another body"}),
    Route(path="/api/socket/broadcast", method="post", summary="Notify every user",
          body=notifications.BroadcastSchema, answer=responses.BroadcastResponseSchema,
          status="201", access="admin", headers=(IDEMPOTENCY_KEY,),
          errors={"409": "Idempotency-Key reused with another body"}),
    Route(path="/api/socket/ping", method="post", summary="Emit `ping` to every connection",
          answer=responses.PingResponseSchema, access="admin"),
    Route(path="/api/socket/debug/internals", method="get",
          summary="Sizes of this process's per-connection structures",
          answer=responses.InternalsSchema, access="admin",
          errors={"404": "HUB_DEBUG_INTERNALS is off"}),
    Route(path="/api/notifications", method="get",
          summary="The caller's notifications, newest first",
          query=notifications.NotificationQuerySchema, answer=responses.NotificationPageSchema),
    Route(path="/api/notifications/{notificationId}/read", method="post",
          summary="Mark one notification read", path_ids=("notificationId",),
          answer=responses.MarkReadSchema, errors={"404": "Not found"}),
    Route(path="/api/notifications/read-all", method="post", summary="Mark all read",
          answer=responses.CountSchema),
    Route(path="/api/messages", method="post", summary="Send a message to many phones",
          body=messages.MessageCreateSchema, answer=responses.MessageCreatedSchema, status="202",
          headers=(IDEMPOTENCY_KEY,),
          description="Accepted at once; delivery runs in the background and drives "
                      "`message_update` and `recipient_update`. With the simulated provider "
                      "test numbers give each outcome (`+15005550001` fails as an invalid "
                      "number; docs/providers.md lists them).",
          errors={"409": "Idempotency-Key reused with another body"}),
    Route(path="/api/messages/preview", method="post",
          summary="What a message would cost, and what would be refused, without sending",
          body=messages.MessageCreateSchema, answer=responses.MessagePreviewSchema,
          description="The body of `POST /api/messages`; nothing is stored or sent. `cost` "
                      "is each recipient's segments times its country's price (`SMS_PRICES`, "
                      "else `SMS_PRICE_PER_SEGMENT`): the final cost when every recipient is "
                      "accepted."),
    Route(path="/api/messages", method="get", summary="The caller's messages, newest first",
          query=messages.MessageListQuerySchema, answer=responses.MessagePageSchema),
    Route(path="/api/messages/{messageId}", method="get",
          summary="One message with counts and cost", path_ids=("messageId",),
          answer=responses.MessageSchema, errors={"404": "Not found"}),
    Route(path="/api/messages/{messageId}/retry", method="post",
          summary="Queue the UNKNOWN, EXPIRED and retryable FAILED recipients again",
          path_ids=("messageId",), answer=responses.RetryResultSchema,
          description="Owner or admin. An explicit new attempt: those recipients go back to "
                      "`PENDING` with a higher `version`, the message back to `SENDING` (a "
                      "paused one stays `PAUSED`).",
          errors={"404": "Not found", "409": "The message was canceled"}),
    Route(path="/api/messages/{messageId}/pause", method="post",
          summary="Hold a scheduled or sending message", path_ids=("messageId",),
          answer=responses.MessageSchema,
          description="Owner or admin. Within one second no node submits any further "
                      "recipient of the message; those not yet submitted stay `PENDING` "
                      "until `resume`. The message is `PAUSED`.",
          errors={"404": "Not found", "409": "The message is not scheduled or sending"}),
    Route(path="/api/messages/{messageId}/resume", method="post",
          summary="Send a paused message again", path_ids=("messageId",),
          answer=responses.MessageSchema,
          description="Owner or admin. The message is `SENDING` again (or final, when "
                      "every recipient settled while it was paused).",
          errors={"404": "Not found", "409": "The message is not paused"}),
    Route(path="/api/messages/{messageId}/cancel", method="post",
          summary="End a message that is not final", path_ids=("messageId",),
          answer=responses.MessageSchema,
          description="Owner or admin. Within one second no node submits any further "
                      "recipient; every recipient not yet submitted becomes `CANCELED` "
                      "(`errorCode` `canceled`, no cost) and so does the message.",
          errors={"404": "Not found",
                  "409": "The message is not scheduled, sending or paused"}),
    Route(path="/api/messages/{messageId}/recipients", method="get",
          summary="A message's recipients, paged", path_ids=("messageId",),
          query=messages.RecipientListQuerySchema, answer=responses.RecipientPageSchema,
          errors={"404": "Not found"}),
    Route(path="/api/messages/{messageId}/report.csv", method="get",
          summary="A message's recipients as CSV, streamed", path_ids=("messageId",),
          answer=REPORT, errors={"404": "Not found"},
          description="One row per recipient in recipient order. A cell starting with `=`, "
                      "`+`, `-`, `@`, a tab or a carriage return has a `'` in front, so that "
                      "no spreadsheet runs it as a formula."),
    Route(path="/api/users/{userId}/quota", method="get",
          summary="A user's daily recipient quota and today's use", path_ids=("userId",),
          answer=responses.QuotaSchema,
          errors={"403": "Only yourself, or admins", "404": "No such user"}),
    Route(path="/api/users/{userId}/quota", method="put",
          summary="Set a user's daily recipient quota", path_ids=("userId",),
          body=quotas.QuotaUpdateSchema, answer=responses.QuotaSchema, access="admin",
          errors={"404": "No such user"}),
    Route(path="/api/webhooks/delivery", method="post",
          summary="Delivery receipts from the SMS provider", access="public",
          body=messages.DeliveryReceiptSchema, answer=responses.ReceiptResultSchema,
          description="One receipt or a list, signed as a whole: `X-Signature` is the "
                      "hex HMAC-SHA256 of the raw body with `WEBHOOK_SECRET`.",
          headers=({"in": "header", "name": "X-Signature", "required": True,
                    "schema": {"type": "string"}, "example": "sha256=" + "0f" * 32},),
          errors={"401": "Invalid signature"}),
    *(Route(path=f"/api/webhooks/twilio/{kind}", method="post", summary=summary,
            access="public", form=form, query=query, answer=EMPTY_TWIML,
            description="Posted by Twilio, signed: `X-Twilio-Signature` is the SDK's "
                        "`RequestValidator` signature, with `TWILIO_AUTH_TOKEN`, of "
                        f"`PUBLIC_BASE_URL` + `/api/webhooks/twilio/{kind}` (+ query) and the "
                        "form parameters. Other parameters Twilio sends are ignored.",
            headers=({"in": "header", "name": "X-Twilio-Signature", "required": True,
                      "schema": {"type": "string"},
                      "example": "0KRuFQU7xlDjNrMHFLLs0H5AE5s="},),
            errors={"403": "Not signed by Twilio for this URL and these parameters, or "
                           "SMS_PROVIDER is not twilio: nothing changed"})
      for kind, summary, form, query in (
          ("status", "Twilio's status callbacks for the SMS the hub sent",
           twilio.TwilioStatusCallbackSchema, twilio.TwilioStatusQuerySchema),
          ("inbound", "SMS sent to the hub's Twilio number", twilio.TwilioInboundSchema,
           None))),
    Route(path="/api/inbound", method="get",
          summary="Inbound messages, newest first: an admin's all, a user's those shown to them",
          query=inbound.InboundListQuerySchema, answer=responses.InboundPageSchema,
          description="A user sees the replies from numbers their latest message to that "
                      "number went to; each also arrives live as `inbound_message`."),
    Route(path="/api/simulator/inbound", method="post",
          summary="Inject an inbound message, as a provider would hand it over",
          body=inbound.SimulatedInboundSchema, answer=responses.InboundMessageSchema,
          status="201", access="admin",
          description="Only with `SMS_PROVIDER=simulated`: runs the whole inbound path "
                      "(storage, keywords, suppression, replies, `inbound_message`).",
          errors={"404": "Not the simulated provider"}),
    Route(path="/api/suppressions", method="get", summary="The suppression list, newest first",
          query=inbound.SuppressionListQuerySchema, answer=responses.SuppressionPageSchema,
          access="admin"),
    Route(path="/api/suppressions", method="post", summary="Never send to a number",
          body=inbound.SuppressionCreateSchema, answer=responses.SuppressionSchema,
          status="201", access="admin",
          description="`sender` defaults to `*` (every sender), `reason` to `manual`; an "
                      "entry already there for the number and sender is kept and returned."),
    Route(path="/api/suppressions/{phone}", method="delete",
          summary="Remove a number's entry for a sender, or all its entries",
          path_phone=True, query=inbound.SuppressionDeleteQuerySchema,
          answer=responses.RemovedSchema, access="admin"),
    Route(path="/api/phones/{phone}", method="delete",
          summary="Erase a person's number everywhere",
          path_phone=True, answer=responses.ErasureSchema, access="admin",
          description="Recipients and inbound messages keep their statuses and counts; the "
                      "number becomes `erased:<hash>` and inbound texts are cleared; an "
                      "opt-out stays (reason `erased`), so the number is still never sent to."),
    Route(path="/api/analytics/dashboard", method="get", summary="The caller's dashboard_stats",
          answer=responses.DashboardStatsSchema),
    Route(path="/api/analytics/messages", method="get", summary="The caller's message_stats",
          answer=responses.MessageStatsSchema),
    Route(path="/api/analytics/usage", method="get", summary="The caller's usage_stats",
          answer=responses.UsageStatsSchema),
    Route(path="/api/analytics/global", method="get", summary="System-wide figures",
          answer=responses.GlobalStatsSchema, access="admin"),
    Route(path="/healthz", method="get", summary="The process runs (no I/O)",
          answer=responses.HealthSchema, access="public"),
    Route(path="/readyz", method="get",
          summary="Ready to serve: the database and, with a queue, Redis answer",
          answer=responses.ReadySchema, access="public",
          errors={"503": "Not ready: the failing checks in error.details"}),
    Route(path="/metrics", method="get", summary="Prometheus metrics (text format)",
          answer=METRICS, access="public",
          description="With `METRICS_TOKEN` set, send it as the bearer token; without it, "
                      "only loopback scrapers are served.",
          errors={"403": "Not loopback, or not the metrics token"}),
    Route(path="/api/openapi.json", method="get", summary="The REST routes (this document)",
          answer=OPENAPI, access="public"),
    Route(path="/api/asyncapi.json", method="get", summary="The Socket.IO events",
          answer=ASYNCAPI, access="public"),
]

# Answered by every route of its kind, besides its own errors (docs/API.md, "Error codes").
COMMON_ERRORS = {"400": "Invalid input: marshmallow's messages in error.details",
                 "429": "Rate limited"}
BODY_ERRORS = {"400": "Invalid input: marshmallow's messages in error.details, a body that "
                      "is not JSON (invalid_json, with the line and column), or one not sent "
                      "with Content-Type: application/json (unsupported_media_type)",
               "413": "Body larger than MAX_CONTENT_LENGTH (both sizes in the message)"}
TOKEN_REFUSED = ("{} token missing, invalid, expired or revoked: error.code says which "
                 "(auth_required, invalid_token, token_expired, token_revoked, user_not_found) "
                 "and the message what to do")
ACCESS_ERRORS = {"bearer": {"401": TOKEN_REFUSED.format("Access")},
                 "refresh": {"401": TOKEN_REFUSED.format("Refresh")},
                 "admin": {"401": TOKEN_REFUSED.format("Access"), "403": "Admins only"},
                 "public": {}}
# The example of a refused token: the commonest cause.
TOKEN_REFUSED_EXAMPLE = ("token_expired",
                         f"Token expired: {token_advice('token_expired', ACCESS_ONLY)}")


def _json(schema: type[Schema]) -> dict[str, Any]:
    return {JSON: {"schema": schema, "example": example_of(schema)}}


# The first error of each status is its general one (``rate_limited`` before ``quota_exceeded``).
ERROR_CODES: dict[int, str] = {}
for _error_class in AppError.__subclasses__():
    ERROR_CODES.setdefault(_error_class.status, _error_class.code)


def _error(status: str, text: str, example: tuple[str, str] | None = None) -> dict[str, Any]:
    """An error answer, its example carrying the code that status has (services/errors.py),
    or ``example``'s code and message."""
    body = example_of(responses.ErrorSchema)
    code, message = example or (ERROR_CODES[int(status)], text)
    body["error"] = {**body["error"], "code": code, "message": message}
    if status != "400":
        del body["error"]["details"]
    return {"description": text, "content": {JSON: {"schema": responses.ErrorSchema,
                                                    "example": body}}}


PATH_PHONE = {"in": "path", "name": "phone", "required": True,
              "schema": {"type": "string", "minLength": 1, "maxLength": 32},
              "description": "E.164, `+` written `%2B`", "example": "+15551234567"}


def _path_id(name: str) -> dict[str, Any]:
    maximum = MAX_USER_ID if name == "userId" else MAX_ID
    return {"in": "path", "name": name, "required": True,
            "schema": {"type": "integer", "minimum": 1, "maximum": maximum}, "example": 1}


def _success(route: Route) -> dict[str, Any]:
    if isinstance(route.answer, Document):
        return {"description": "OK", "content": {route.answer.media_type: {
            "schema": route.answer.schema, "example": route.answer.example}}}
    return {"description": "OK", "content": _json(route.answer)}


def _operation(route: Route) -> dict[str, Any]:
    errors = {**COMMON_ERRORS, **(BODY_ERRORS if route.body else {}),
              **ACCESS_ERRORS[route.access], **route.errors}
    token_refused = route.access != "public"
    operation: dict[str, Any] = {
        "summary": route.summary + (" (admin)" if route.access == "admin" else ""),
        "tags": [route.path.split("/")[2] if route.path.startswith("/api/") else "operations"],
        "security": [] if route.access == "public" else BEARER,
        "responses": {
            route.status: _success(route),
            **{status: _error(status, text,
                              TOKEN_REFUSED_EXAMPLE if status == "401" and token_refused else None)
               for status, text in sorted(errors.items())},
        },
    }
    if route.description:
        operation["description"] = route.description
    parameters = [*map(_path_id, route.path_ids), *route.headers]
    if route.path_phone:
        parameters.insert(0, PATH_PHONE)
    if route.query is not None:
        parameters.append({"in": "query", "schema": route.query})
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        operation["requestBody"] = {"required": True, "content": _json(route.body)}
    if route.form is not None:
        operation["requestBody"] = {"required": True, "content": {FORM: {
            "schema": route.form, "example": example_of(route.form)}}}
    return operation


@functools.cache
def build_openapi() -> dict[str, Any]:
    """The OpenAPI 3 document of every REST route (built once: it never changes at run time)."""
    spec, _ = json_schema_spec(info={
        "description": "The REST half of the hub's interface (`docs/API.md`). Send "
                       "`Authorization: Bearer <access token>`: on `/api/docs` the token of "
                       "the signed-in page is used. The Socket.IO events are in "
                       "`/api/asyncapi.json`."})
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer",
                                               "bearerFormat": "JWT"})
    operations: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        operations.setdefault(route.path, {})[route.method] = _operation(route)
    for path, methods in operations.items():
        spec.path(path=path, operations=methods)
    return spec.to_dict()


@openapi_bp.get("/api/openapi.json")
def openapi_document():
    return build_openapi()


@openapi_bp.get("/api/asyncapi.json")
def asyncapi_document():
    return build_asyncapi(request.host)


@openapi_bp.get("/api/docs")
def openapi_page():
    return render_template("api_docs.html")
