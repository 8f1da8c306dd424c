"""Shapes of REST responses, for the OpenAPI document (and the acks that reuse them).

Each field carries an ``example``; ``schemas.documentation.example_of`` builds
the example of a whole response from them.
"""

from marshmallow import Schema, fields

from models.message import MessageStatus
from schemas.auth import UserSchema
from schemas.messages import RECIPIENT_STATUSES
from schemas.notifications import NOTIFICATION_TYPES

MESSAGE_STATUSES = tuple(status.value for status in MessageStatus)
WHEN = "2026-05-01T09:30:00.000Z"


def _enum(values: tuple[str, ...], example: str) -> dict:
    return {"enum": list(values), "example": example}


class ErrorBodySchema(Schema):
    code = fields.String(required=True, metadata={"example": "invalid_payload"})
    message = fields.String(required=True, metadata={"example": "Invalid payload"})
    details = fields.Raw(metadata={
        "description": "marshmallow's messages per field, for invalid input",
        "example": {"title": ["Missing data for required field."]}})


class ErrorSchema(Schema):
    error = fields.Nested(ErrorBodySchema, required=True)


class UserEnvelopeSchema(Schema):
    user = fields.Nested(UserSchema, required=True)


class MeSchema(UserEnvelopeSchema):
    role = fields.String(required=True, metadata={
        "description": "The role the presented token carries", "example": "admin"})


class LoginResponseSchema(Schema):
    accessToken = fields.String(required=True, metadata={"example": "eyJhbGciOiJIUzI1NiJ9.e30.x"})
    refreshToken = fields.String(required=True,
                                 metadata={"example": "eyJhbGciOiJIUzI1NiJ9.e30.y"})
    user = fields.Nested(UserSchema, required=True)


class AccessTokenSchema(Schema):
    accessToken = fields.String(required=True, metadata={"example": "eyJhbGciOiJIUzI1NiJ9.e30.x"})


class RevokedSchema(Schema):
    revoked = fields.Boolean(required=True, metadata={"example": True})


class NotificationSchema(Schema):
    id = fields.String(required=True, metadata={"example": "12"})
    type = fields.String(required=True, metadata=_enum(NOTIFICATION_TYPES, "system"))
    title = fields.String(required=True, metadata={"example": "Invoice ready"})
    message = fields.String(required=True, metadata={"example": "Your invoice for May"})
    data = fields.Raw(metadata={"description": "Only when the sender attached some",
                                "example": {"invoiceId": 7}})
    timestamp = fields.String(required=True, metadata={"example": WHEN})
    read = fields.Boolean(required=True, metadata={"example": False})
    unreadCount = fields.Integer(allow_none=True, metadata={
        "description": "The user's unread count; null on a broadcast (one packet for all)",
        "example": 3})


class NotificationPageSchema(Schema):
    notifications = fields.List(fields.Nested(NotificationSchema), required=True)
    unreadCount = fields.Integer(required=True, metadata={"example": 3})
    nextCursor = fields.String(allow_none=True, metadata={
        "description": "``before`` of the next page; null on the last", "example": None})


class MarkReadSchema(Schema):
    id = fields.String(required=True, metadata={"example": "12"})
    unreadCount = fields.Integer(required=True, metadata={"example": 2})


class NotifyResponseSchema(Schema):
    notification = fields.Nested(NotificationSchema, required=True)
    delivered = fields.Integer(required=True, metadata={
        "description": "Live connections reached", "example": 1})


class BroadcastResponseSchema(Schema):
    notification = fields.Nested(NotificationSchema, required=True)
    recipients = fields.Integer(required=True, metadata={"example": 250})


class NodeSchema(Schema):
    id = fields.String(required=True, metadata={"example": "hub-1:5001"})
    connections = fields.Integer(required=True, metadata={"example": 412})
    lastHeartbeat = fields.String(required=True, metadata={"example": WHEN})


class StatsSchema(Schema):
    totalConnections = fields.Integer(required=True, metadata={"example": 412})
    onlineUsers = fields.Integer(required=True, metadata={"example": 380})
    rooms = fields.Integer(required=True, metadata={"example": 795})
    nodes = fields.List(fields.Nested(NodeSchema), required=True)
    uptimeSeconds = fields.Float(required=True, metadata={"example": 86400.5})


