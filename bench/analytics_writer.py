"""The delivery pipeline's writes without its cost: another node's work, seen in the database.

``bench/analytics.py`` measures what live analytics cost the node that holds
the subscribers. The real pipeline (HTTP, dispatcher, provider, receipts)
costs about 18 ms of CPU per one-recipient message on these machines, so
100 messages per second cannot run on the measured core beside anything
else. This process, on the load generator's core, makes the same rows move
the same way at the same rate, as other nodes of the hub would: each message
is created ``SENDING`` with its recipient claimed by this writer (so the
measured hub's dispatcher leaves it alone), sent on the next tick
(``SENT``, or ``FAILED`` for one in twenty, with cost and counters as the
dispatcher records them, plus the owner's "Message sent" notification), and
delivered 0.2 s later; each step commits with ``analytics.mark_changed`` for
the owners, the same marks the pipeline makes.

Reads commands on stdin, one per line, and answers each with one JSON line:
``rate N`` (messages created per second from now on), ``count``, ``quit``.

    python -m bench.analytics_writer DATABASE_URL TOKENS_JSON
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from collections import deque
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

TICK = 0.05
RECEIPT_DELAY = 0.2
REFUSED_NUMBER = "+15005550001"
# Recipients are created already claimed by this "node", so the measured hub's
# dispatcher (which claims PENDING rows) leaves them alone.
WRITER_NODE = "bench-analytics-writer"


def main() -> None:
    url, tokens_file = sys.argv[1:3]
    from sqlalchemy import insert, update

    from app import create_app
    from config import _normalise_database_url
    from extensions import db
    from models import Message, Notification, Recipient
    from models.message import MessageStatus, RecipientStatus
    from services import analytics_marks as analytics
    from services.messaging.sms_encoding import analyse_body, segment_cost

    users = [int(u["id"]) for u in json.loads(Path(tokens_file).read_text())["users"]]
    app = create_app("testing", SQLALCHEMY_DATABASE_URI=_normalise_database_url(url),
                     LOG_LEVEL="WARNING")
    price = app.config["SMS_PRICE_PER_SEGMENT"]
    commands: queue.Queue[str] = queue.Queue()

    def read_commands() -> None:
        for line in sys.stdin:
            commands.put(line.strip())
        commands.put("quit")
    threading.Thread(target=read_commands, daemon=True).start()

    def answer(**values) -> None:
        print(json.dumps(values), flush=True)

    rate, phase_start, phase_created = 0.0, time.monotonic(), 0
    created = completed = 0
    to_send: list[tuple[int, int, int, str, int]] = []   # message, recipient, user, phone, segs
    to_deliver: deque[tuple[float, int, int, int]] = deque()  # sent at, message, recipient, user
    with app.app_context():
        while True:
            started = time.monotonic()
            while not commands.empty():
                command = commands.get()
                if command == "quit":
                    answer(created=created, completed=completed)
                    return
                if command.startswith("rate "):
                    rate, phase_start, phase_created = float(command[5:]), started, 0
                answer(created=created, completed=completed)
            now = datetime.now(UTC)
            # Receipts: recipients sent RECEIPT_DELAY ago are delivered.
            due = []
            while to_deliver and to_deliver[0][0] <= started - RECEIPT_DELAY:
                due.append(to_deliver.popleft())
            if due:
                db.session.execute(
                    update(Recipient).where(Recipient.id.in_([r for _, _, r, _ in due]))
                    .values(status=RecipientStatus.DELIVERED, delivered_at=now, updated_at=now,
                            version=Recipient.version + 1)
                    .execution_options(synchronize_session=False))
                db.session.execute(
                    update(Message).where(Message.id.in_([m for _, m, _, _ in due]))
                    .values(delivered_count=Message.delivered_count + 1, updated_at=now,
                            version=Message.version + 1)
                    .execution_options(synchronize_session=False))
                analytics.mark_changed({u for _, _, _, u in due})
                db.session.commit()
                completed += len(due)
            # Sends: last tick's messages are accepted, or refused for the refused number.
            if to_send:
                for message_id, recipient_id, user_id, phone, segments in to_send:
                    accepted = phone != REFUSED_NUMBER
                    cost = segment_cost(segments, price) if accepted else Decimal("0")
                    db.session.execute(
                        update(Recipient).where(Recipient.id == recipient_id)
                        .values(status=RecipientStatus.SENT if accepted else RecipientStatus.FAILED,
                                provider_message_id=f"bench_{recipient_id}" if accepted else None,
                                error_code=None if accepted else "invalid_number",
                                cost=cost, sent_at=now, updated_at=now,
                                version=Recipient.version + 1)
                        .execution_options(synchronize_session=False))
                    db.session.execute(
                        update(Message).where(Message.id == message_id)
                        .values(success_count=int(accepted), failed_count=int(not accepted),
                                cost=cost,
                                status=MessageStatus.SENT if accepted else MessageStatus.FAILED,
                                completed_at=now, updated_at=now, version=Message.version + 2)
                        .execution_options(synchronize_session=False))
                    db.session.add(Notification(
                        user_id=user_id, type="message_sent" if accepted else "message_failed",
                        title="Message sent" if accepted else "Message failed",
                        message="Sent to 1 of 1 recipients" if accepted else
                        "None of the 1 recipients could be sent to",
                        data={"messageId": str(message_id), "cost": float(cost)},
                        created_at=now))
                    if accepted:
                        to_deliver.append((started, message_id, recipient_id, user_id))
                    else:
                        completed += 1
                analytics.mark_changed({user for _, _, user, _, _ in to_send})
                db.session.commit()
                to_send = []
            # New messages, at the rate asked for.
            count = int((started - phase_start) * rate) - phase_created if rate else 0
            if count > 0:
                owners = set()
                for _ in range(count):
                    created += 1
                    phase_created += 1
                    user_id = users[created % len(users)]
                    owners.add(user_id)
                    body = f"analytics benchmark {created}"
                    shape = analyse_body(body)
                    # One in twenty refused, moving over the users from one lap to the next.
                    refused = (created + created // len(users)) % 20 == 0
                    phone = REFUSED_NUMBER if refused else f"+1555{created:07d}"
                    message_id = db.session.execute(
                        insert(Message).values(
                            user_id=user_id, body=body, encoding=shape.encoding,
                            segments=shape.segments, status=MessageStatus.SENDING,
                            recipient_count=1, cost=Decimal("0"), version=1, created_at=now,
                            updated_at=now)
                        .returning(Message.id)).scalar_one()
                    recipient_id = db.session.execute(
                        insert(Recipient).values(
                            message_id=message_id, phone=phone, status=RecipientStatus.SENDING,
                            claimed_by=WRITER_NODE, claimed_at=now, cost=Decimal("0"),
                            version=1, attempts=1, updated_at=now)
                        .returning(Recipient.id)).scalar_one()
                    to_send.append((message_id, recipient_id, user_id, phone, shape.segments))
                analytics.mark_changed(owners)
                db.session.commit()
            time.sleep(max(0.0, TICK - (time.monotonic() - started)))


if __name__ == "__main__":
    main()
