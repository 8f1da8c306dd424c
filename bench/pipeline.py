"""Delivery pipeline throughput: one 10,000-recipient message, with a tracker connected.

Measures how long ``POST /api/messages`` takes to answer, then how fast the
dispatcher sends (simulated provider, zero latency) until the message is
``SENT``, until every delivery receipt is in, and until the tracker has
received a ``DELIVERED`` update for every recipient; on SQLite and PostgreSQL.

The tracker handles each event on its reader thread: python-engineio's client
starts a thread per incoming message, and with thousands of events in flight
those threads fighting over the GIL, not the hub, would set the pace.

    python bench/pipeline.py [--recipients 10000] [--backends sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import WORK, fresh_postgres, machine  # noqa: E402
from tests.support import (  # noqa: E402
    LiveServer,
    RecordingClient,
    migrate_database,
    register_user,
    seed_admin,
)

MARKER = "<!-- bench/pipeline.py results -->"


def handle_inline(client: RecordingClient) -> None:
    """Run the client's event handlers on its reader thread instead of a new thread each."""
    trigger = client.sio.eio._trigger_event

    def inline(event, *args, run_async=False, **kwargs):
        return trigger(event, *args, **kwargs)
    client.sio.eio._trigger_event = inline


def measure(url: str, recipients: int) -> dict:
    migrate_database(url)
    seed_admin(url)
    server = LiveServer(url, name="pipeline", env={
        "SIMULATED_SMS_LATENCY": "0", "SIMULATED_RECEIPT_DELAY": "1.0", "LOG_LEVEL": "WARNING",
        "DISPATCH_BATCH_SIZE": "500", "DISPATCH_CONCURRENCY": "100"})
    server.start()
    try:
        user = register_user(server)
        tracker = RecordingClient(server.url)
        handle_inline(tracker)
        tracker.connect(token=user.token)
        phones = [f"+1555{i:07d}" for i in range(recipients)]
        started = time.perf_counter()
        response = server.api.post("/api/messages", user.token,
                                   json={"body": "benchmark", "recipients": phones})
        post_seconds = time.perf_counter() - started
        assert response.status_code == 202, response.text
        message_id = response.json()["id"]
        tracker.call("track_message", message_id, timeout=60)
        done = threading.Event()
        marks: dict[str, float] = {}

        def watch():
            seen, tracked = 0, set()
            while not done.is_set():
                if "delivered" not in marks:
                    message = server.api.get(f"/api/messages/{message_id}", user.token).json()
                    if message["status"] != "SENDING":
                        marks.setdefault("sent", time.perf_counter())
                    if message["deliveredCount"] == message["successCount"] == recipients:
                        marks["delivered"] = time.perf_counter()
                # Only the events that arrived since the last look: a full scan every
                # 100 ms would hold the GIL long enough to slow the tracker down.
                while seen < len(tracker.events):
                    name, payload = tracker.events[seen]
                    seen += 1
                    if name == "recipient_update" and payload["status"] == "DELIVERED":
                        tracked.add(payload["recipientId"])
                if len(tracked) == recipients:
                    marks["tracked"] = time.perf_counter()
                    done.set()
                elif not tracker.sio.connected:
                    done.set()
                time.sleep(0.1)
        thread = threading.Thread(target=watch)
        thread.start()
        done.wait(600)
        thread.join()
        updates = len(tracker.received("recipient_update"))
        connected = tracker.sio.connected
        tracker.close()
        sent_seconds = marks["sent"] - started
        delivered_seconds = marks["delivered"] - started
        tracked_seconds = marks["tracked"] - started if "tracked" in marks else None
        return {
            "post_ms": round(post_seconds * 1000, 1),
            "sent_s": round(sent_seconds, 2),
            "sent_per_s": round(recipients / sent_seconds),
            "delivered_s": round(delivered_seconds, 2),
            "delivered_per_s": round(recipients / delivered_seconds),
            "tracked_s": round(tracked_seconds, 2) if tracked_seconds else "–",
            "tracked_per_s": round(recipients / tracked_seconds) if tracked_seconds else "–",
            "tracker_updates": updates,
            "tracker_connected": "yes" if connected else "no",
        }
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    rows = {}
    for backend in args.backends.split(","):
        url = (f"sqlite:///{tempfile.mkdtemp(dir=WORK)}/hub.db" if backend == "sqlite"
               else fresh_postgres())
        if url:
            rows[backend] = measure(url, args.recipients)
            print(backend, rows[backend], file=sys.stderr)
    lines = [MARKER, f"## Delivery pipeline ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)", "",
             f"Machine: {machine()}. One message to {args.recipients:,} recipients, simulated "
             "provider with zero latency, receipts after 1 s, one tracker connected "
             "(it receives every `recipient_update`).",
             f"Command: `python bench/pipeline.py --recipients {args.recipients}`.", "",
             "| figure | " + " | ".join(rows) + " |", "| --- |" + " --- |" * len(rows)]
    labels = [("POST /api/messages answered (ms)", "post_ms"),
              ("all recipients sent or refused (s)", "sent_s"),
              ("recipients sent per second", "sent_per_s"),
              ("all delivery receipts applied (s)", "delivered_s"),
              ("recipients delivered per second, end to end", "delivered_per_s"),
              ("tracker has every recipient `DELIVERED` (s)", "tracked_s"),
              ("recipients per second as the tracker saw them", "tracked_per_s"),
              ("`recipient_update` events the tracker received", "tracker_updates"),
              ("tracker still connected at the end", "tracker_connected")]
    for label, key in labels:
        lines.append(f"| {label} | " + " | ".join(str(r[key]) for r in rows.values()) + " |")
    lines.append(MARKER)
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if MARKER in text:
        before, _, rest = text.partition(MARKER)
        text = before + "\n".join(lines) + rest.partition(MARKER)[2]
    else:
        text = text.rstrip() + "\n\n" + "\n".join(lines) + "\n"
    path.write_text(text)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