class OnlineSchema(Schema):
    userId = fields.String(required=True, metadata={"example": "1"})
    online = fields.Boolean(required=True, metadata={"example": True})
    connections = fields.Integer(required=True, metadata={"example": 2})


class CountSchema(Schema):
    count = fields.Integer(required=True, metadata={"example": 3})


class PingResponseSchema(Schema):
    sent = fields.Integer(required=True, metadata={"example": 412})
    timestamp = fields.String(required=True, metadata={"example": WHEN})


class MessageSchema(Schema):
    id = fields.String(required=True, metadata={"example": "42"})
    status = fields.String(required=True, metadata=_enum(MESSAGE_STATUSES, "SENDING"))
    body = fields.String(required=True, metadata={"example": "Your code is 4821"})
    encoding = fields.String(required=True, metadata=_enum(("GSM-7", "UCS-2"), "GSM-7"))
    segments = fields.Integer(required=True, metadata={"example": 1})
    recipientCount = fields.Integer(required=True, metadata={"example": 2})
    successCount = fields.Integer(required=True, metadata={"example": 0})
    failedCount = fields.Integer(required=True, metadata={"example": 0})
    deliveredCount = fields.Integer(required=True, metadata={"example": 0})
    statusCounts = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True,
                               metadata={"description": "Recipients per status, for each "
                                                        "status present",
                                         "example": {"PENDING": 2}})
    cost = fields.Float(required=True, metadata={"example": 0.0})
    version = fields.Integer(required=True, metadata={"example": 1})
    createdAt = fields.String(required=True, metadata={"example": WHEN})
    completedAt = fields.String(allow_none=True, metadata={"example": None})
    sendAt = fields.String(allow_none=True, metadata={
        "description": "When a scheduled message becomes sendable; null: sent at once",
        "example": None})
    quietHours = fields.Boolean(required=True, metadata={
        "description": "Each recipient is reached only outside QUIET_HOURS in its own time",
        "example": False})
    validitySeconds = fields.Integer(required=True, allow_none=True, metadata={
        "description": "How long each recipient may wait to be sent once it could be, then "
                       "EXPIRED; null for a message older than the field: SMS_VALIDITY_SECONDS",
        "example": 14400})


class MessageCreatedSchema(MessageSchema):
    duplicatesRemoved = fields.Integer(required=True, metadata={
        "description": "Recipients dropped as repeats of another (after E.164 formatting)",
        "example": 0})
    pricePerSegment = fields.Float(required=True, metadata={
        "description": "SMS_PRICE_PER_SEGMENT: the price of a segment to a country "
                       "SMS_PRICES does not list", "example": 0.0075})


class InvalidRecipientSchema(Schema):
    index = fields.Integer(required=True, metadata={"description": "Position in `recipients`",
                                                    "example": 2})
    value = fields.String(required=True, metadata={"description": "The entry, cut at 32 "
                                                                  "characters", "example": "555"})
    reason = fields.String(required=True, metadata={
        "example": "must start with + and the country code"})


class CountryCostSchema(Schema):
    country = fields.String(required=True, metadata={
        "description": "ISO 3166-1 alpha-2 region of the numbers, ZZ for none", "example": "US"})
    recipients = fields.Integer(required=True, metadata={"example": 2})
    pricePerSegment = fields.Float(required=True, metadata={"example": 0.0079})
    cost = fields.Float(required=True, metadata={"example": 0.0316})


class MessagePreviewSchema(Schema):
    recipientCount = fields.Integer(required=True, metadata={
        "description": "Valid unique numbers, suppressed ones included", "example": 2})
    invalid = fields.List(fields.Nested(InvalidRecipientSchema), required=True, metadata={
        "description": "What POST /api/messages would refuse: the items of its 400 (the first "
                       "100)"})
    duplicatesRemoved = fields.Integer(required=True, metadata={"example": 1})
    suppressed = fields.Integer(required=True, metadata={
        "description": "Numbers of recipientCount on the suppression list: they cost nothing",
        "example": 0})
    encoding = fields.String(required=True, metadata=_enum(("GSM-7", "UCS-2"), "UCS-2"))
    segments = fields.Integer(required=True, metadata={"example": 2})
    nonGsmCharacters = fields.List(fields.String(), required=True, metadata={
        "description": "The characters that made the body UCS-2, each once", "example": ["✓"]})
    cost = fields.Float(required=True, metadata={
        "description": "What the message costs when every recipient is accepted",
        "example": 0.0316})
    byCountry = fields.List(fields.Nested(CountryCostSchema), required=True)


class MessagePageSchema(Schema):
    messages = fields.List(fields.Nested(MessageSchema), required=True)
    nextCursor = fields.String(allow_none=True, metadata={"example": None})


class ProviderWordsSchema(Schema):
    """What the provider said of a recipient: in ``recipient_update`` and the REST shape."""

    providerStatus = fields.String(required=True, allow_none=True, metadata={
        "description": "The provider's own word for it (e.g. undelivered, UNDELIV)",
        "example": "failed"})
    providerErrorCode = fields.String(required=True, allow_none=True, metadata={
        "description": "The provider's error code, always as text (21211, 0x58)",
        "example": "21211"})
    parts = fields.Integer(required=True, allow_none=True, metadata={
        "description": "Segments sent (the provider's count when it gives one)", "example": 1})
    retryable = fields.Boolean(required=True, metadata={
        "description": "The provider called the failure temporary: POST .../retry sends it "
                       "again", "example": False})


class RecipientSchema(ProviderWordsSchema):
    id = fields.String(required=True, metadata={"example": "7"})
    recipientId = fields.String(required=True, metadata={"example": "7"})
    messageId = fields.String(required=True, metadata={"example": "42"})
    phone = fields.String(required=True, metadata={"example": "+15005550001"})
    status = fields.String(required=True, metadata=_enum(RECIPIENT_STATUSES, "FAILED"))
    version = fields.Integer(required=True, metadata={"example": 3})
    providerMessageId = fields.String(allow_none=True, metadata={"example": None})
    errorCode = fields.String(metadata={"description": "Only when it failed",
                                        "example": "invalid_number"})
    errorMessage = fields.String(metadata={"description": "Only when it failed",
                                           "example": "Invalid phone number"})
    cost = fields.Float(required=True, metadata={"example": 0.0})
    sentAt = fields.String(allow_none=True, metadata={"example": WHEN})
    deliveredAt = fields.String(allow_none=True, metadata={"example": None})


class RecipientPageSchema(Schema):
    recipients = fields.List(fields.Nested(RecipientSchema), required=True)
    nextCursor = fields.String(allow_none=True, metadata={"example": None})


class RetryResultSchema(Schema):
    queued = fields.Integer(required=True, metadata={
        "description": "Recipients queued again: UNKNOWN, EXPIRED and retryable FAILED",
        "example": 1})
    message = fields.Nested(MessageSchema, required=True)


class ReceiptResultSchema(Schema):
    received = fields.Integer(required=True, metadata={"example": 1})
    applied = fields.Integer(required=True, metadata={"example": 1})
    unknown = fields.Integer(required=True, metadata={"example": 0})


class DashboardFiguresSchema(Schema):
    """Everyone's ``dashboard_stats``: the README's "Analytics figures" say what each means."""

    messagesToday = fields.Integer(required=True, metadata={"example": 3})
    messagesTotal = fields.Integer(required=True, metadata={"example": 120})
    recipientsToday = fields.Integer(required=True, metadata={"example": 9})
    recipientsTotal = fields.Integer(required=True, metadata={"example": 4100})
    sent = fields.Integer(required=True, metadata={"example": 4000})
    delivered = fields.Integer(required=True, metadata={"example": 3950})
    failed = fields.Integer(required=True, metadata={"example": 100})
    deliveryRate = fields.Float(required=True, metadata={"example": 0.9875})
    costToday = fields.Float(required=True, metadata={"example": 0.0675})
    costMonth = fields.Float(required=True, metadata={"example": 12.3})
    costTotal = fields.Float(required=True, metadata={"example": 30.0})
    inFlight = fields.Integer(required=True, metadata={"example": 1})
    scheduled = fields.Integer(required=True, metadata={"example": 0})
    paused = fields.Integer(required=True, metadata={"example": 0})
    inboundToday = fields.Integer(required=True, metadata={"example": 2})
    inboundTotal = fields.Integer(required=True, metadata={"example": 14})


class DashboardStatsSchema(DashboardFiguresSchema):
    unreadNotifications = fields.Integer(required=True, metadata={"example": 3})


