"""Settings for every environment, read from the environment in this one place.

Each setting is declared once, in ``SETTINGS``: its variable, its default
(and the default of an environment that differs), its kind and what it
means. The README's configuration table is generated from it (``make docs``;
``tests/test_settings.py`` fails when the README is stale), and a serving
process logs the settings in effect when it starts, secrets masked. Adding a
setting is one ``Setting(...)`` line here, then ``make docs``.

Nothing else in the project reads ``os.environ``: services get their settings
from ``current_app.config`` so that tests and benchmarks can override them.
"""

from __future__ import annotations

import os
import secrets
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import time, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

BASE_DIR = Path(__file__).resolve().parent
INSTANCE_DIR = BASE_DIR / "instance"
ENVIRONMENTS = ("development", "testing", "production")


# Kinds: how a variable's text becomes a value, and how a value is shown --------------------

@dataclass(frozen=True)
class Kind:
    """``parse`` turns the variable's text into the value (``ValueError`` if it cannot);
    ``show`` writes a value for the README and the start-up line, masking secrets."""

    expects: str
    parse: Callable[[str], Any]
    show: Callable[[Any], str] = str


def _parse_flag(text: str) -> bool:
    value = text.lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError(text)


def _parse_proxy_hops(text: str) -> int:
    """``0``/``false`` (none), ``1``/``true`` (one) or a count; a wrong guess lets clients
    choose their own address, so anything else stops the start."""
    value = text.lower()
    if value in {"false", "no", "off"}:
        return 0
    if value in {"true", "yes", "on"}:
        return 1
    if value.isdigit():
        return int(value)
    raise ValueError(text)


