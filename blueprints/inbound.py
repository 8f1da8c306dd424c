"""``/api/inbound``: replies people sent; ``/api/simulator/inbound`` makes one up (admins)."""

from flask import Blueprint, current_app

from blueprints.common import admin_only, authenticated, json_body, query_args
from schemas.inbound import InboundListQuerySchema, SimulatedInboundSchema
from services.errors import NotFound
from services.messaging import inbound
from services.messaging.providers.base import InboundSms

inbound_bp = Blueprint("inbound", __name__, url_prefix="/api")


@inbound_bp.get("/inbound")
@authenticated
def list_inbound(identity):
    query = query_args(InboundListQuerySchema)
    return inbound.list_visible(identity, limit=query["limit"], before=query["before"])


@inbound_bp.post("/simulator/inbound")
@admin_only
def inject_inbound(identity):
    """What a real provider's inbound path would hand over, for the simulated provider only:
    a test or the testSocket page runs the whole two-way flow without a provider."""
    if current_app.config["SMS_PROVIDER"] != "simulated":
        raise NotFound("Only the simulated provider takes injected inbound messages")
    body = json_body(SimulatedInboundSchema)
    sms = InboundSms(sender=body["sender"], to=body["to"] or current_app.config[
        "SIMULATED_SMS_FROM"], body=body["body"], provider_message_id=body["providerMessageId"])
    return inbound.receive_inbound(sms), 201
