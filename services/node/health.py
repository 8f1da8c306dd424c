"""Liveness and readiness, for load balancers and orchestrators."""

from __future__ import annotations

from typing import Any

from flask import current_app
from sqlalchemy import text

from extensions import db
from services.node.queue_canary import canary


def readiness() -> tuple[bool, dict[str, Any]]:
    """Whether this process can serve: the database answers and, with a queue, Redis too."""
    checks: dict[str, Any] = {}
    try:
        db.session.execute(text("SELECT 1"))
        db.session.rollback()
        checks["database"] = "ok"
    except Exception as exc:
        db.session.rollback()
        checks["database"] = f"unavailable: {type(exc).__name__}"
    queue_url = current_app.config["SOCKETIO_MESSAGE_QUEUE"]
    if queue_url:
        checks["messageQueue"] = _redis_check(queue_url)
        if canary.enabled and not canary.check(_max_silence()):
            checks["messageQueueListener"] = f"deaf for {canary.silent_for():.1f} s"
        elif canary.enabled:
            checks["messageQueueListener"] = "ok"
    ready = all(value == "ok" for value in checks.values())
    return ready, checks


def _max_silence() -> float:
    return 3 * current_app.config["NODE_HEARTBEAT_INTERVAL"] + 2.0


def _redis_check(url: str) -> str:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        client.ping()
        client.close()
        return "ok"
    except Exception as exc:
        return f"unavailable: {type(exc).__name__}"
