"""``SMS_PROVIDER=twilio``: Programmable Messaging through the official ``twilio`` SDK.

Each send is one ``POST /2010-04-01/Accounts/{sid}/Messages.json``; its answer
becomes one of the five outcomes (``base.Outcome``). Twilio has no idempotency
key, so what happens to the request decides whether it may be sent again:

- an answer (``201`` or an error body) says for certain what Twilio did;
- a connection that was never made (refused, no route, name not resolved,
  connect timeout) carried nothing: nothing was sent, so the recipient is
  ``THROTTLED`` and sent again after a pause. requests reports it as
  ``ConnectTimeout``, or as a ``ConnectionError`` whose ``MaxRetryError``
  gives urllib3's ``NewConnectionError`` (a ``ConnectTimeoutError``) as the
  reason: urllib3 raises those only while opening the socket, before a byte of
  the request is written;
- anything after that (a connection dropped once the request was written, a
  read timeout, a ``5xx``, an answer that cannot be read) may have been sent:
  ``UNKNOWN``, never sent again by the hub on its own.

The SDK sends through requests, whose sockets gevent's monkey-patching makes
cooperative: a send waiting on Twilio lets the node's other greenlets run.
Status callbacks and inbound messages arrive through the webhooks
(``services.messaging.twilio_webhooks``), which hand them to the handlers
given to ``start``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import gevent.local
import requests
from gevent.lock import BoundedSemaphore
from requests.adapters import HTTPAdapter
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client
from urllib3.exceptions import ConnectTimeoutError

from services.messaging.providers.base import (
    InboundHandler,
    InboundSms,
    Outcome,
    OutgoingSms,
    ProviderReceipt,
    ReceiptHandler,
    SubmitResult,
)

log = logging.getLogger(__name__)
# The SDK logs every request and answer at INFO (five lines a send, with the
# recipient's number in the URL's form): only its warnings are worth a line.
sdk_log = logging.getLogger(__name__ + ".sdk")
sdk_log.setLevel(logging.WARNING)

STATUS_PATH = "/api/webhooks/twilio/status"  # blueprints/webhooks.py serves it

ACCOUNT_SID = re.compile(r"^AC[0-9a-f]{32}$")
SERVICE_SID = re.compile(r"^MG[0-9a-f]{32}$")
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
# Twilio's alphanumeric sender ID: up to 11 of letters, digits and spaces, at least one letter.
ALPHANUMERIC_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")

THROTTLED_CODES = {20429, 21611}  # too many requests; the sender's queue is full
OPTED_OUT_CODE = 21610
# The hub's own word for Twilio's commonest refusals; any other 4xx is ``provider_rejected``.
REJECTION_CODES = {21211: "invalid_number", 21614: "invalid_number", 21612: "unroutable",
                   21408: "unroutable"}
# Refusals that say nothing against the number: the hub's account or settings are at
# fault, so the recipient may be retried on request once they are put right.
ACCOUNT_STATUSES = {401, 403, 404}
UNREACHABLE_PAUSE = 5.0  # seconds before a send that could not connect is tried again

_running: TwilioProvider | None = None


@dataclass(frozen=True, slots=True)
class TwilioSettings:
    """The ``TWILIO_*`` settings, checked once at start so a mistake stops the hub with
    what to fix rather than failing every send."""

    account_sid: str
    auth_token: str
    sender: str
    messaging_service_sid: str
    api_base: str
    public_base_url: str
    timeout: float
    max_in_flight: int

    def status_callback(self, recipient_id: int) -> str:
        """Where Twilio posts a send's statuses. The recipient's id rides along (signed, as
        the whole URL is), so a callback can settle a send whose answer was lost."""
        return f"{self.public_base_url}{STATUS_PATH}?recipient={recipient_id}"

    @classmethod
    def from_config(cls, config: Any) -> TwilioSettings:
        """The settings from ``app.config``; ``RuntimeError`` naming every problem."""
        settings = cls(
            account_sid=config["TWILIO_ACCOUNT_SID"].strip(),
            auth_token=config["TWILIO_AUTH_TOKEN"].strip(),
            sender=config["TWILIO_FROM"].strip(),
            messaging_service_sid=config["TWILIO_MESSAGING_SERVICE_SID"].strip(),
            api_base=config["TWILIO_API_BASE"].strip().rstrip("/"),
            public_base_url=(config["PUBLIC_BASE_URL"] or "").strip().rstrip("/"),
            timeout=config["TWILIO_TIMEOUT"], max_in_flight=config["TWILIO_MAX_IN_FLIGHT"])
        problems = settings.problems()
        if problems:
            raise RuntimeError("SMS_PROVIDER=twilio: " + "; ".join(problems))
        return settings

    def problems(self) -> list[str]:
        found = []
        if not ACCOUNT_SID.match(self.account_sid):
            found.append("TWILIO_ACCOUNT_SID must be the account's SID, AC and 32 hex digits"
                         + (f", not {self.account_sid!r}" if self.account_sid else ""))
        if not self.auth_token:
            found.append("TWILIO_AUTH_TOKEN must be set (the console's Auth Token)")
        if self.sender and self.messaging_service_sid:
            found.append("set TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID, not both")
        elif not self.sender and not self.messaging_service_sid:
            found.append("TWILIO_FROM (a number or sender ID) or TWILIO_MESSAGING_SERVICE_SID "
                         "must be set")
        elif self.sender and not (E164.match(self.sender)
                                  or ALPHANUMERIC_SENDER.match(self.sender)):
            found.append("TWILIO_FROM must be an E.164 number like +15017122661 or an "
                         f"alphanumeric sender ID of up to 11 characters, not {self.sender!r}")
        elif self.messaging_service_sid and not SERVICE_SID.match(self.messaging_service_sid):
            found.append("TWILIO_MESSAGING_SERVICE_SID must be MG and 32 hex digits, not "
                         f"{self.messaging_service_sid!r}")
        for name, url in (("TWILIO_API_BASE", self.api_base),
                          ("PUBLIC_BASE_URL", self.public_base_url)):
            parts = urlsplit(url)
            if parts.scheme not in {"http", "https"} or not parts.hostname \
                    or parts.query or parts.fragment:
                found.append(f"{name} must be an http(s) URL without query, like "
                             f"https://hub.example.com, not {url!r}" if url
                             else f"{name} must be set: the URL Twilio "
                                  f"{'is reached at' if name == 'TWILIO_API_BASE' else 'posts to'}")
        if self.timeout <= 0:
            found.append(f"TWILIO_TIMEOUT must be more than 0 seconds, not {self.timeout}")
        if self.max_in_flight < 1:
            found.append(f"TWILIO_MAX_IN_FLIGHT must be at least 1, not {self.max_in_flight}")
        return found


class HubHttpClient(TwilioHttpClient):
    """The SDK's HTTP client as the hub needs it: a connection pool as large as the sends
    in flight (requests keeps 10 per host and would drop the rest after each answer),
    no retries of its own, a timeout on every request, and the last answer's headers
    kept per greenlet, because ``TwilioRestException`` drops them and a ``429``'s
    ``Retry-After`` is among them."""

    def __init__(self, *, timeout: float, pool_size: int) -> None:
        super().__init__(timeout=timeout, logger=sdk_log)
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        for prefix in ("https://", "http://"):
            self.session.mount(prefix, adapter)
        self._answers = gevent.local.local()

    def request(self, *args: Any, **kwargs: Any) -> Response:
        self._answers.headers = None
        response = super().request(*args, **kwargs)
        self._answers.headers = response.headers
        return response

    def last_headers(self) -> Any:
        """The headers of the answer this greenlet last received, or None."""
        return getattr(self._answers, "headers", None)


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` in seconds: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def never_sent(error: requests.RequestException) -> bool:
    """Whether the request failed before any of it was written: the connection was
    never made. urllib3 raises ``ConnectTimeoutError`` (and ``NewConnectionError``, a
    subclass: refused, unreachable, name not resolved) only while opening the socket."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(reason, ConnectTimeoutError)


