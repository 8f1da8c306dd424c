"""``/healthz`` (the process runs), ``/readyz`` (it can serve) and ``/metrics``."""

import hmac
import ipaddress

from flask import Blueprint, Response, current_app, request

from services.errors import Forbidden, Unavailable
from services.node import health

health_bp = Blueprint("health", __name__)


@health_bp.get("/healthz")
def healthz():
    return {"status": "ok", "node": current_app.config.get("NODE_ID")}


@health_bp.get("/readyz")
def readyz():
    ready, checks = health.readiness()
    if not ready:
        raise Unavailable("Not ready", details=checks)
    return {"status": "ready", "checks": checks, "provider": current_app.config["SMS_PROVIDER"]}


@health_bp.get("/metrics")
def prometheus_metrics():
    """Prometheus text format, for the bearer of ``METRICS_TOKEN``; without a token, for
    loopback clients outside production (behind trusted proxies, the client is the one
    they name, so a local proxy does not make every visitor local)."""
    token = current_app.config["METRICS_TOKEN"]
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise Forbidden("Metrics need the metrics token")
    elif not current_app.config["METRICS_LOOPBACK_WITHOUT_TOKEN"]:
        raise Forbidden("Metrics need METRICS_TOKEN to be set")
    elif not _is_loopback(request.remote_addr):
        raise Forbidden("Metrics are served to loopback only; set METRICS_TOKEN")
    return Response(health.metrics_text(), mimetype="text/plain; version=0.0.4")


def _is_loopback(address: str | None) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback
