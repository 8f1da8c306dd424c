"""``/api/socket``: connection state, notifications and pings over REST."""

import time

from flask import Blueprint, current_app

from blueprints.common import admin_only, authenticated, idempotency_key, json_body
from schemas.common import isoformat
from schemas.notifications import BroadcastSchema, NotifySchema
from services import idempotency, notifications
from services.errors import Forbidden, NotFound
from services.node import diagnostics
from services.realtime import presence, sessions

socket_api_bp = Blueprint("socket_api", __name__, url_prefix="/api/socket")
STARTED_AT = time.monotonic()


@socket_api_bp.get("/stats")
@admin_only
def stats(identity):
    figures = presence.connection_stats()
    nodes = [
        {"id": node["id"], "connections": node["connections"],
         "lastHeartbeat": isoformat(node["lastHeartbeat"])}
        for node in figures["nodes"]
    ]
    return {**figures, "nodes": nodes, "uptimeSeconds": round(time.monotonic() - STARTED_AT, 3)}


@socket_api_bp.get("/user/<user_id:user_id>/online")
@authenticated
def user_online(user_id: int, identity):
    if user_id != identity.user_id and not identity.is_admin:
        raise Forbidden("You may only ask about yourself")
    count = presence.count_user_connections(user_id)
    return {"userId": str(user_id), "online": count > 0, "connections": count}


@socket_api_bp.get("/online-count")
@authenticated
def online_count(identity):
    return {"count": presence.online_user_count()}


@socket_api_bp.post("/notify/<user_id:user_id>")
@admin_only
def notify(user_id: int, identity):
    body = json_body(NotifySchema)

    def send():
        notification, delivered = notifications.notify_user(
            user_id, title=body["title"], message=body["message"], type=body["type"],
            data=body["data"])
        return {"notification": notification, "delivered": delivered}, 201

    return idempotency.run_once(identity.user_id, key=idempotency_key(),
                                endpoint=f"notify:{user_id}", body=body, action=send)


@socket_api_bp.post("/broadcast")
@admin_only
def broadcast(identity):
    body = json_body(BroadcastSchema)

    def send():
        notification, audience = notifications.broadcast(
            body["title"], message=body["message"], type=body["type"])
        return {"notification": notification, "recipients": audience}, 201

    return idempotency.run_once(identity.user_id, key=idempotency_key(), endpoint="broadcast",
                                body=body, action=send)


@socket_api_bp.post("/ping")
@admin_only
def ping(identity):
    sent = sessions.ping_all()
    return {"sent": presence.count_all_connections(), "timestamp": sent["timestamp"]}


@socket_api_bp.get("/debug/internals")
@admin_only
def internals(identity):
    """Per-connection structures of this process; only with ``HUB_DEBUG_INTERNALS``."""
    if not current_app.config["HUB_DEBUG_INTERNALS"]:
        raise NotFound()
    return diagnostics.internals()
