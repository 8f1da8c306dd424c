"""``/healthz`` (the process runs), ``/readyz`` (it can serve) and ``/metrics``."""

import hmac

from flask import Blueprint, Response, current_app, request

from services import health, metrics
from services.errors import Forbidden, Unavailable

LOOPBACK = {"127.0.0.1", "::1"}

health_bp = Blueprint("health", __name__)


@health_bp.get("/healthz")
def healthz():
    return {"status": "ok", "node": current_app.config.get("NODE_ID")}


@health_bp.get("/readyz")
def readyz():
    ready, checks = health.readiness()
    if not ready:
        raise Unavailable("Not ready", details=checks)
    return {"status": "ready", "checks": checks}


@health_bp.get("/metrics")
def prometheus_metrics():
    """Prometheus text format; with ``METRICS_TOKEN`` set it needs that bearer token,
    without it only loopback scrapers are served."""
    token = current_app.config["METRICS_TOKEN"]
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given, token):
            raise Forbidden("Metrics need the metrics token")
    elif request.remote_addr not in LOOPBACK:
        raise Forbidden("Metrics are served to loopback only; set METRICS_TOKEN")
    return Response(metrics.render(), mimetype="text/plain; version=0.0.4")
