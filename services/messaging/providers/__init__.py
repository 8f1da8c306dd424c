"""SMS providers: the contract (``base``), the simulator, and the one ``SMS_PROVIDER`` names."""

from __future__ import annotations

from flask import Flask

from services.messaging.providers.base import (
    InboundHandler,
    InboundSms,
    Outcome,
    OutgoingSms,
    ProviderReceipt,
    SmsProvider,
    SubmitResult,
)
from services.messaging.providers.simulated import SimulatedProvider
from services.messaging.providers.smpp import build_smpp_provider
from services.messaging.providers.twilio import TwilioProvider, TwilioSettings

__all__ = ["InboundHandler", "InboundSms", "OutgoingSms", "Outcome", "ProviderReceipt",
           "SimulatedProvider", "SmsProvider", "SubmitResult", "build_provider"]


def build_provider(app: Flask) -> SmsProvider:
    """The provider ``SMS_PROVIDER`` names, configured from the app's settings (not started)."""
    config = app.config
    name = config["SMS_PROVIDER"]
    if name == "simulated":
        return SimulatedProvider(
            latency=config["SIMULATED_SMS_LATENCY"],
            receipt_delay=config["SIMULATED_RECEIPT_DELAY"],
            send_log=config["SIMULATED_SMS_SEND_LOG"],
            idempotent=config["SIMULATED_SMS_IDEMPOTENT"],
            max_in_flight=config["DISPATCH_CONCURRENCY"],
            sender=config["SIMULATED_SMS_FROM"],
        )
    if name == "twilio":
        return TwilioProvider(TwilioSettings.from_config(config))
    if name == "smpp":
        return build_smpp_provider(config)
    raise RuntimeError(f"unknown SMS_PROVIDER {name!r}")
