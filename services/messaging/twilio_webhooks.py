"""What Twilio posts to the hub: status callbacks and inbound messages.

A post counts only when its ``X-Twilio-Signature`` is the SDK's
``RequestValidator`` signature, with ``TWILIO_AUTH_TOKEN``, of the URL Twilio
called (``PUBLIC_BASE_URL`` + path + query: the hub behind a proxy sees
another) and the posted parameters. Anything else is refused before it is
read, so a forged, unsigned or altered post changes nothing. A replay of a
genuine post changes nothing either: a receipt never moves a recipient
backwards and a repeated one is ignored.

Accepted posts become the provider contract's ``ProviderReceipt`` and
``InboundSms`` and go to the handlers the dispatcher gave the running
provider, as an SMPP receipt would: the dispatcher retries a receipt that
overtook the commit of its own send. A callback that only says how far the
message got (``queued``, ``sending``...) moves no status: it becomes the
recipient's ``providerStatus`` at once (``provider_statuses``), unless a later
word is already there; so does ``sent`` for a recipient already ``SENT``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from twilio.request_validator import RequestValidator

from models.message import RecipientStatus
from services.errors import Forbidden
from services.messaging import provider_statuses
from services.messaging.providers.base import InboundSms, ProviderReceipt
from services.messaging.providers.twilio import TwilioProvider, running_provider

# Twilio's MessageStatus -> the recipient status it leads to; the rest change nothing.
STATUS_EFFECTS = {"sent": RecipientStatus.SENT, "delivered": RecipientStatus.DELIVERED,
                  "undelivered": RecipientStatus.FAILED, "failed": RecipientStatus.FAILED}
# Twilio's words for a message on its way, each after those before it; the final words
# come after all of them.
PROGRESS = ("accepted", "scheduled", "queued", "sending", "sent")
NOT_BILLED = {"failed"}  # Twilio charges nothing for a message it reports failed
EMPTY_TWIML = "<Response/>"


def signed_provider(*, path: str, query: str, params: Mapping[str, Any],
                    signature: str | None) -> TwilioProvider:
    """The running Twilio provider, if this post is signed by Twilio for it; else
    ``Forbidden``, naming what is wrong without helping a forger."""
    provider = running_provider()
    if provider is None:
        raise Forbidden("Twilio webhooks are off: this hub's SMS_PROVIDER is not twilio")
    if not signature:
        raise Forbidden("Missing X-Twilio-Signature")
    settings = provider.settings
    url = settings.public_base_url + path + (f"?{query}" if query else "")
    if not RequestValidator(settings.auth_token).validate(url, params, signature):
        raise Forbidden("Invalid X-Twilio-Signature for this URL and these parameters")
    return provider


def receipt_from_status(callback: Mapping[str, Any], recipient_id: int | None) -> ProviderReceipt:
    """A validated status callback (``schemas.twilio.TwilioStatusCallbackSchema``) as a
    receipt; ``recipient_id`` from its URL ties it to the recipient even when the send's
    answer, with the message SID, never came back."""
    status = callback["MessageStatus"]
    effect = STATUS_EFFECTS.get(status)
    error_code = callback["ErrorCode"] if effect == RecipientStatus.FAILED else None
    return ProviderReceipt(
        provider_message_id=callback["MessageSid"], status=effect, provider_status=status,
        provider_error_code=error_code,
        error_code="delivery_failed" if effect == RecipientStatus.FAILED else None,
        error_message=(f"Twilio reported the SMS {status}"
                       + (f" (error {error_code})" if error_code else "")
                       if effect == RecipientStatus.FAILED else None),
        billable=status not in NOT_BILLED, occurred_at=datetime.now(UTC),
        recipient_id=recipient_id)


def receive_status(provider: TwilioProvider, callback: Mapping[str, Any],
                   recipient_id: int | None) -> ProviderReceipt:
    """Show a word of progress as the recipient's ``providerStatus`` now, and hand a
    callback that may move its status to the dispatcher; returns the receipt it made."""
    receipt = receipt_from_status(callback, recipient_id)
    if receipt.provider_status in PROGRESS:
        provider_statuses.record_progress([provider_statuses.Progress(
            receipt.provider_status, PROGRESS[:PROGRESS.index(receipt.provider_status)],
            receipt.provider_message_id, recipient_id)])
    if receipt.status is not None or receipt.provider_status not in PROGRESS:
        provider.receive_receipt(receipt)
    return receipt


def receive_inbound(provider: TwilioProvider, post: Mapping[str, Any]) -> InboundSms:
    """Hand an inbound message (``schemas.twilio.TwilioInboundSchema``) to the dispatcher."""
    sms = InboundSms(sender=post["From"], to=post["To"], body=post["Body"],
                     provider_message_id=post["MessageSid"], received_at=datetime.now(UTC),
                     sent_as=post["MessagingServiceSid"])
    provider.receive_inbound(sms)
    return sms