class MessagesByStatusSchema(Schema):
    SCHEDULED = fields.Integer(required=True, metadata={"example": 0})
    SENDING = fields.Integer(required=True, metadata={"example": 1})
    PAUSED = fields.Integer(required=True, metadata={"example": 0})
    SENT = fields.Integer(required=True, metadata={"example": 118})
    FAILED = fields.Integer(required=True, metadata={"example": 1})
    CANCELED = fields.Integer(required=True, metadata={"example": 0})


class RecipientsByStatusSchema(Schema):
    PENDING = fields.Integer(required=True, metadata={"example": 0})
    SCHEDULED = fields.Integer(required=True, metadata={"example": 0})
    SENDING = fields.Integer(required=True, metadata={"example": 2})
    SENT = fields.Integer(required=True, metadata={"example": 50})
    DELIVERED = fields.Integer(required=True, metadata={"example": 3950})
    FAILED = fields.Integer(required=True, metadata={"example": 100})
    SUPPRESSED = fields.Integer(required=True, metadata={"example": 0})
    EXPIRED = fields.Integer(required=True, metadata={"example": 0})
    CANCELED = fields.Integer(required=True, metadata={"example": 0})
    UNKNOWN = fields.Integer(required=True, metadata={"example": 0})


class HourSchema(Schema):
    hour = fields.String(required=True, metadata={"example": "2026-05-01T09:00:00.000Z"})
    sent = fields.Integer(required=True, metadata={"example": 9})
    delivered = fields.Integer(required=True, metadata={"example": 8})
    failed = fields.Integer(required=True, metadata={"example": 1})


class MessageStatsSchema(Schema):
    messagesByStatus = fields.Nested(MessagesByStatusSchema, required=True)
    recipientsByStatus = fields.Nested(RecipientsByStatusSchema, required=True)
    hourly = fields.List(fields.Nested(HourSchema), required=True,
                         metadata={"description": "The last 24 hours, oldest first"})


class DaySchema(Schema):
    day = fields.String(required=True, metadata={"example": "2026-05-01"})
    segments = fields.Integer(required=True, metadata={"example": 9})
    cost = fields.Float(required=True, metadata={"example": 0.0675})


class UsageStatsSchema(Schema):
    daily = fields.List(fields.Nested(DaySchema), required=True,
                        metadata={"description": "The last 30 days, oldest first"})


class NodeConnectionsSchema(Schema):
    id = fields.String(required=True, metadata={"example": "hub-1:5001"})
    connections = fields.Integer(required=True, metadata={"example": 412})


class GlobalStatsSchema(DashboardFiguresSchema):
    onlineUsers = fields.Integer(required=True, metadata={"example": 380})
    connectionsByNode = fields.List(fields.Nested(NodeConnectionsSchema), required=True)
    eventsInPerSecond = fields.Float(required=True, metadata={"example": 12.5})
    eventsOutPerSecond = fields.Float(required=True, metadata={"example": 40.25})


class HealthSchema(Schema):
    status = fields.String(required=True, metadata={"example": "ok"})
    node = fields.String(allow_none=True, metadata={"example": "hub-1:5001"})


class ReadySchema(Schema):
    status = fields.String(required=True, metadata={"example": "ready"})
    checks = fields.Dict(keys=fields.String(), values=fields.String(), required=True,
                         metadata={"description": "database, and with a queue messageQueue "
                                                  "and messageQueueListener: ok or why not",
                                   "example": {"database": "ok"}})
    provider = fields.String(required=True, metadata={
        "description": "SMS_PROVIDER: who sends the SMS", "example": "simulated"})


