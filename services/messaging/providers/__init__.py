"""SMS providers: the contract (``base``), the simulator, and the one ``SMS_PROVIDER`` names."""

from services.messaging.providers.simulated import (
    INVALID_NUMBER,
    UNROUTABLE_NUMBER,
    DeliveryReceipt,
    SendResult,
    SimulatedProvider,
    build_provider,
)

__all__ = ["INVALID_NUMBER", "UNROUTABLE_NUMBER", "DeliveryReceipt", "SendResult",
           "SimulatedProvider", "build_provider"]
