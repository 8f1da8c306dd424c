"""Inbound SMS: the one place every provider's inbound messages arrive.

Twilio's inbound webhook and an SMSC's ``deliver_sm`` both end here, as the
provider contract's ``InboundSms``, through the handler the dispatcher gives
each provider. Storing them, the ``inbound_message`` event, keywords (STOP,
START, HELP) and the suppression list belong here (``../SMS.md`` section 2)
and are not built yet: for now an inbound message is logged and counted,
without its text or the person's full number.
"""

from __future__ import annotations

import logging

from services.messaging.providers.base import InboundSms
from services.observability import metrics

log = logging.getLogger(__name__)


def receive_inbound(sms: InboundSms) -> None:
    """An SMS a person sent to one of the hub's senders."""
    metrics.inbound_sms.inc()
    log.info("inbound SMS %s from …%s to %s (%d characters)", sms.provider_message_id,
             sms.sender[-4:], sms.to, len(sms.body))
