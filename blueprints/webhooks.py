"""``/api/webhooks/...``: signed posts from SMS providers.

``/delivery`` takes delivery receipts in the hub's own format, signed with
``WEBHOOK_SECRET`` (``SENT`` there is a receipt that changes nothing: the
recipient is already sent); ``/twilio/status`` and ``/twilio/inbound`` take
Twilio's form posts signed with ``X-Twilio-Signature``
(``services.messaging.twilio_webhooks``).
"""

from flask import Blueprint, Response, current_app, request

from schemas.common import load_or_raise
from schemas.messages import DeliveryReceiptSchema
from schemas.twilio import (
    TwilioInboundSchema,
    TwilioStatusCallbackSchema,
    TwilioStatusQuerySchema,
)
from services.errors import InvalidPayload, Unauthenticated
from services.messaging import queue, twilio_webhooks
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


def _signed_twilio_provider():
    return twilio_webhooks.signed_provider(
        path=request.path, query=request.query_string.decode("ascii", "replace"),
        params=request.form, signature=request.headers.get("X-Twilio-Signature"))


def _empty_twiml():
    return Response(twilio_webhooks.EMPTY_TWIML, mimetype="text/xml")


@webhooks_bp.post("/twilio/status")
def twilio_status():
    """Twilio's status callback for a message the hub sent (its ``StatusCallback``)."""
    provider = _signed_twilio_provider()
    query = load_or_raise(TwilioStatusQuerySchema, request.args)
    twilio_webhooks.receive_status(provider, load_or_raise(TwilioStatusCallbackSchema,
                                                           request.form), query["recipient"])
    return _empty_twiml()


@webhooks_bp.post("/twilio/inbound")
def twilio_inbound():
    """An SMS sent to the hub's Twilio number: answered with empty TwiML (no reply)."""
    provider = _signed_twilio_provider()
    twilio_webhooks.receive_inbound(provider, load_or_raise(TwilioInboundSchema, request.form))
    return _empty_twiml()