def outcome_of_refusal(error: TwilioRestException, headers: Any) -> SubmitResult:
    """An error answer from the Messages API, as an outcome."""
    code = str(error.code) if error.code is not None else None
    base = {"provider_error_code": code or str(error.status),
            "error_message": f"Twilio: {error.msg}" if error.msg else None}
    if error.status == 429 or error.code in THROTTLED_CODES:
        return SubmitResult(Outcome.THROTTLED, error_code="throttled",
                            retry_after=retry_after_seconds(
                                headers.get("Retry-After") if headers else None), **base)
    if error.code == OPTED_OUT_CODE:
        return SubmitResult(Outcome.OPTED_OUT, error_code="opted_out", **base)
    if error.status >= 500:
        return SubmitResult(Outcome.UNKNOWN, error_code="ambiguous_submit", **base)
    if error.status in ACCOUNT_STATUSES:
        return SubmitResult(Outcome.REJECTED, error_code="provider_account", retryable=True,
                            **base)
    return SubmitResult(Outcome.REJECTED,
                        error_code=REJECTION_CODES.get(error.code, "provider_rejected"), **base)


def outcome_of_lost_request(error: requests.RequestException, timeout: float) -> SubmitResult:
    """A request that got no answer: throttled if it never left, unknown if it may have."""
    if never_sent(error):
        return SubmitResult(Outcome.THROTTLED, error_code="provider_unreachable",
                            error_message="Twilio could not be reached; nothing was sent",
                            retry_after=UNREACHABLE_PAUSE)
    if isinstance(error, requests.Timeout):
        message = f"Twilio did not answer within {timeout:g} s; the SMS may have been sent"
    else:
        message = "The connection to Twilio was lost after the request was sent; " \
                  "the SMS may have been sent"
    return SubmitResult(Outcome.UNKNOWN, error_code="ambiguous_submit", error_message=message)


