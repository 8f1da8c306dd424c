"""``/api/messages``: send to many phones, list messages, page recipients."""

from flask import Blueprint, Response, current_app, stream_with_context

from blueprints.common import (
    authenticated,
    bearer_identity,
    idempotency_key,
    json_body,
    query_args,
)
from extensions import limiter
from schemas.messages import MessageCreateSchema, MessageListQuerySchema, RecipientListQuerySchema
from services import idempotency
from services.messaging import messages

messages_bp = Blueprint("messages", __name__, url_prefix="/api/messages")


def _per_caller() -> str:
    """Rate-limit key: the caller's user id (REST tokens are verified before this runs)."""
    return f"user:{bearer_identity().user_id}"


@messages_bp.post("")
@authenticated
@limiter.limit(lambda: current_app.config["MESSAGES_RATE_LIMIT"], key_func=_per_caller)
def create_message(identity):
    body = json_body(MessageCreateSchema)
    send_at = messages.read_send_at(body["sendAt"])
    recipients = messages.read_recipients(body["recipients"])
    return idempotency.run_once(
        identity.user_id, key=idempotency_key(), endpoint="messages", body=body,
        action=lambda: (messages.create(identity.user_id, body=body["body"],
                                        recipients=recipients, send_at=send_at,
                                        quiet=body["quietHours"],
                                        validity_seconds=body["validitySeconds"]), 202),
    )


@messages_bp.post("/preview")
@authenticated
@limiter.limit(lambda: current_app.config["MESSAGES_RATE_LIMIT"], key_func=_per_caller)
def preview_message(identity):
    body = json_body(MessageCreateSchema)
    return messages.preview(body=body["body"],
                            recipients=messages.read_recipients(body["recipients"],
                                                                countries=True))


@messages_bp.get("")
@authenticated
def list_messages(identity):
    query = query_args(MessageListQuerySchema)
    return messages.list_for_user(identity.user_id, limit=query["limit"], before=query["before"])


@messages_bp.get("/<id:message_id>")
@authenticated
def get_message(message_id: int, identity):
    return messages.shown(messages.get_visible(identity, message_id))


@messages_bp.post("/<id:message_id>/retry")
@authenticated
def retry_message(message_id: int, identity):
    """Send the unknown, expired and retryable failed recipients again, on request."""
    return messages.retry(identity, message_id)


@messages_bp.post("/<id:message_id>/pause")
@authenticated
def pause_message(message_id: int, identity):
    return messages.pause(identity, message_id)


@messages_bp.post("/<id:message_id>/resume")
@authenticated
def resume_message(message_id: int, identity):
    return messages.resume(identity, message_id)


@messages_bp.post("/<id:message_id>/cancel")
@authenticated
def cancel_message(message_id: int, identity):
    return messages.cancel(identity, message_id)


@messages_bp.get("/<id:message_id>/recipients")
@authenticated
def list_recipients(message_id: int, identity):
    query = query_args(RecipientListQuerySchema)
    message = messages.get_visible(identity, message_id)
    return messages.list_recipients(message, limit=query["limit"], after=query["after"],
                                    status=query["status"])


@messages_bp.get("/<id:message_id>/report.csv")
@authenticated
def message_report(message_id: int, identity):
    message = messages.get_visible(identity, message_id)
    return Response(stream_with_context(messages.report_csv(message)), mimetype="text/csv",
                    headers={"Content-Disposition":
                             f'attachment; filename="message-{message.id}-report.csv"'})
