"""A STOP through the SMSC (``deliver_sm``) in the middle of a 2,000-recipient send through
two nodes: nothing reaches the SMSC for that number a second after the hub answered it."""

from __future__ import annotations

import random
import time

from tests.support import (
    REDIS_URL,
    eventually,
    redis_reachable,
    register_user,
    require_service,
    smpp_hub_env,
)
from tests.support import SMS_SENDER as SENDER


def _status_of(node, token, message_id, phone):
    def final():
        message = node.api.get(f"/api/messages/{message_id}", token).json()
        return message if message["status"] not in ("SENDING", "PENDING") else None
    eventually(final, timeout=60, interval=0.5)
    page = node.api.get(f"/api/messages/{message_id}/recipients?limit=1000", token).json()
    return {r["phone"]: r for r in page["recipients"]}[phone]


def test_a_stop_through_the_smsc_stops_a_2000_recipient_send_within_a_second(fake_smsc,
                                                                             hub_factory):
    require_service("Redis", redis_reachable())
    database = hub_factory.database("postgresql")
    env = smpp_hub_env(fake_smsc, SOCKETIO_MESSAGE_QUEUE=REDIS_URL,
                   SOCKETIO_CHANNEL=f"smpp-stop-{random.randrange(10**8)}",
                   SMS_MAX_PER_SECOND="250", DISPATCH_BATCH_SIZE="20")
    node_a = hub_factory({**env, "NODE_ID": "smpp-a"}, database_url=database, name="smpp-a")
    node_b = hub_factory({**env, "NODE_ID": "smpp-b"}, database_url=database, name="smpp-b")
    token = register_user(node_a, admin=True).token
    target = f"+1555{random.randrange(10**7):07d}"
    others = iter(f"+1556{n:07d}" for n in range(2000))
    messages = []
    for position in (5, 250, 250, 250):
        phones = [next(others) for _ in range(499)]
        phones.insert(position, target)
        answer = node_b.api.post("/api/messages", token,
                                 json={"body": f"Batch {len(messages)}", "recipients": phones})
        assert answer.status_code == 202, answer.text
        messages.append(answer.json()["id"])
    eventually(lambda: any(e["dest"] == target[1:] for e in fake_smsc.submissions()),
               timeout=30, interval=0.2)

    answered = fake_smsc.send_mo(target, SENDER, "STOP")
    acknowledged = time.time()
    assert answered["resp_status"] == 0

    outcomes = [_status_of(node_a, token, message_id, target) for message_id in messages]
    sent = [e["ts"] - acknowledged for e in fake_smsc.submissions() if e["dest"] == target[1:]]
    assert sent and max(sent) <= 1.0, sent
    assert outcomes[-1]["status"] == "SUPPRESSED" and outcomes[-1]["errorCode"] == "opted_out"
    assert sum(o["status"] == "SUPPRESSED" for o in outcomes) >= 2
    assert len(fake_smsc.submissions()) >= 1900  # everyone else was sent to
