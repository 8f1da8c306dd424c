"""What an idle node costs: a hub that serves nobody, its CPU and its database's work.

A node runs its loops (heartbeats, the dispatcher's poll, the sweeps) whether
anyone is connected or not: every node of a deployment pays it, and so does
every hub the test suite keeps running between its tests. Each hub (this tree,
and ``--against REF``'s files from ``git archive``) serves on a fresh migrated
PostgreSQL database with the ``--env`` settings (``testing``: the suite's short
intervals; ``production``), settles, then is watched for ``--seconds``; the
hubs take turns, ``--rounds`` times, and each figure is the median:

- the hub's CPU (user + system, ``/proc/PID/stat``), in % of one core;
- PostgreSQL's processes' CPU over the same time (the whole server's, so run
  it on an otherwise quiet machine);
- the transactions and rows read that ``pg_stat_database`` counted for the
  hub's database, per second.

    python -m bench.idle [--env testing] [--seconds 30] [--rounds 3] [--against REF]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.run import (
    HUB_ENV,
    POSTGRES_URL,
    ROOT,
    SECRET,
    WORK,
    checkout,
    machine,
    process_cpu_seconds,
    publish,
    ratio_table,
)
from tests.support import fresh_postgres_database, migrate_database, seed_admin

PORT = 7172
SETTLE_SECONDS = 8.0


def postgres_cpu_seconds() -> float:
    """CPU of every PostgreSQL process now running (backends come and go with the hub's
    pool, so the figure is the difference of two such sums)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().startswith("postgres"):
                total += process_cpu_seconds(int(entry.name))
        except OSError:
            continue
    return total


def database_counts(name: str) -> tuple[int, int]:
    """(transactions, rows read) PostgreSQL has counted for database ``name``."""
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        return connection.execute(
            "SELECT xact_commit + xact_rollback, tup_returned + tup_fetched "
            "FROM pg_stat_database WHERE datname = %s", (name,)).fetchone()


def watch_idle(source: Path, env: dict, seconds: float) -> dict[str, float]:
    with fresh_postgres_database() as url:
        migrate_database(url)
        seed_admin(url)
        hub = subprocess.Popen([sys.executable, "app.py"], cwd=source,
                               env={**env, "DATABASE_URL": url},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(SETTLE_SECONDS)
            if hub.poll() is not None:
                raise RuntimeError(f"the hub of {source} exited with {hub.returncode}")
            name = url.rsplit("/", 1)[1]
            hub_before, postgres_before = process_cpu_seconds(hub.pid), postgres_cpu_seconds()
            counts_before = database_counts(name)
            time.sleep(seconds)
            hub_after, postgres_after = process_cpu_seconds(hub.pid), postgres_cpu_seconds()
            counts_after = database_counts(name)
        finally:
            hub.terminate()
            hub.wait(timeout=60)
    return {
        "hub_cpu": 100 * (hub_after - hub_before) / seconds,
        "postgres_cpu": 100 * (postgres_after - postgres_before) / seconds,
        "transactions": (counts_after[0] - counts_before[0]) / seconds,
        "rows": (counts_after[1] - counts_before[1]) / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--env", choices=("testing", "production"), default="testing")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--against", default="")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    settings = {"HUB_ENV": "testing"} if args.env == "testing" else \
        {**HUB_ENV, "JWT_SECRET_KEY": SECRET}
    env = {**os.environ, **settings, "PORT": str(PORT), "LOG_LEVEL": "WARNING"}
    sources = {"hub": ROOT, **({f"hub@{args.against}": checkout(args.against)}
                               if args.against else {})}
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in sources}
    for _ in range(args.rounds):
        for name, source in sources.items():
            samples[name].append(watch_idle(source, env, args.seconds))
            print(name, samples[name][-1], file=sys.stderr)
    results = {name: {figure: round(statistics.median(run[figure] for run in runs), 2)
                      for figure in runs[0]}
               for name, runs in samples.items()}
    figures = [
        ("hub_cpu", "hub CPU (% of a core)", lambda r: r["hub_cpu"]),
        ("postgres_cpu", "PostgreSQL CPU (% of a core)", lambda r: r["postgres_cpu"]),
        ("transactions", "transactions per second", lambda r: r["transactions"]),
        ("rows", "rows read per second", lambda r: r["rows"]),
    ]
    command = f"python -m bench.idle --env {args.env} --seconds {args.seconds:g} " \
              f"--rounds {args.rounds}" + (f" --against {args.against}" if args.against else "")
    marker = f"<!-- bench/idle.py results: {args.env} -->"
    publish(marker, f"What an idle node costs ({args.env} settings)", [
        f"Machine: {machine()}. Command: `{command}` (medians of {args.rounds} rounds, the "
        f"hubs in turn, each on a fresh PostgreSQL database, watched {args.seconds:g} s "
        f"after {SETTLE_SECONDS:g} s of settling).", "",
        *ratio_table(results, list(results)[-1], figures), "",
    ])


if __name__ == "__main__":
    main()
