"""Liveness and readiness, for load balancers and orchestrators."""

from __future__ import annotations

from typing import Any

from flask import current_app
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from extensions import db
from services.messaging import queue
from services.node.queue_canary import canary
from services.observability import metrics


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


def metrics_text() -> str:
    """The metrics in Prometheus's text format, the send backlog counted for this scrape.

    Counted on every heartbeat instead, each node ran a COUNT over the queue
    every few seconds whether anything scraped or not (about a tenth of an
    idle node's CPU in testing, where heartbeats are 0.5 s apart). With the
    database down the gauge keeps its last value; ``/readyz`` says why.
    """
    try:
        metrics.dispatch_backlog.set(queue.backlog())
    except SQLAlchemyError:
        pass
    finally:
        db.session.rollback()
    return metrics.render()


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