class InternalsSchema(Schema):
    """Sizes of this process's per-connection structures, for leak hunting."""

    engineioSockets = fields.Integer(required=True, metadata={"example": 3})
    socketioRooms = fields.Integer(required=True, metadata={"example": 7})
    socketioMemberships = fields.Integer(required=True, metadata={"example": 9})
    socketioSids = fields.Integer(required=True, metadata={"example": 3})
    socketioRoomIndex = fields.Integer(required=True, metadata={"example": 3})
    pendingConnect = fields.Integer(required=True, metadata={"example": 0})
    pendingDisconnect = fields.Integer(required=True, metadata={"example": 0})
    callbacks = fields.Integer(required=True, metadata={"example": 0})
    binaryPackets = fields.Integer(required=True, metadata={"example": 0})
    environ = fields.Integer(required=True, metadata={"example": 3})
    protocolErrors = fields.Integer(required=True, metadata={"example": 0})
    registryConnections = fields.Integer(required=True, metadata={"example": 3})
    registryUsers = fields.Integer(required=True, metadata={"example": 2})
    engineClients = fields.Integer(required=True, metadata={"example": 3})
    engineAddresses = fields.Integer(required=True, metadata={"example": 1})
    awaitingConnect = fields.Integer(required=True, metadata={"example": 0})
    authenticating = fields.Integer(required=True, metadata={"example": 0})
    rateLimitBuckets = fields.Integer(required=True, metadata={"example": 3})
    analyticsSubscribers = fields.Integer(required=True, metadata={"example": 1})
    greenlets = fields.Integer(required=True, metadata={"example": 25})
    tracebacks = fields.Integer(
        required=True, metadata={"description": "traceback entries alive in the process; each "
                                                "keeps a frame and its locals", "example": 0})
    requestReaders = fields.Integer(
        required=True, metadata={"description": "open buffered readers of HTTP requests (8 KB "
                                                "each); an open WebSocket keeps none",
                                 "example": 0})
    requestHeads = fields.Integer(
        required=True, metadata={"description": "parsed heads of HTTP requests alive in the "
                                                "process; an open WebSocket keeps none",
                                 "example": 0})
    requestEnvirons = fields.Integer(
        required=True, metadata={"description": "WSGI environs of HTTP requests alive in the "
                                                "process; an open WebSocket keeps none, only "
                                                "the keys its session reads later",
                                 "example": 0})
    rssKb = fields.Integer(required=True, metadata={"example": 81234})


class QuotaSchema(Schema):
    userId = fields.String(required=True, metadata={"example": "1"})
    dailyRecipientQuota = fields.Integer(required=True, metadata={"example": 10000})
    isDefault = fields.Boolean(required=True, metadata={"example": True})
    usedToday = fields.Integer(required=True, metadata={"example": 120})
    remainingToday = fields.Integer(required=True, metadata={"example": 9880})
    renewsAt = fields.String(required=True, metadata={"example": "2026-05-02T00:00:00.000Z"})


class InboundMessageSchema(Schema):
    id = fields.String(required=True, metadata={"example": "7"})
    sender = fields.String(required=True, data_key="from", metadata={
        "description": "E.164; as the provider wrote it when fromValid is false; "
                       "erased:<hash> once erased", "example": "+15551234567"})
    fromValid = fields.Boolean(required=True, metadata={
        "description": "false when the sender's number does not parse", "example": True})
    to = fields.String(required=True, metadata={"example": "+15005550006"})
    body = fields.String(required=True, allow_none=True, metadata={
        "description": "null once the sender was erased", "example": "STOP"})
    receivedAt = fields.String(required=True, metadata={"example": WHEN})
    keyword = fields.String(metadata={**_enum(("STOP", "START", "HELP"), "STOP"),
                                      "description": "Only when the whole message is one"})


class InboundPageSchema(Schema):
    inbound = fields.List(fields.Nested(InboundMessageSchema), required=True)
    nextCursor = fields.String(allow_none=True, metadata={
        "description": "``before`` of the next page; null on the last", "example": None})


class SuppressionSchema(Schema):
    phone = fields.String(required=True, metadata={
        "description": "E.164, or erased:<hash> once erased", "example": "+15551234567"})
    sender = fields.String(required=True, metadata={"example": "*"})
    reason = fields.String(required=True, metadata=_enum(
        ("keyword", "provider", "manual", "erased"), "manual"))
    createdAt = fields.String(required=True, metadata={"example": WHEN})


class SuppressionPageSchema(Schema):
    suppressions = fields.List(fields.Nested(SuppressionSchema), required=True)
    nextCursor = fields.String(allow_none=True, metadata={
        "description": "``before`` of the next page; null on the last", "example": None})


class RemovedSchema(Schema):
    removed = fields.Integer(required=True, metadata={"example": 1})


class ErasureSchema(Schema):
    phone = fields.String(required=True, metadata={
        "description": "What replaced the number", "example": "erased:" + "3f" * 32})
    recipients = fields.Integer(required=True, metadata={"example": 3})
    inbound = fields.Integer(required=True, metadata={"example": 1})
    suppressions = fields.Integer(required=True, metadata={"example": 1})
