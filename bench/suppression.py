"""What the suppression check costs a send, and how late a STOP can still be beaten.

In a gevent-patched process, as the server runs, on SQLite and PostgreSQL,
with 100,000 entries on the suppression list:

- the check's SQL time per recipient when 10,000 recipients are dispatched
  in batches of ``DISPATCH_BATCH_SIZE`` (200): one ``SendGate`` per batch,
  which is one indexed query for the batch's numbers;
- the delay from a STOP's commit to the last submission that could still go
  to that number: a gate asked for the number every 5 ms (200 submissions a
  second, all to that number: the worst case), a STOP committed by another
  connection at a random moment, the time from that commit to the last
  answer "not suppressed". 30 trials; median and worst.

    python -m bench.suppression [--backends sqlite,postgresql]
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402

import gevent  # noqa: E402
from sqlalchemy import delete, insert  # noqa: E402

from bench.run import POSTGRES_URL, WORK, fresh_postgres, machine, write_section  # noqa: E402
from tests.support import make_app, migrate_database  # noqa: E402

MARKER = "<!-- bench/suppression.py results -->"
ENTRIES = 100_000
RECIPIENTS = 10_000
BATCH = 200
TRIALS = 30
ASK_EVERY = 0.005
SENDER = "+15005550006"


def measure(url: str) -> dict[str, float]:
    migrate_database(url)
    app = make_app(url)
    from extensions import db
    from models import Suppression
    from services.messaging import suppressions

    figures: dict[str, float] = {}
    with app.app_context():
        now = datetime.now(UTC)
        listed = [f"+1777{i:07d}" for i in range(ENTRIES)]
        for start in range(0, ENTRIES, 10_000):
            db.session.execute(insert(Suppression), [
                {"phone_hash": suppressions.phone_hash(phone), "phone": phone,
                 "sender": SENDER if i % 2 else suppressions.ANY_SENDER, "reason": "keyword",
                 "created_at": now} for i, phone in enumerate(listed[start:start + 10_000])])
        db.session.commit()
        # One recipient in twenty is on the list, as after a campaign's opt-outs.
        recipients = [listed[i * 10] if i % 20 == 0 else f"+1888{i:07d}"
                      for i in range(RECIPIENTS)]
        engine = db.engine
        rounds = []
        for _ in range(3):
            started = time.perf_counter()
            blocked = 0
            for start in range(0, RECIPIENTS, BATCH):
                batch = recipients[start:start + BATCH]
                gate = suppressions.SendGate(batch, sender=SENDER)
                blocked += sum(gate.blocks(phone) for phone in batch)
            rounds.append(time.perf_counter() - started)
            assert blocked == RECIPIENTS // 20, blocked
        figures["per_recipient_us"] = round(statistics.median(rounds) / RECIPIENTS * 1e6, 1)
        figures["per_batch_ms"] = round(statistics.median(rounds) / (RECIPIENTS / BATCH) * 1000,
                                        2)

        delays = []
        for trial in range(TRIALS):
            target = f"+1999{trial:07d}"
            gate = suppressions.SendGate([target], sender=SENDER)
            committed: list[float] = []

            hashed = suppressions.phone_hash(target)

            def stop(target=target, hashed=hashed, committed=committed) -> None:
                gevent.sleep(random.uniform(0.05, 0.6))
                with engine.begin() as connection:
                    connection.execute(insert(Suppression).values(
                        phone_hash=hashed, phone=target,
                        sender=SENDER, reason="keyword", created_at=datetime.now(UTC)))
                committed.append(time.monotonic())

            stopper = gevent.spawn(stop)
            last_open = None
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                if not gate.blocks(target):
                    last_open = time.monotonic()
                elif committed:
                    break
                gevent.sleep(ASK_EVERY)
            stopper.join()
            delays.append(max(0.0, (last_open or 0.0) - committed[0]))
        figures["stop_delay_median_ms"] = round(statistics.median(delays) * 1000)
        figures["stop_delay_max_ms"] = round(max(delays) * 1000)
        db.session.execute(delete(Suppression))
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    rows = {}
    for backend in args.backends.split(","):
        if backend == "sqlite":
            rows[backend] = measure(f"sqlite:///{tempfile.mkdtemp(dir=WORK)}/hub.db")
        elif (url := fresh_postgres()) is not None:
            import psycopg

            try:
                rows[backend] = measure(url)
            finally:
                with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" '
                                 "WITH (FORCE)")
        if backend in rows:
            print(backend, rows[backend], file=sys.stderr)
    lines = [MARKER, f"## The suppression check ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)", "",
             f"Machine: {machine()}. In a gevent-patched process, as the server runs, with "
             f"{ENTRIES:,} entries on the list.",
             "Command: `python -m bench.suppression`.", "",
             "| figure | " + " | ".join(rows) + " |", "| --- |" + " --- |" * len(rows)]
    labels = [
        (f"SQL time of the check per recipient, {RECIPIENTS:,} recipients in batches of "
         f"{BATCH} (µs)", "per_recipient_us"),
        (f"the same per batch of {BATCH} (ms)", "per_batch_ms"),
        (f"STOP committed → last submission it could not stop, median of {TRIALS} (ms)",
         "stop_delay_median_ms"),
        ("the same, worst (ms)", "stop_delay_max_ms"),
    ]
    for label, key in labels:
        lines.append(f"| {label} | " + " | ".join(str(r[key]) for r in rows.values()) + " |")
    lines += ["", "A batch is looked up once when claimed and again whenever its last look "
              "is 0.5 s old, so the delay is bounded by 0.5 s plus one query; a submission "
              "already handed to the provider when the STOP commits is not recalled.", MARKER]
    write_section(MARKER, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