def _segments(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class TwilioProvider:
    """Sends through Twilio; at most ``max_in_flight`` requests at once on this node."""

    name = "twilio"
    exactly_once = False

    def __init__(self, settings: TwilioSettings) -> None:
        self.settings = settings
        self.sender = settings.messaging_service_sid or settings.sender
        self.max_in_flight = settings.max_in_flight
        self._in_flight = BoundedSemaphore(settings.max_in_flight)
        self._http = HubHttpClient(timeout=settings.timeout, pool_size=settings.max_in_flight)
        self._client = Client(settings.account_sid, settings.auth_token,
                              http_client=self._http)
        self._client.api.base_url = settings.api_base
        self._sender = ({"messaging_service_sid": settings.messaging_service_sid}
                        if settings.messaging_service_sid else {"from_": settings.sender})
        self._on_receipt: ReceiptHandler | None = None
        self._on_inbound: InboundHandler | None = None

    def start(self, on_receipt: ReceiptHandler, on_inbound: InboundHandler) -> None:
        """Twilio's reports come through the webhooks, which call ``receive_*`` here."""
        global _running
        self._on_receipt, self._on_inbound = on_receipt, on_inbound
        _running = self

    def stop(self) -> None:
        global _running
        if _running is self:
            _running = None
        self._http.session.close()

    def receive_receipt(self, receipt: ProviderReceipt) -> None:
        if self._on_receipt is not None:
            self._on_receipt(receipt)

    def receive_inbound(self, sms: InboundSms) -> None:
        if self._on_inbound is not None:
            self._on_inbound(sms)

    def _callback(self, sms: OutgoingSms) -> dict[str, str]:
        """A recipient's send reports its statuses; a keyword's reply (a negative id, no
        recipient) asks for none: nothing tracks it, and its callbacks would name no one."""
        if sms.recipient_id < 0:
            return {}
        return {"status_callback": self.settings.status_callback(sms.recipient_id)}

    def submit(self, sms: OutgoingSms) -> SubmitResult:
        """One send; never raises: whatever goes wrong is an outcome."""
        with self._in_flight:
            try:
                message = self._client.messages.create(
                    to=sms.phone, body=sms.body, **self._callback(sms), **self._sender)
            except TwilioRestException as error:
                return outcome_of_refusal(error, self._http.last_headers())
            except requests.RequestException as error:
                return outcome_of_lost_request(error, self.settings.timeout)
            except Exception as error:  # an answer that could not be read: it may have been sent
                log.warning("unreadable answer from Twilio for recipient %s: %s",
                            sms.recipient_id, type(error).__name__)
                return SubmitResult(Outcome.UNKNOWN, error_code="ambiguous_submit",
                                    error_message="Twilio's answer could not be read; "
                                                  "the SMS may have been sent")
        return SubmitResult(Outcome.ACCEPTED, provider_message_id=message.sid,
                            parts=_segments(message.num_segments),
                            provider_status=message.status)


def running_provider() -> TwilioProvider | None:
    """The Twilio provider this process's dispatcher started, if any: the webhooks hand it
    what Twilio posts, and check the posts with its settings."""
    return _running
