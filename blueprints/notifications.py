"""``/api/notifications``: the REST twins of the notification socket events."""

from flask import Blueprint

from blueprints.common import authenticated, query_args
from schemas.notifications import NotificationQuerySchema
from services import notifications

notifications_bp = Blueprint("notifications", __name__, url_prefix="/api/notifications")


@notifications_bp.get("")
@authenticated
def list_notifications(identity):
    query = query_args(NotificationQuerySchema)
    return notifications.list_for_user(identity.user_id, unread_only=query["unreadOnly"],
                                       limit=query["limit"], before=query["before"])


@notifications_bp.post("/<id:notification_id>/read")
@authenticated
def mark_read(notification_id: int, identity):
    unread = notifications.mark_read(identity.user_id, notification_id=notification_id)
    return {"id": str(notification_id), "unreadCount": unread}


@notifications_bp.post("/read-all")
@authenticated
def mark_all_read(identity):
    return {"count": notifications.mark_all_read(identity.user_id)}
