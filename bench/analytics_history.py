"""CPU of one analytics round for 100 users over about 100,000 messages of history.

Offline, in one process: builds the history (messages spread over 60 days,
recipient rows for the last two), then times ``figures_for_many`` for all
users (median of 7 rounds). ``--root`` names another checkout of the hub, so
that two trees (before and after a change) can be compared on the same data:
the measurement then runs in a child Python working in that checkout, whose
``-c`` puts it first on the import path, so ``services`` and ``tests`` are
that tree's while this file's code is the same for both.

    python -m bench.analytics_history sqlite|postgresql OUT.json [--root CHECKOUT]
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import flask_migrate
from sqlalchemy import column, insert, table, text

USERS, PER_USER, DAYS = 100, 1000, 60


def build(url):
    from tests.support import make_app

    app = make_app(url)
    with app.app_context():
        from extensions import db
        from models import Message, Recipient
        flask_migrate.upgrade(revision="0002")
        rng = random.Random(7)
        midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        # The users table as revision 0002 has it: the model has columns added since.
        users = table("users", *(column(name) for name in (
            "id", "email", "password_hash", "role", "active", "created_at")))
        db.session.execute(insert(users), [
            {"id": i, "email": f"u{i}@x.org", "password_hash": "x", "role": "user",
             "active": True, "created_at": midnight - timedelta(days=90)}
            for i in range(1, USERS + 1)])
        rows = []
        for user in range(1, USERS + 1):
            for _ in range(PER_USER):
                created = midnight - timedelta(seconds=rng.randrange(DAYS * 86400)) \
                    if rng.random() > 0.02 else midnight + timedelta(seconds=rng.randrange(1800))
                segments, count = rng.randint(1, 3), rng.randint(1, 5)
                if created >= midnight and rng.random() < 0.5:
                    status, ok, bad, delivered = "SENDING", rng.randint(0, count - 1), 0, 0
                else:
                    bad = rng.randint(0, count) if rng.random() < 0.1 else 0
                    ok = count - bad
                    status = "SENT" if ok else "FAILED"
                    delivered = rng.randint(0, ok)
                rows.append({"user_id": user, "body": "hi", "encoding": "GSM7",
                             "segments": segments, "status": status, "recipient_count": count,
                             "success_count": ok, "failed_count": bad,
                             "delivered_count": delivered,
                             "cost": Decimal("0.0075") * segments * ok, "version": 1,
                             "created_at": created, "updated_at": created})
        rows.sort(key=lambda r: r["created_at"])
        for start in range(0, len(rows), 5000):
            db.session.execute(insert(Message), rows[start:start + 5000])
        recent = db.session.execute(text(
            "SELECT id, created_at, status, recipient_count, success_count, delivered_count"
            " FROM messages WHERE created_at >= :since"),
            {"since": midnight - timedelta(days=2)}).all()
        recipients = []
        for mid, _created, status, count, ok, delivered in recent:
            for n in range(count):
                st = ("DELIVERED" if n < delivered else "SENT" if n < ok else
                      ("PENDING" if status == "SENDING" else "FAILED"))
                at = (midnight - timedelta(hours=rng.randrange(30))
                      + timedelta(minutes=rng.randrange(60)))
                recipients.append({"message_id": mid, "phone": f"+1555{n:07d}", "status": st,
                                   "cost": Decimal("0"), "version": 1, "attempts": 1,
                                   "sent_at": at if st != "PENDING" else None,
                                   "delivered_at": (at + timedelta(seconds=1)
                                                    if st == "DELIVERED" else None),
                                   "updated_at": at})
        for start in range(0, len(recipients), 5000):
            db.session.execute(insert(Recipient), recipients[start:start + 5000])
        db.session.commit()
        flask_migrate.upgrade()
        db.engine.dispose()
        return len(rows), len(recipients)


def measure(url):
    from tests.support import make_app

    app = make_app(url)
    with app.app_context():
        from extensions import db
        from services.analytics import figures as analytics
        users = list(range(1, USERS + 1))
        backend_pid = None
        if url.startswith("postgresql"):
            backend_pid = db.session.scalar(text("SELECT pg_backend_pid()"))

        def server_cpu():
            if backend_pid is None:
                return 0.0
            stat = Path(f"/proc/{backend_pid}/stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        analytics.figures_for_many(users)  # warm: statement cache, pages
        cpu, server, wall = [], [], []
        for _ in range(7):
            db.session.close()
            s0, t0, w0 = server_cpu(), time.thread_time(), time.perf_counter()
            figures = analytics.figures_for_many(users)
            cpu.append(time.thread_time() - t0)
            wall.append(time.perf_counter() - w0)
            server.append(server_cpu() - s0)
        glob = analytics.dashboard_stats(None)
        db.session.close()
        db.engine.dispose()
    for f in figures.values():
        f["message_stats"].pop("hourly")
    return {"cpu_ms": round(statistics.median(cpu) * 1000, 1),
            "server_cpu_ms": round(statistics.median(server) * 1000, 1),
            "wall_ms": round(statistics.median(wall) * 1000, 1),
            "figures": {str(k): v for k, v in figures.items()}, "global": glob}


def run(backend: str, out: str) -> None:
    """Build and measure in this process, with whatever tree is first on the import path."""
    from tests.support import fresh_postgres_database

    if backend == "sqlite":
        url = "sqlite:///" + os.path.join(tempfile.mkdtemp(), "hist.db")
        built = build(url)
        result = measure(url)
    else:
        with fresh_postgres_database() as url:
            built = build(url)
            result = measure(url)
    result["messages"], result["recipients"] = built
    Path(out).write_text(json.dumps(result, indent=1, default=str))
    print(backend, os.getcwd(), built,
          {k: result[k] for k in ("cpu_ms", "server_cpu_ms", "wall_ms")})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backend", choices=("sqlite", "postgresql"))
    parser.add_argument("out")
    parser.add_argument("--root", help="another checkout of the hub to measure")
    args = parser.parse_args()
    if args.root is None:
        run(args.backend, args.out)
        return
    child = (f"import runpy; runpy.run_path({__file__!r}, run_name='__main__')")
    subprocess.run([sys.executable, "-c", child, args.backend, str(Path(args.out).resolve())],
                   cwd=args.root, check=True)


if __name__ == "__main__":
    main()
