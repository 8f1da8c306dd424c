"""What at most once costs per submission: the marks committed before each provider call.

With a provider that does not deduplicate, every submission waits for its
recipient's ``submit_started_at`` to be committed (``SubmitMarks``); the
marks of the submissions starting together go in one ``UPDATE`` and one
commit. In a gevent-patched process, as the server runs, ``--recipients``
claimed recipients are marked by ``k`` concurrent workers (as
``DISPATCH_CONCURRENCY`` or an SMPP window would run them), without any
provider call, on SQLite and PostgreSQL: marks per second, statements per
submission and the time a submission waits for its mark.

    python -m bench.submit_marks [--recipients 5000] [--backends sqlite,postgresql]
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

import gevent  # noqa: E402

from bench.run import POSTGRES_URL, WORK, fresh_postgres, machine, write_section  # noqa: E402
from tests.support import make_app, migrate_database, seed_admin  # noqa: E402

MARKER = "<!-- bench/submit_marks.py results -->"
IN_FLIGHT = (1, 10, 50)


def measure(url: str, recipients: int) -> dict[int, dict[str, float]]:
    migrate_database(url)
    seed_admin(url)
    app = make_app(url)
    from extensions import db
    from services.messaging import messages, queue
    from services.messaging.dispatcher import SubmitMarks

    figures: dict[int, dict[str, float]] = {}
    for in_flight in IN_FLIGHT:
        with app.app_context():
            messages.create(1, body="marks", recipients=messages.read_recipients([
                f"+1555{in_flight:03d}{i:04d}" for i in range(recipients)]))
            ids = [row.id for row in queue.claim_batch("bench", recipients, exactly_once=False)]
            db.session.remove()
        marks = SubmitMarks(app, "bench")

        def run_marks(marks=marks) -> None:
            with app.app_context():
                marks.loop()
        marker = gevent.spawn(run_marks)
        waits: list[float] = []
        todo = iter(ids)

        def work(marks=marks, todo=todo, waits=waits) -> None:
            for recipient_id in todo:
                started = time.perf_counter()
                assert marks.mark(recipient_id)
                waits.append(time.perf_counter() - started)
        started = time.perf_counter()
        gevent.joinall([gevent.spawn(work) for _ in range(in_flight)], raise_error=True)
        elapsed = time.perf_counter() - started
        marks.running = False
        marks.ready.set()
        marker.join()
        figures[in_flight] = {
            "marks_per_s": round(recipients / elapsed),
            "statements_per_submission": round(marks.statements / recipients, 3),
            "wait_ms": round(statistics.median(waits) * 1000, 2),
        }
        print(url.split(":")[0], in_flight, figures[in_flight], file=sys.stderr)
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=5000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    rows = {}
    for backend in args.backends.split(","):
        if backend == "sqlite":
            rows[backend] = measure(f"sqlite:///{tempfile.mkdtemp(dir=WORK)}/hub.db",
                                    args.recipients)
        elif (url := fresh_postgres()) is not None:
            import psycopg

            try:
                rows[backend] = measure(url, args.recipients)
            finally:
                with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" '
                                 "WITH (FORCE)")
    lines = [MARKER, f"## At most once: the mark before each submission "
             f"({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)", "",
             f"Machine: {machine()}. {args.recipients:,} claimed recipients marked by k "
             "concurrent submissions (no provider call), in a gevent-patched process as the "
             "server runs it. Each mark is `UPDATE recipients SET submit_started_at = now "
             "WHERE id IN (...) AND status = 'SENDING' AND claimed_by = node AND "
             "submit_started_at IS NULL RETURNING id` and a commit, shared by the "
             "submissions starting together.",
             f"Command: `python -m bench.submit_marks --recipients {args.recipients}`.", "",
             "| in flight (k) | " + " | ".join(
                 f"{b}: marks/s | {b}: statements per submission | {b}: median wait (ms)"
                 for b in rows) + " |",
             "| --- |" + " --- | --- | --- |" * len(rows)]
    for in_flight in IN_FLIGHT:
        lines.append(f"| {in_flight} | " + " | ".join(
            f"{r[in_flight]['marks_per_s']} | {r[in_flight]['statements_per_submission']} | "
            f"{r[in_flight]['wait_ms']}" for r in rows.values()) + " |")
    lines.append(MARKER)
    write_section(MARKER, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
