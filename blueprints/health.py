"""``/healthz`` (the process runs) and ``/readyz`` (it can serve: database, Redis)."""

from flask import Blueprint, current_app

from services import health
from services.errors import Unavailable

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
