"""Settings for every environment, read from the environment in this one place.

Nothing else in the project reads ``os.environ``: services get their settings
from ``current_app.config`` so that tests and benchmarks can override them.
"""

from __future__ import annotations

import os
import secrets
import warnings
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
INSTANCE_DIR = BASE_DIR / "instance"


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def _env_proxy_hops(name: str) -> int:
    """How many proxies in front of the hub append to ``X-Forwarded-For``.

    ``0``/``false`` (none), ``1``/``true`` (one) or a count; anything else stops
    the start, since a wrong guess lets clients choose their own address.
    """
    value = (os.environ.get(name) or "").strip().lower()
    if value in {"", "false", "no", "off"}:
        return 0
    if value in {"true", "yes", "on"}:
        return 1
    if value.isdigit():
        return int(value)
    raise RuntimeError(f"{name} must be a number of proxy hops (0, 1, 2, ...) or true/false, "
                       f"not {value!r}")


def _env_list(name: str) -> list[str]:
    value = os.environ.get(name, "")
    return [item.strip() for item in value.split(",") if item.strip()]


def _normalise_database_url(url: str) -> str:
    """Let operators paste the usual ``postgres://`` URL; SQLAlchemy wants a driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def engine_options(url: str) -> dict:
    """SQLAlchemy engine options for this database URL.

    psycopg prepares a statement after a few executions and drops every
    prepared statement at each ROLLBACK, which ends every read-only request:
    each request would pay a ``DEALLOCATE ALL`` round trip and prepare again.
    Plain parameterised statements cost less here.
    """
    if url.startswith("postgresql+psycopg"):
        return {"connect_args": {"prepare_threshold": None}}
    return {}


class Config:
    """Defaults shared by every environment."""

    ENV_NAME = "base"
    TESTING = False
    DEBUG = False

    HOST = os.environ.get("HOST", "127.0.0.1")
    PORT = _env_int("PORT", 5000)

    SQLALCHEMY_DATABASE_URI = _normalise_database_url(
        os.environ.get("DATABASE_URL") or f"sqlite:///{INSTANCE_DIR / 'hub.db'}"
    )
    SQLALCHEMY_TRACK_MODIFICATIONS = False

    JWT_SECRET_KEY = os.environ.get("JWT_SECRET_KEY") or ""
    JWT_ALGORITHM = "HS256"
    JWT_DECODE_ALGORITHMS = ["HS256"]
    JWT_DECODE_LEEWAY = _env_int("JWT_DECODE_LEEWAY", 10)
    JWT_ACCESS_TOKEN_EXPIRES = timedelta(seconds=_env_int("JWT_ACCESS_TOKEN_SECONDS", 900))
    JWT_REFRESH_TOKEN_EXPIRES = timedelta(seconds=_env_int("JWT_REFRESH_TOKEN_SECONDS", 30 * 86400))
    JWT_TOKEN_LOCATION = ["headers"]
    JWT_ERROR_MESSAGE_KEY = "message"

    SOCKETIO_MESSAGE_QUEUE = os.environ.get("SOCKETIO_MESSAGE_QUEUE") or None
    # Unset: named after the database (services/node/deployment.py), so that two deployments
    # sharing a Redis never share a channel.
    SOCKETIO_CHANNEL = os.environ.get("SOCKETIO_CHANNEL") or None
    RATELIMIT_STORAGE_URI = (
        os.environ.get("RATELIMIT_STORAGE_URI") or SOCKETIO_MESSAGE_QUEUE or "memory://"
    )
    CORS_ALLOWED_ORIGINS = _env_list("CORS_ALLOWED_ORIGINS")
    SOCKETIO_PING_INTERVAL = _env_int("SOCKETIO_PING_INTERVAL", 25)
    SOCKETIO_PING_TIMEOUT = _env_int("SOCKETIO_PING_TIMEOUT", 20)
    MAX_MESSAGE_SIZE = _env_int("MAX_MESSAGE_SIZE", 16 * 1024)
    MAX_CONTENT_LENGTH = _env_int("MAX_CONTENT_LENGTH", 1024 * 1024)
    HTTP_HEADER_TIMEOUT = _env_float("HTTP_HEADER_TIMEOUT", 10.0)

    REGISTRATION_ENABLED = _env_bool("REGISTRATION_ENABLED", True)
    DAILY_RECIPIENT_QUOTA = _env_int("DAILY_RECIPIENT_QUOTA", 10_000)
    NODE_TTL = _env_float("NODE_TTL", 15.0)
    NODE_HEARTBEAT_INTERVAL = _env_float("NODE_HEARTBEAT_INTERVAL", 3.0)
    CONNECTION_FLUSH_INTERVAL = _env_float("CONNECTION_FLUSH_INTERVAL", 0.2)
    AUTH_EXPIRY_WARNING_SECONDS = _env_float("AUTH_EXPIRY_WARNING_SECONDS", 60.0)
    AUTH_EXPIRED_GRACE_SECONDS = _env_float("AUTH_EXPIRED_GRACE_SECONDS", 10.0)
    USER_CACHE_SECONDS = _env_float("USER_CACHE_SECONDS", 30.0)
    TOKEN_CACHE_SECONDS = _env_float("TOKEN_CACHE_SECONDS", 1.0)
    MAX_ROOMS_PER_CONNECTION = _env_int("MAX_ROOMS_PER_CONNECTION", 128)
    MAX_CONNECTIONS_PER_USER = _env_int("MAX_CONNECTIONS_PER_USER", 20)
    MAX_CONNECTIONS_PER_ADDRESS = _env_int("MAX_CONNECTIONS_PER_ADDRESS", 200)
    CONNECT_TIMEOUT = _env_float("CONNECT_TIMEOUT", 10.0)
    MAX_OUTBOUND_PACKETS = _env_int("MAX_OUTBOUND_PACKETS", 10_000)
    EVENT_RATE = _env_float("EVENT_RATE", 20.0)
    EVENT_BURST = _env_float("EVENT_BURST", 40.0)
    EVENT_BYTES_PER_SECOND = _env_float("EVENT_BYTES_PER_SECOND", 64 * 1024)
    EVENT_BYTES_BURST = _env_float("EVENT_BYTES_BURST", 256 * 1024)
    SNAPSHOT_RATE = _env_float("SNAPSHOT_RATE", 500.0)
    SNAPSHOT_BURST = _env_float("SNAPSHOT_BURST", 1000.0)
    LOGIN_RATE_LIMIT = os.environ.get("LOGIN_RATE_LIMIT", "10/minute")
    LOGIN_ACCOUNT_RATE_LIMIT = os.environ.get("LOGIN_ACCOUNT_RATE_LIMIT", "20/minute;100/hour")
    LOGIN_ADDRESS_RATE_LIMIT = os.environ.get("LOGIN_ADDRESS_RATE_LIMIT", "20/minute;200/hour")
    REGISTER_RATE_LIMIT = os.environ.get("REGISTER_RATE_LIMIT", "20/hour")
    MESSAGES_RATE_LIMIT = os.environ.get("MESSAGES_RATE_LIMIT", "120/minute")
    RATELIMIT_HEADERS_ENABLED = True
    NOTIFICATION_PAGE_MAX = 100

    ANALYTICS_INTERVAL = _env_float("ANALYTICS_INTERVAL", 1.0)
    SMS_PRICE_PER_SEGMENT = Decimal(os.environ.get("SMS_PRICE_PER_SEGMENT", "0.0075"))
    SMS_PROVIDER = os.environ.get("SMS_PROVIDER", "simulated")
    WEBHOOK_SECRET = os.environ.get("WEBHOOK_SECRET") or ""
    SIMULATED_SMS_LATENCY = _env_float("SIMULATED_SMS_LATENCY", 0.05)
    SIMULATED_RECEIPT_DELAY = _env_float("SIMULATED_RECEIPT_DELAY", 1.0)
    SIMULATED_SMS_SEND_LOG = os.environ.get("SIMULATED_SMS_SEND_LOG") or None
    DISPATCH_BATCH_SIZE = _env_int("DISPATCH_BATCH_SIZE", 200)
    DISPATCH_CONCURRENCY = _env_int("DISPATCH_CONCURRENCY", 50)
    DISPATCH_POLL_INTERVAL = _env_float("DISPATCH_POLL_INTERVAL", 0.5)
    DISPATCH_CLAIM_TIMEOUT = _env_float("DISPATCH_CLAIM_TIMEOUT", 30.0)
    MESSAGE_UPDATE_INTERVAL = _env_float("MESSAGE_UPDATE_INTERVAL", 0.25)

    ARGON2_TIME_COST = 2
    ARGON2_MEMORY_COST = 19456
    IDEMPOTENCY_TTL = 86400
    TRUST_PROXY_HEADERS = _env_proxy_hops("TRUST_PROXY_HEADERS")
    NODE_ID = os.environ.get("NODE_ID") or None

    METRICS_TOKEN = os.environ.get("METRICS_TOKEN") or ""
    # Without METRICS_TOKEN, whether clients on a loopback address may read /metrics.
    METRICS_LOOPBACK_WITHOUT_TOKEN = True
    HUB_DEBUG_INTERNALS = _env_bool("HUB_DEBUG_INTERNALS", False)

    LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
    LOG_FORMAT = os.environ.get("LOG_FORMAT", "text")

    @classmethod
    def validate(cls) -> None:
        """Refuse settings that are unsafe for this environment."""


class DevelopmentConfig(Config):
    ENV_NAME = "development"
    DEBUG = False

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


class TestingConfig(Config):
    ENV_NAME = "testing"
    TESTING = True
    SQLALCHEMY_DATABASE_URI = _normalise_database_url(
        os.environ.get("DATABASE_URL") or "sqlite:///:memory:"
    )
    ARGON2_TIME_COST = 1
    ARGON2_MEMORY_COST = 1024
    JWT_SECRET_KEY = "testing-secret-key-with-enough-bytes-0123456789"
    WEBHOOK_SECRET = "testing-webhook-secret"
    CONNECTION_FLUSH_INTERVAL = 0.05
    ANALYTICS_INTERVAL = 0.5
    NODE_HEARTBEAT_INTERVAL = 0.5
    NODE_TTL = _env_float("NODE_TTL", 3.0)
    AUTH_EXPIRED_GRACE_SECONDS = 3.0
    HUB_DEBUG_INTERNALS = _env_bool("HUB_DEBUG_INTERNALS", True)
    MAX_CONNECTIONS_PER_ADDRESS = _env_int("MAX_CONNECTIONS_PER_ADDRESS", 100_000)
    MAX_CONNECTIONS_PER_USER = _env_int("MAX_CONNECTIONS_PER_USER", 20)
    EVENT_RATE = _env_float("EVENT_RATE", 200.0)
    EVENT_BURST = _env_float("EVENT_BURST", 400.0)
    SNAPSHOT_RATE = _env_float("SNAPSHOT_RATE", 100_000.0)
    SNAPSHOT_BURST = _env_float("SNAPSHOT_BURST", 100_000.0)
    LOGIN_RATE_LIMIT = os.environ.get("LOGIN_RATE_LIMIT", "100000/minute")
    LOGIN_ACCOUNT_RATE_LIMIT = os.environ.get("LOGIN_ACCOUNT_RATE_LIMIT", "100000/minute")
    LOGIN_ADDRESS_RATE_LIMIT = os.environ.get("LOGIN_ADDRESS_RATE_LIMIT", "100000/minute")
    REGISTER_RATE_LIMIT = os.environ.get("REGISTER_RATE_LIMIT", "100000/minute")
    MESSAGES_RATE_LIMIT = os.environ.get("MESSAGES_RATE_LIMIT", "100000/minute")
    DAILY_RECIPIENT_QUOTA = _env_int("DAILY_RECIPIENT_QUOTA", 1_000_000)
    SIMULATED_RECEIPT_DELAY = _env_float("SIMULATED_RECEIPT_DELAY", 0.3)
    DISPATCH_CLAIM_TIMEOUT = _env_float("DISPATCH_CLAIM_TIMEOUT", 3.0)


class ProductionConfig(Config):
    ENV_NAME = "production"
    METRICS_LOOPBACK_WITHOUT_TOKEN = False
    # Open sign-up lets anyone spend the operator's money on SMS: opt in explicitly.
    REGISTRATION_ENABLED = _env_bool("REGISTRATION_ENABLED", False)

    @classmethod
    def validate(cls) -> None:
        if len(cls.JWT_SECRET_KEY) < 32:
            raise RuntimeError("JWT_SECRET_KEY must be set to at least 32 characters in production")
        if not cls.WEBHOOK_SECRET:
            raise RuntimeError("WEBHOOK_SECRET must be set in production")
        if "*" in cls.CORS_ALLOWED_ORIGINS or "null" in cls.CORS_ALLOWED_ORIGINS:
            raise RuntimeError("CORS_ALLOWED_ORIGINS must list exact origins, never '*'")


def _development_secret(name: str) -> str:
    """A stable random key per checkout, so tokens survive a restart of ``make run``."""
    INSTANCE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = INSTANCE_DIR / f".{name}-secret"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


CONFIGS: dict[str, type[Config]] = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def get_config(name: str | None = None) -> type[Config]:
    """The settings class for ``name``, or for ``HUB_ENV`` (default development)."""
    name = name or os.environ.get("HUB_ENV", "development")
    try:
        config = CONFIGS[name]
    except KeyError:
        raise RuntimeError(f"unknown HUB_ENV {name!r}; use one of {sorted(CONFIGS)}") from None
    config.validate()
    return config
