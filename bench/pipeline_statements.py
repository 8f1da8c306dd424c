"""The delivery pipeline's batch statements against their row-by-row alternatives.

In a gevent-patched process, as the server runs, on SQLite and PostgreSQL:

- storing 10,000 recipients: the ORM's ``executemany`` against the one
  ``INSERT ... SELECT`` from a JSON table that ``messages.create`` uses;
- recording 500 send results: an ``executemany`` of one ``UPDATE`` per row
  against the one ``UPDATE ... FROM`` a JSON table of ``record_outcomes``;
- choosing 500 recipients to claim with 200,000 settled ones stored: the
  claim's query with and without the condition that repeats the queue
  index's own (SQLite only uses the partial index with it).

Each figure is the median of several repetitions, in milliseconds.

    python -m bench.pipeline_statements [--backends sqlite,postgresql]
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from decimal import Decimal  # noqa: E402

from sqlalchemy import (  # noqa: E402
    and_,
    bindparam,
    delete,
    insert,
    literal_column,
    or_,
    select,
    update,
)

from bench.run import POSTGRES_URL, WORK, fresh_postgres, machine, write_section  # noqa: E402
from tests.support import make_app, migrate_database, seed_admin  # noqa: E402

MARKER = "<!-- bench/pipeline_statements.py results -->"
RECIPIENTS = 10_000
BATCH = 500
SETTLED = 200_000


def _median_ms(timings: list[float]) -> float:
    return round(statistics.median(timings) * 1000, 1)


def _timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _message(db, Message) -> int:
    message = Message(user_id=1, body="statements", encoding="GSM-7", segments=1,
                      status="SENDING", recipient_count=RECIPIENTS, cost=Decimal("0"),
                      version=1)
    db.session.add(message)
    db.session.flush()
    return message.id


def measure(url: str) -> dict[str, float]:
    migrate_database(url)
    seed_admin(url)
    app = make_app(url)
    from extensions import db
    from models import Message, Recipient
    from services.messaging import messages
    from services.messaging.json_rows import json_rows
    from services.messaging.queue import _EVENT_COLUMNS, _RESULT_COLUMNS

    table = Recipient.__table__
    phones = [f"+1555{i:07d}" for i in range(RECIPIENTS)]
    figures: dict[str, float] = {}
    with app.app_context():
        orm, batched = [], []
        for _ in range(3):
            message_id = _message(db, Message)
            orm.append(_timed(lambda message_id=message_id: db.session.execute(
                insert(Recipient), [{"message_id": message_id, "phone": phone,
                                     "status": "PENDING", "cost": Decimal("0"), "version": 1,
                                     "attempts": 0} for phone in phones])))
            db.session.commit()
            message_id = _message(db, Message)
            batched.append(_timed(lambda message_id=message_id: messages._insert_recipients(
                message_id, phones, datetime.now(UTC))))
            db.session.commit()
        figures["insert_executemany"] = _median_ms(orm)
        figures["insert_json"] = _median_ms(batched)

        now = datetime.now(UTC)
        per_row = update(table).where(
            table.c.id == bindparam("b_id"), table.c.status == "SENDING",
            table.c.claimed_by == "bench",
        ).values(status="SENT", provider_message_id=bindparam("b_pid"), cost=bindparam("b_cost"),
                 sent_at=now, updated_at=now, version=table.c.version + 1)
        rows_by_row, rows_by_json = [], []
        for round_number in range(8):
            ids = list(db.session.scalars(
                select(table.c.id).where(table.c.status == "PENDING")
                .order_by(table.c.id).limit(BATCH)))
            db.session.execute(update(table).where(table.c.id.in_(ids))
                               .values(status="SENDING", claimed_by="bench"))
            db.session.commit()
            results = [{"id": rid, "status": "SENT", "provider_message_id": f"p{rid}",
                        "error_code": None, "error_message": None, "cost": Decimal("0.0075")}
                       for rid in ids]
            if round_number % 2:
                rows_by_row.append(_timed(lambda results=results: db.session.execute(
                    per_row, [{"b_id": r["id"], "b_pid": r["provider_message_id"],
                               "b_cost": r["cost"]} for r in results])))
            else:
                def by_json(results=results) -> None:
                    batch = json_rows("result", columns=_RESULT_COLUMNS, rows=results)
                    db.session.execute(
                        update(table)
                        .where(table.c.id == batch.c.id, table.c.status == "SENDING",
                               table.c.claimed_by == "bench")
                        .values(status=batch.c.status,
                                provider_message_id=batch.c.provider_message_id,
                                cost=batch.c.cost, sent_at=now, updated_at=now,
                                version=table.c.version + 1)
                        .returning(*_EVENT_COLUMNS)).all()
                rows_by_json.append(_timed(by_json))
            db.session.commit()
        figures["record_executemany"] = _median_ms(rows_by_row)
        figures["record_json"] = _median_ms(rows_by_json)

        db.session.execute(delete(table))
        settled_message = _message(db, Message)
        for start in range(0, SETTLED, 50_000):
            messages._insert_recipients(settled_message, [
                f"+1666{i:07d}" for i in range(start, start + 50_000)], now)
        db.session.execute(update(table).where(table.c.message_id == settled_message)
                           .values(status="DELIVERED"))
        pending_message = _message(db, Message)
        messages._insert_recipients(pending_message, phones, now)
        db.session.commit()
        waiting = or_(table.c.status == "PENDING",
                      and_(table.c.status == "SENDING", table.c.claimed_at < now))
        queued = table.c.status.in_([literal_column("'PENDING'"), literal_column("'SENDING'")])
        for name, condition in (("claim_without_index_condition", waiting),
                                ("claim_with_index_condition", and_(queued, waiting))):
            query = select(table.c.id).where(condition).order_by(table.c.id).limit(BATCH)
            figures[name] = _median_ms([_timed(lambda query=query: db.session.execute(
                query).all()) for _ in range(7)])
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
    lines = [MARKER, f"## Pipeline statements ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)", "",
             f"Machine: {machine()}. In a gevent-patched process, as the server runs; "
             "median milliseconds.",
             "Command: `python -m bench.pipeline_statements`.", "",
             "| statement | " + " | ".join(rows) + " |", "| --- |" + " --- |" * len(rows)]
    labels = [
        (f"store {RECIPIENTS:,} recipients: ORM `executemany`", "insert_executemany"),
        (f"store {RECIPIENTS:,} recipients: `INSERT ... SELECT` from JSON", "insert_json"),
        (f"record {BATCH} send results: `executemany` of `UPDATE`", "record_executemany"),
        (f"record {BATCH} send results: `UPDATE ... FROM` JSON", "record_json"),
        (f"choose {BATCH} to claim among {SETTLED:,} settled: without the index's condition",
         "claim_without_index_condition"),
        (f"choose {BATCH} to claim among {SETTLED:,} settled: with it",
         "claim_with_index_condition"),
    ]
    for label, key in labels:
        lines.append(f"| {label} | " + " | ".join(str(r[key]) for r in rows.values()) + " |")
    lines.append(MARKER)
    write_section(MARKER, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