def _parse_names(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _parse_decimal(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise ValueError(text) from None


def _parse_window(text: str) -> tuple[time, time]:
    """``21:00-08:00``: from the first time of day to the second, across midnight if earlier."""
    start, separator, end = text.partition("-")
    if not separator:
        raise ValueError(text)
    window = (time.fromisoformat(start.strip()), time.fromisoformat(end.strip()))
    if window[0] == window[1]:
        raise ValueError(text)
    return window


def _show_window(value: tuple[time, time]) -> str:
    return "-".join(moment.strftime("%H:%M") for moment in value)


def _show_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _show_secret(value: str) -> str:
    return "***" if value else ""


SECRET_QUERY_KEYS = ("password", "token", "secret")


def mask_url(url: str) -> str:
    """The URL with its password, and any ``password``/``token``/``secret`` query value,
    replaced by ``***``: what a log line may say about a database or Redis URL."""
    parts = urlsplit(url)
    netloc, query = parts.netloc, parts.query
    if parts.password is not None:
        netloc = f"{parts.username or ''}:***@{netloc.rpartition('@')[2]}"
    if any(word in query.lower() for word in SECRET_QUERY_KEYS):
        query = "&".join(
            f"{key}=***" if sep and any(word in key.lower() for word in SECRET_QUERY_KEYS)
            else f"{key}{sep}{value}"
            for key, sep, value in (item.partition("=") for item in query.split("&")))
    if (netloc, query) == (parts.netloc, parts.query):
        return url  # urlunsplit would also drop the empty host of ``sqlite:////path``
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _normalise_database_url(url: str) -> str:
    """Let operators paste the usual ``postgres://`` URL; SQLAlchemy wants a driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def one_of(*choices: str) -> Kind:
    """Exactly one of ``choices`` (any letter case)."""
    by_lower = {choice.lower(): choice for choice in choices}

    def parse(text: str) -> str:
        return by_lower[text.lower()]

    return Kind(f"one of {', '.join(choices)}", parse)


TEXT = Kind("text", str)
INTEGER = Kind("a whole number", int)
NUMBER = Kind("a number", float, _show_number)
FLAG = Kind("true or false (1/0, yes/no, on/off)", _parse_flag,
            lambda value: "true" if value else "false")
NAMES = Kind("a comma-separated list", _parse_names, ",".join)
DECIMAL = Kind("a decimal number", _parse_decimal)
SECONDS = Kind("a whole number of seconds", lambda text: timedelta(seconds=int(text)),
               lambda value: str(int(value.total_seconds())))
PROXY_HOPS = Kind("a number of proxy hops (0, 1, 2, ...) or true/false", _parse_proxy_hops)
SECRET = Kind("text", str, _show_secret)
URL = Kind("a URL", str, mask_url)
DATABASE_URL = Kind("an SQLAlchemy URL", _normalise_database_url, mask_url)
WINDOW = Kind("two different times of day, HH:MM-HH:MM", _parse_window, _show_window)


# Declarations ------------------------------------------------------------------------------

_SAME = object()


@dataclass(frozen=True)
class Fixed:
    """An environment's value that its variable does not change: the testing keys, which
    the tests sign with whatever the shell running them exports."""

    value: Any


@dataclass(frozen=True)
class Setting:
    """One environment variable. ``default`` is every environment's unless ``testing``,
    ``production`` or ``development`` says otherwise; a callable default is computed from the
    settings declared before it. ``documented`` replaces the README's default cell where the
    values alone would mislead (a generated key, a path inside the checkout)."""

    name: str
    default: Any
    meaning: str
    kind: Kind = TEXT
    key: str | None = None
    development: Any = _SAME
    testing: Any = _SAME
    production: Any = _SAME
    documented: str | None = None

    @property
    def config_key(self) -> str:
        """Where the value lives in ``app.config`` (the variable's name unless told)."""
        return self.key or self.name

    def default_for(self, environment: str, earlier: Mapping[str, Any]) -> Any:
        """The default in ``environment`` (``base``: the shared one); ``earlier`` holds the
        values of the settings declared before this one, for a computed default."""
        default = getattr(self, environment, _SAME) if environment in ENVIRONMENTS else _SAME
        default = self.default if default is _SAME else default
        if isinstance(default, Fixed):
            return default.value
        return default(earlier) if callable(default) else default

    def read(self, environment: str, environ: Mapping[str, str],
             earlier: Mapping[str, Any] | None = None) -> Any:
        """The value in ``environment``: the variable when set and not blank (and not
        ``Fixed`` there), else the default. A value that does not parse stops the start
        with what was expected."""
        text = (environ.get(self.name) or "").strip()
        if not text or isinstance(getattr(self, environment, None), Fixed):
            return self.default_for(environment, earlier or {})
        try:
            return self.kind.parse(text)
        except (ValueError, KeyError):
            raise RuntimeError(f"{self.name} must be {self.kind.expects}, not {text!r}") from None

    def show(self, value: Any) -> str:
        """The value as the README and the start-up line write it; ``unset`` when empty."""
        if value is None or value == "" or value == []:
            return "unset"
        return self.kind.show(value)


ENVIRONMENT = Setting(
    "HUB_ENV", "development",
    "which environment's defaults apply: `development`, `testing` or `production`; "
    "production refuses to start on unsafe settings", one_of(*ENVIRONMENTS), key="ENV_NAME")

# The groups are the README's sub-tables, in this order.
SETTINGS: dict[str, tuple[Setting, ...]] = {
    "Serving": (
        ENVIRONMENT,
        Setting("HOST", "127.0.0.1", "address `python app.py` listens on (gunicorn: its `-b`)"),
        Setting("PORT", 5000, "port `python app.py` listens on", INTEGER),
        Setting("NODE_ID", None,
                "this node's name in the `nodes` and `connections` tables; keep it stable "
                "across restarts, so that a node that starts takes over the rows of its "
                "previous run", documented="`hostname:PORT` (`hostname:pidN` under gunicorn)"),
        Setting("LOG_LEVEL", "INFO", "`DEBUG`, `INFO`, `WARNING`, `ERROR` or `CRITICAL`",
                one_of("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")),
        Setting("LOG_FORMAT", "text", "`text`, or `json` for one JSON object per line",
                one_of("text", "json")),
        Setting("HUB_DEBUG_INTERNALS", False,
                "serves `GET /api/socket/debug/internals` (admins): this process's "
                "per-connection structures; never in production", FLAG, testing=True),
    ),
    "Database and message queue": (
        Setting("DATABASE_URL", f"sqlite:///{INSTANCE_DIR / 'hub.db'}",
                "any SQLAlchemy URL; `postgresql://...` in production (`postgres://` is "
                "accepted)", DATABASE_URL, key="SQLALCHEMY_DATABASE_URI",
                testing="sqlite:///:memory:",
                documented="`sqlite:///instance/hub.db` (in the checkout); testing: "
                           "`sqlite:///:memory:`"),
        Setting("DATABASE_POOL_SIZE", 20,
                "connections a process keeps open to a database server (not SQLite): every "
                "request or event that reads or writes holds one, and each one opened past the "
                "pool is closed again after use, a new server process per burst", INTEGER),
        Setting("DATABASE_MAX_OVERFLOW", 10,
                "connections opened past the pool in a burst, closed after use; callers past "
                "both wait for one", INTEGER),
        Setting("SOCKETIO_MESSAGE_QUEUE", None,
                "e.g. `redis://127.0.0.1:6379/0`: several processes or machines share rooms "
                "and emits", URL, documented="unset: one process"),
        Setting("SOCKETIO_CHANNEL", None,
                "the queue's pub/sub channel; Redis ignores the `/N` of the URL for pub/sub, "
                "so each deployment needs its own, and a node that finds another deployment "
                "on its channel refuses to start", documented="named after the database"),
        Setting("RATELIMIT_STORAGE_URI",
                lambda earlier: earlier["SOCKETIO_MESSAGE_QUEUE"] or "memory://",
                "where the REST rate limits count (a Flask-Limiter storage URI): with Redis "
                "every node of the deployment shares the counts, kept under its "
                "`SOCKETIO_CHANNEL`", URL,
                documented="`SOCKETIO_MESSAGE_QUEUE` when set, else `memory://` (per process)"),
    ),
    "Security": (
        Setting("JWT_SECRET_KEY", "", "HS256 key for tokens", SECRET,
                testing=Fixed("testing-secret-key-long-enough-for-hs512-0123456789abcdef0123456"),
                documented="development: a random key kept in `instance/`; testing: a fixed "
                           "key; production: required (≥ 32 characters)"),
        Setting("JWT_ACCESS_TOKEN_SECONDS", timedelta(seconds=900),
                "lifetime of an access token", SECONDS, key="JWT_ACCESS_TOKEN_EXPIRES"),
        Setting("JWT_REFRESH_TOKEN_SECONDS", timedelta(days=30),
                "lifetime of a refresh token", SECONDS, key="JWT_REFRESH_TOKEN_EXPIRES"),
        Setting("JWT_DECODE_LEEWAY", 10,
                "seconds of clock difference allowed when checking a token's expiry and "
                "issue time", INTEGER),
        Setting("WEBHOOK_SECRET", "", "HMAC key of delivery receipts", SECRET,
                testing=Fixed("testing-webhook-secret"),
                documented="development: a random key kept in `instance/`; testing: a fixed "
                           "key; production: required"),
        Setting("PHONE_HASH_KEY", lambda earlier: earlier["JWT_SECRET_KEY"],
                "HMAC key of the hash that replaces an erased phone number and by which the "
                "suppression list finds numbers; keep it stable: a new key makes every "
                "existing suppression entry unmatched", SECRET,
                testing=Fixed("testing-phone-hash-key"),
                documented="`JWT_SECRET_KEY`"),
        Setting("METRICS_TOKEN", "",
                "bearer token for `/metrics`; production serves `/metrics` only with it, "
                "development without it to loopback clients", SECRET),
        Setting("CORS_ALLOWED_ORIGINS", [],
                "comma-separated browser origins allowed besides the hub's own; production "
                "refuses `*`", NAMES, documented="same origin only"),
        Setting("TRUST_PROXY_HEADERS", 0,
                "proxies in front of the hub that append to `X-Forwarded-For` (`0`/`false`, "
                "`1`/`true`, `2`, ...): the client is that many entries from the right",
                PROXY_HOPS),
        Setting("REGISTRATION_ENABLED", True,
                "whether `POST /api/auth/register` is open (otherwise create users with "
                "`make admin` or `flask users create`)", FLAG, production=False),
        Setting("TOKEN_CACHE_SECONDS", 1.0,
                "how long a verified token is trusted again without decoding it or asking "
                "the blocklist (a logout on another node takes effect within this)", NUMBER),
        Setting("USER_CACHE_SECONDS", 30.0,
                "how long an account is cached for connects and REST calls (`flask users` "
                "changes empty the cache on every node within a second)", NUMBER),
    ),
    "Limits": (
        Setting("MAX_CONTENT_LENGTH", 1024 * 1024,
                "largest REST request body in bytes; a larger one is refused `413` "
                "`payload_too_large`", INTEGER),
        Setting("MAX_MESSAGE_SIZE", 16 * 1024, "largest Socket.IO message in bytes", INTEGER),
        Setting("HTTP_HEADER_TIMEOUT", 10.0,
                "seconds a connection has to send a whole request head, from its accept or its "
                "previous response (slowloris); long polls and WebSockets are not timed after "
                "their head", NUMBER),
        Setting("MAX_CONNECTIONS_PER_USER", 20,
                "sockets one user may hold across the cluster (per node without Redis, or while "
                "Redis cannot be reached); the next is refused `too_many_connections`", INTEGER),
        Setting("MAX_CONNECTIONS_PER_ADDRESS", 200,
                "Engine.IO sessions one address may hold on a node, counted from their "
                "first request, authenticated or not", INTEGER, testing=100_000),
        Setting("CONNECT_TIMEOUT", 10.0,
                "seconds a session may stay open without an authenticated Socket.IO "
                "connection (from its first request, or since it lost its connection)", NUMBER),
        Setting("MAX_ROOMS_PER_CONNECTION", 128,
                "rooms one socket may join besides its own; past it `join_room` is "
                "`forbidden`", INTEGER),
        Setting("MAX_OUTBOUND_PACKETS", 10_000,
                "packets waiting to be written to one client; a client that falls further "
                "behind is dropped", INTEGER),
        Setting("EVENT_RATE", 20.0,
                "events per second one socket may send; more are answered `rate_limited`, "
                "and a socket that keeps on is disconnected", NUMBER, testing=200.0),
        Setting("EVENT_BURST", 40.0, "events one socket may send at once", NUMBER,
                testing=400.0),
        Setting("EVENT_BYTES_PER_SECOND", 64.0 * 1024,
                "bytes per second one socket may send in events", NUMBER),
        Setting("EVENT_BYTES_BURST", 256.0 * 1024, "bytes one socket may send at once", NUMBER),
        Setting("SNAPSHOT_RATE", 500.0,
                "each user's budget for snapshots on a node, in rows a second: `track_message` "
                "costs a row per event it sends (batched: a row per 10 recipients), "
                "`subscribe_analytics` 150 (300 for an admin); "
                "past it they are answered `rate_limited`", NUMBER, testing=100_000.0),
        Setting("SNAPSHOT_BURST", 1000.0, "the same budget's rows at once", NUMBER,
                testing=100_000.0),
        Setting("LOGIN_RATE_LIMIT", "10/minute", "failed logins per address and account",
                testing="100000/minute"),
        Setting("LOGIN_ACCOUNT_RATE_LIMIT", "20/minute;100/hour",
                "failed logins per account from every address (while spent, the account's "
                "owner waits too)", testing="100000/minute"),
        Setting("LOGIN_ADDRESS_RATE_LIMIT", "20/minute;200/hour",
                "failed logins per address on every account", testing="100000/minute"),
        Setting("REGISTER_RATE_LIMIT", "20/hour", "registrations per address",
                testing="100000/minute"),
        Setting("MESSAGES_RATE_LIMIT", "120/minute", "`POST /api/messages` per caller",
                testing="100000/minute"),
        Setting("DAILY_RECIPIENT_QUOTA", 10_000,
                "recipients one user's messages may have per UTC day; over it "
                "`POST /api/messages` answers `429` `quota_exceeded`. Per user: "
                "`PUT /api/users/<id>/quota` (admins) or `flask users quota EMAIL --daily N`",
                INTEGER, testing=1_000_000),
    ),
    "Sockets and nodes": (
        Setting("SOCKETIO_PING_INTERVAL", 25, "seconds between Engine.IO pings", INTEGER),
        Setting("SOCKETIO_PING_TIMEOUT", 20,
                "seconds to wait for a client's answer to a ping before closing", INTEGER),
        Setting("AUTH_EXPIRY_WARNING_SECONDS", 60.0,
                "how long before its token expires a socket receives `auth_expiring`", NUMBER),
        Setting("AUTH_EXPIRED_GRACE_SECONDS", 10.0,
                "seconds a socket whose token expired may stay to send `authenticate`",
                NUMBER, testing=3.0),
        Setting("NODE_HEARTBEAT_INTERVAL", 3.0,
                "seconds between a node's heartbeats in the `nodes` table", NUMBER,
                testing=0.5),
        Setting("NODE_TTL", 15.0,
                "seconds without heartbeat after which a node is dead: its connections stop "
                "counting and the next live node deletes them", NUMBER, testing=3.0),
        Setting("CONNECTION_FLUSH_INTERVAL", 0.2,
                "seconds between batched writes of connection state", NUMBER, testing=0.05),
    ),
    "Messages and analytics": (
        Setting("SMS_PROVIDER", "simulated",
                "who sends the SMS: `simulated` (built in, sends nothing: it answers after "
                "`SIMULATED_SMS_LATENCY` and reports delivery after `SIMULATED_RECEIPT_DELAY`), "
                "`twilio` or `smpp` (see docs/providers.md)",
                one_of("simulated", "twilio", "smpp")),
        Setting("SMS_MAX_PER_SECOND",
                lambda earlier: None if earlier["SMS_PROVIDER"] == "simulated" else 30.0,
                "most submissions per second per sender, all nodes together (counted in Redis "
                "with `SOCKETIO_MESSAGE_QUEUE`, else per process); a throttled answer halves "
                "it for a while", NUMBER,
                documented="30 for `twilio` and `smpp`; unset (no pace) for `simulated`"),
        Setting("SMS_VALIDITY_SECONDS", 14_400.0,
                "a recipient not submitted within this long after it could first be sent "
                "becomes `EXPIRED`, never sent", NUMBER),
        Setting("RECEIPT_TIMEOUT_SECONDS", 259_200.0,
                "a `SENT` recipient without a final receipt after this long becomes `UNKNOWN` "
                "(`no_receipt`); a later receipt still settles it", NUMBER),
        Setting("SMS_PRICE_PER_SEGMENT", Decimal("0.0075"),
                "cost of one SMS segment to a country `SMS_PRICES` does not list", DECIMAL),
        Setting("QUIET_HOURS", None,
                "the window of local time (`21:00-08:00`, across midnight when the end is "
                "earlier) in which a message sent with `quietHours: true` reaches no "
                "recipient, in each recipient's own time zone(s); unset: `quietHours` "
                "holds nothing back", WINDOW),
        Setting("SMS_PRICES", "",
                "cost of one SMS segment per destination country: inline JSON "
                "(`{\"FR\": 0.04, \"DE\": 0.07}`), or the path of a JSON file of that shape "
                "or of a CSV file with the header `country,price`; ISO 3166-1 alpha-2 codes, "
                "`ZZ` for numbers with no country. A bad table stops the start with its line",
                documented="unset: every country pays `SMS_PRICE_PER_SEGMENT`"),
        Setting("SIMULATED_SMS_LATENCY", 0.05, "seconds the simulated provider takes per send",
                NUMBER),
        Setting("SIMULATED_RECEIPT_DELAY", 1.0,
                "seconds from a simulated send to its delivery receipt", NUMBER, testing=0.3),
        Setting("SIMULATED_SMS_SEND_LOG", None,
                "a file where the simulated provider appends every submission that reached it "
                "(tests read it)"),
        Setting("SIMULATED_SMS_IDEMPOTENT", True,
                "whether the simulated provider recognises a recipient submitted again (so "
                "sends are exactly once); `false` makes it forget, like a real provider",
                FLAG),
        Setting("SIMULATED_SMS_FROM", "+15005550006",
                "the number the simulated provider sends from: the sender its suppression "
                "entries and injected inbound messages name"),
        Setting("SMS_HELP_TEXT", "Reply STOP to unsubscribe.",
                "the reply to an inbound HELP or INFO"),
        Setting("SMS_OPT_OUT_REPLY", "",
                "the one confirmation an inbound STOP gets; empty: none (many providers "
                "confirm opt-outs themselves)"),
        Setting("DISPATCH_BATCH_SIZE", 200, "recipients a node claims at once", INTEGER),
        Setting("DISPATCH_CONCURRENCY", 50, "sends in flight per node", INTEGER),
        Setting("DISPATCH_POLL_INTERVAL", 0.5,
                "seconds between a node's looks for pending recipients when nothing wakes it",
                NUMBER),
        Setting("DISPATCH_CLAIM_TIMEOUT", 30.0,
                "seconds after which a recipient claimed but not recorded (a crashed node's) "
                "is taken over by another node", NUMBER, testing=3.0),
        Setting("MESSAGE_UPDATE_INTERVAL", 0.25,
                "seconds between a sending message's batched `message_update` events", NUMBER),
        Setting("RECIPIENT_BATCH_INTERVAL", 0.25,
                "seconds between a message's `recipient_updates` batches to trackers that asked "
                "for them (`track_message` with `batch: true`); the first change goes at once",
                NUMBER),
        Setting("RECIPIENT_RESUME_OVERLAP", 10.0,
                "seconds of recipient changes a tracker resuming with `sinceVersion` receives "
                "again, to cover a change's way to its commit and clocks that differ between "
                "nodes", NUMBER),
        Setting("ANALYTICS_INTERVAL", 1.0,
                "seconds between analytics updates per subscriber", NUMBER, testing=0.5),
    ),
    "Twilio": (
        Setting("TWILIO_ACCOUNT_SID", "",
                "the account's SID (`AC` and 32 hex digits); required with "
                "`SMS_PROVIDER=twilio`"),
        Setting("TWILIO_AUTH_TOKEN", "",
                "the account's auth token: authenticates the sends and checks the "
                "`X-Twilio-Signature` of Twilio's posts to the webhooks", SECRET),
        Setting("TWILIO_FROM", "",
                "the sender: an E.164 number (`+15017122661`) or an alphanumeric sender ID "
                "of up to 11 characters; or set `TWILIO_MESSAGING_SERVICE_SID` instead"),
        Setting("TWILIO_MESSAGING_SERVICE_SID", "",
                "a Messaging Service (`MG` and 32 hex digits) that picks the sender; "
                "instead of `TWILIO_FROM`"),
        Setting("TWILIO_API_BASE", "https://api.twilio.com",
                "where the Messages API is reached (a test points it at a loopback fake)",
                URL),
        Setting("TWILIO_TIMEOUT", 10.0,
                "seconds a send may take to connect and to be answered; past it the "
                "recipient becomes `UNKNOWN` (`ambiguous_submit`), never sent again on its "
                "own", NUMBER),
        Setting("TWILIO_MAX_IN_FLIGHT", 20,
                "sends to Twilio in flight at once per node (Twilio queues or refuses "
                "past an account's concurrency limit)", INTEGER),
        Setting("PUBLIC_BASE_URL", "",
                "the hub's externally visible base URL, e.g. `https://hub.example.com`: "
                "Twilio posts to `{PUBLIC_BASE_URL}/api/webhooks/twilio/status` and "
                "`/inbound`, and signs over that URL; required with `SMS_PROVIDER=twilio`",
                URL),
    ),
    "SMPP (`SMS_PROVIDER=smpp`)": (
        Setting("SMPP_HOST", None, "the SMSC's host name or address"),
        Setting("SMPP_PORT", 2775, "the SMSC's SMPP port", INTEGER),
        Setting("SMPP_SYSTEM_ID", None, "`system_id` of the `bind_transceiver`"),
        Setting("SMPP_PASSWORD", "", "`password` of the `bind_transceiver`", SECRET),
        Setting("SMPP_SYSTEM_TYPE", "", "`system_type` of the `bind_transceiver`, when the "
                "SMSC asks for one"),
        Setting("SMPP_SOURCE_ADDR", None,
                "the sender: `+` and digits (TON 1, NPI 1), bare digits such as a short code "
                "(TON 0, NPI 1), or an alphanumeric sender ID of up to 11 characters (TON 5, "
                "NPI 0)"),
        Setting("SMPP_SOURCE_TON", None, "the sender's TON, when the SMSC wants another than "
                "the one derived from `SMPP_SOURCE_ADDR`", INTEGER),
        Setting("SMPP_SOURCE_NPI", None, "the sender's NPI, likewise", INTEGER),
        Setting("SMPP_WINDOW", 10,
                "`submit_sm` outstanding without an answer, per bind (the SMSC's window)",
                INTEGER),
        Setting("SMPP_BINDS", 1, "transceiver binds per node (the SMSC's limit is usually per "
                "account: divide it by the nodes)", INTEGER),
        Setting("SMPP_RESPONSE_TIMEOUT", 10.0,
                "seconds to wait for a `submit_sm_resp` (after which the recipient is "
                "`UNKNOWN`, never sent again on its own), a bind or an `enquire_link` answer",
                NUMBER),
        Setting("SMPP_ENQUIRE_LINK_INTERVAL", 30.0,
                "seconds between `enquire_link`s that keep the bind alive", NUMBER),
    ),
}


def all_settings() -> Iterator[Setting]:
    for group in SETTINGS.values():
        yield from group


def declared(name: str) -> Setting:
    """The declaration of the variable ``name``."""
    for setting in all_settings():
        if setting.name == name:
            return setting
    raise KeyError(f"{name} is not declared in config.SETTINGS")


def read_settings(environment: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """Every setting's value in ``environment``, by its ``app.config`` key."""
    read: dict[str, Any] = {}
    for setting in all_settings():
        if setting is not ENVIRONMENT:
            read[setting.name] = setting.read(environment, environ, read)
    return {setting.config_key: read[setting.name] for setting in all_settings()
            if setting is not ENVIRONMENT}


def settings_in_effect(config: Mapping[str, Any]) -> dict[str, str]:
    """Each setting as the app has it, secrets and URL passwords masked: the start-up line."""
    return {setting.name: setting.show(config.get(setting.config_key))
            for setting in all_settings()}


# Environments ------------------------------------------------------------------------------

class Config:
    """What every environment shares and no operator sets; the settings are added below."""

    ENV_NAME = "base"
    TESTING = False
    DEBUG = False

    SQLALCHEMY_TRACK_MODIFICATIONS = False
    JWT_ALGORITHM = "HS256"
    JWT_DECODE_ALGORITHMS = ["HS256"]
    JWT_TOKEN_LOCATION = ["headers"]
    JWT_ERROR_MESSAGE_KEY = "message"
    RATELIMIT_HEADERS_ENABLED = True
    NOTIFICATION_PAGE_MAX = 100
    ARGON2_TIME_COST = 2
    ARGON2_MEMORY_COST = 19456
    IDEMPOTENCY_TTL = 86400
    # Without METRICS_TOKEN, whether clients on a loopback address may read /metrics.
    METRICS_LOOPBACK_WITHOUT_TOKEN = True

    @classmethod
    def validate(cls) -> None:
        """Refuse settings that are unsafe for this environment."""


class DevelopmentConfig(Config):
    ENV_NAME = "development"

    @classmethod
    def validate(cls) -> None:
        if not cls.JWT_SECRET_KEY:
            cls.JWT_SECRET_KEY = _development_secret("jwt")
            warnings.warn(
                "JWT_SECRET_KEY is not set: using a development key kept in instance/. "
                "Set JWT_SECRET_KEY in production.",
                stacklevel=2,
            )
        if not cls.WEBHOOK_SECRET:
            cls.WEBHOOK_SECRET = _development_secret("webhook")
        if not cls.PHONE_HASH_KEY:
            cls.PHONE_HASH_KEY = cls.JWT_SECRET_KEY


class TestingConfig(Config):
    ENV_NAME = "testing"
    TESTING = True
    ARGON2_TIME_COST = 1
    ARGON2_MEMORY_COST = 1024


class ProductionConfig(Config):
    ENV_NAME = "production"
    METRICS_LOOPBACK_WITHOUT_TOKEN = False

    @classmethod
    def validate(cls) -> None:
        if len(cls.JWT_SECRET_KEY) < 32:
            raise RuntimeError("JWT_SECRET_KEY must be set to at least 32 characters in production")
        if not cls.WEBHOOK_SECRET:
            raise RuntimeError("WEBHOOK_SECRET must be set in production")
        if "*" in cls.CORS_ALLOWED_ORIGINS or "null" in cls.CORS_ALLOWED_ORIGINS:
            raise RuntimeError("CORS_ALLOWED_ORIGINS must list exact origins, never '*'")


CONFIGS: dict[str, type[Config]] = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}



def _load_settings(environments: tuple[type[Config], ...]) -> None:
    """Each environment's class gets every setting's value, read once at import."""
    for environment in environments:
        for key, value in read_settings(environment.ENV_NAME, os.environ).items():
            if key in vars(environment):
                raise RuntimeError(f"{environment.__name__}.{key} is a setting: give its "
                                   f"{environment.ENV_NAME} default in SETTINGS instead")
            setattr(environment, key, value)


_load_settings((Config, *CONFIGS.values()))


def _development_secret(name: str) -> str:
    """A stable random key per checkout, so tokens survive a restart of ``make run``."""
    INSTANCE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = INSTANCE_DIR / f".{name}-secret"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def engine_options(url: str, *, pool_size: int, max_overflow: int) -> dict:
    """SQLAlchemy engine options for this database URL.

    psycopg prepares a statement after a few executions and drops every
    prepared statement at each ROLLBACK, which ends every read-only request:
    each request would pay a ``DEALLOCATE ALL`` round trip and prepare again.
    Plain parameterised statements cost less here.

    SQLAlchemy's default pool keeps five connections: a burst of notifies on
    PostgreSQL then opened and closed connections at a 20-50 ms connect each,
    the slowest 1 % of notifies' wait (``BENCHMARKS.md``, "notify-pg").
    SQLite's connections are in-process and cheap, and its in-memory database
    is one shared connection, so its pool is left as SQLAlchemy sets it.
    """
    if url.startswith("sqlite"):
        return {}
    options: dict = {"pool_size": pool_size, "max_overflow": max_overflow}
    if url.startswith("postgresql+psycopg"):
        options["connect_args"] = {"prepare_threshold": None}
    return options


def get_config(name: str | None = None) -> type[Config]:
    """The settings class for ``name``, or for ``HUB_ENV`` (default development)."""
    name = name or ENVIRONMENT.read("base", os.environ)
    try:
        config = CONFIGS[name]
    except KeyError:
        raise RuntimeError(f"unknown HUB_ENV {name!r}; use one of {sorted(CONFIGS)}") from None
    config.validate()
    return config
