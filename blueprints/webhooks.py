"""``/api/webhooks/delivery``: signed delivery receipts in the hub's own format.

For a provider that posts the hub's own receipt shape; ``SENT`` there is a
receipt that changes nothing (the recipient is already sent).
"""

from flask import Blueprint, current_app, request

from schemas.common import load_or_raise
from schemas.messages import DeliveryReceiptSchema
from services.errors import InvalidPayload, Unauthenticated
from services.messaging import queue
from services.messaging.providers import ProviderReceipt
from services.messaging.webhook_signing import verify_webhook_signature

webhooks_bp = Blueprint("webhooks", __name__, url_prefix="/api/webhooks")


@webhooks_bp.post("/delivery")
def delivery_receipts():
    """One receipt object or a list of them, signed as a whole in ``X-Signature``."""
    raw = request.get_data(cache=True)
    if not verify_webhook_signature(raw, signature=request.headers.get("X-Signature"),
                                    secret=current_app.config["WEBHOOK_SECRET"]):
        raise Unauthenticated("Invalid webhook signature")
    body = request.get_json()
    if not isinstance(body, dict | list):
        raise InvalidPayload("Body must be a receipt object or a list of receipts")
    items = load_or_raise(DeliveryReceiptSchema(many=True), body if isinstance(body, list)
                          else [body])
    receipts = [ProviderReceipt(item["providerMessageId"],
                                None if item["status"] == "SENT" else item["status"],
                                error_code=item["errorCode"], error_message=item["errorMessage"])
                for item in items]
    applied, unknown = queue.apply_receipts(receipts)
    return {"received": len(receipts), "applied": applied, "unknown": len(unknown)}
