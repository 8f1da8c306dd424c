"""Connection churn soak: the hub and the Node socket.io peer, same load, same run.

Three servers in sequence, each for ``SOAK_SECONDS`` (default 300) with the same
number of workers of the official client (``bench/churn.js``), every other
disconnect abrupt (a TCP reset):

- ``hub-full``: connect with a token, join a room, subscribe to analytics, track
  the user's own message, wait for the acks and the pushed snapshots, leave;
- ``hub-basic``: connect with a token, one ``get_rooms`` ack, leave;
- ``node``: the basic round against the Node peer, which supports no more.

Before each hub run one warm-up round and a settle give the baseline of the
hub's per-connection structures; after the run and the same settle they must
be back to it, with no connection row left, the greenlets back, memory flat,
churn at the goal and no error seen by a client. Each check is printed PASS or
FAIL, figures go to BENCHMARKS.md, and a failed check makes the exit status 1.

    python -m bench.soak [--seconds 300] [--concurrency 20]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from bench.run import (
    HUB_ENV,
    SECRET,
    WORK,
    machine,
    prepare_hub_database,
    prepare_kit,
    short_commit,
    write_section,
)
from services.node.diagnostics import PER_CONNECTION

ROOT = Path(__file__).resolve().parent.parent

MARKER = "<!-- bench/soak.py results -->"
GOAL_CHURN_PER_SECOND = 200
RSS_MARGIN = 0.10
GREENLET_MARGIN = 10
# Engine.IO keeps a socket's ping greenlet (and through it the socket) for one ping
# interval after the socket is gone, and an abrupt client that the reader does not
# notice is dropped after interval + timeout. The production defaults (25 s + 20 s)
# would make the settle long and the population of lingering timers large; 5 + 5 s
# changes nothing for connections that live well under a second.
PING_INTERVAL = 5
PING_TIMEOUT = 5
SETTLE_SECONDS = PING_INTERVAL + PING_TIMEOUT + 5
# Memory is compared with the first sample at or after this point of the run: by then
# the lingering ping timers, SQLAlchemy's statement caches and the allocator's arenas
# have reached their level, which the first round's figure has not.
WARM_UP_SECONDS = 60


@dataclass
class Run:
    """One server under churn: the driver's figures, memory, and the hub's checks."""

    name: str
    mode: str
    churn: dict[str, Any] = field(default_factory=dict)
    rss_series: list[tuple[float, int]] = field(default_factory=list)
    rows_series: list[int] = field(default_factory=list)
    rss_end_kb: int = 0
    baseline: dict[str, Any] = field(default_factory=dict)
    final: dict[str, Any] = field(default_factory=dict)
    connection_rows: int | None = None
    checks: list[tuple[str, bool, str]] = field(default_factory=list)

    def rss_warm_kb(self, seconds: int) -> int:
        """The reference for flat memory: the first sample after the warm-up."""
        after = min(WARM_UP_SECONDS, seconds / 2)
        return next((rss for at, rss in self.rss_series if at >= after), self.rss_series[-1][1])

    def figures(self, seconds: int) -> dict[str, Any]:
        warm_from = min(WARM_UP_SECONDS, seconds / 2)
        return {
            "churn per second (connects + disconnects)": self.churn.get("churnPerSecond"),
            "connects": self.churn.get("connects"),
            "abrupt disconnects": self.churn.get("abrupt"),
            "client errors": self.churn.get("errors"),
            "RSS at the first sample (KB)": self.rss_series[0][1],
            f"RSS after {warm_from:.0f} s (KB)": self.rss_warm_kb(seconds),
            "RSS peak after that (KB)": max(rss for at, rss in self.rss_series if at >= warm_from),
            "RSS at the last sample under load (KB)": self.rss_series[-1][1],
            f"RSS {SETTLE_SECONDS} s after the run (KB)": self.rss_end_kb,
            "connection rows in SQL during the run (fewest–most)":
                f"{min(self.rows_series)}–{max(self.rows_series)}" if self.rows_series else "–",
        }


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_for_port(port: int, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on {port}")


def add_messages(url: str, tokens: dict) -> None:
    """One message per user, through the service the REST route calls, for ``track_message``.

    The hub's dispatcher sends them (simulated provider) once it starts, during
    the warm-up, so the tracked messages are settled before the measured run.
    """
    from app import create_app
    from config import _normalise_database_url
    from extensions import db
    from services.messaging import messages

    app = create_app("testing", SQLALCHEMY_DATABASE_URI=_normalise_database_url(url),
                     JWT_SECRET_KEY=SECRET)
    with app.app_context():
        for user in tokens["users"]:
            created = messages.create(int(user["id"]), body="soak",
                                      recipients=messages.read_recipients(["+15551112222"]))
            user["messageId"] = created["id"]
        db.engine.dispose()


def prepare_hub(name: str) -> tuple[str, Path, Path]:
    """A fresh SQLite database with users and their messages; its path and tokens file."""
    database = Path(tempfile.mkdtemp(dir=WORK)) / "hub.db"
    url = f"sqlite:///{database}"
    tokens = prepare_hub_database(url)
    add_messages(url, tokens)
    tokens_file = WORK / f"tokens-soak-{name}.json"
    tokens_file.write_text(json.dumps(tokens))
    return url, database, tokens_file


def drive(kit: Path, port: int, tokens_file: Path, seconds: int, concurrency: int,
          mode: str) -> subprocess.Popen:
    return subprocess.Popen(
        ["taskset", "-c", "1", "node", str(ROOT / "bench" / "churn.js"),
         f"http://127.0.0.1:{port}", str(tokens_file), str(seconds), str(concurrency), mode],
        env={**os.environ, "NODE_PATH": str(kit / "load" / "node_modules")},
        stdout=subprocess.PIPE, text=True)


def driver_result(driver: subprocess.Popen) -> dict[str, Any]:
    output = driver.stdout.read().strip().splitlines()
    driver.wait()
    if driver.returncode != 0 or not output:
        raise RuntimeError(f"churn.js failed with status {driver.returncode}")
    return json.loads(output[-1])


def internals(port: int, tokens_file: Path) -> dict[str, Any]:
    admin = json.loads(tokens_file.read_text())["admin"]
    return requests.get(f"http://127.0.0.1:{port}/api/socket/debug/internals",
                        headers={"Authorization": f"Bearer {admin}"}, timeout=10).json()


def count_connection_rows(database: Path) -> int:
    with sqlite3.connect(database) as conn:
        return conn.execute("SELECT COUNT(*) FROM connections").fetchone()[0]


def soak(run: Run, command: list[str], env: dict, port: int, tokens_file: Path, seconds: int,
         concurrency: int, kit: Path, database: Path | None) -> Run:
    log_path = WORK / f"soak-{run.name}.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(["taskset", "-c", "0", *command], cwd=ROOT,
                                  env={**os.environ, **env, "PORT": str(port),
                                       "JWT_SECRET_KEY": SECRET},
                                  stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port)
        warm_up = driver_result(drive(kit, port, tokens_file, 0, concurrency, run.mode))
        if warm_up["errors"]:
            raise RuntimeError(f"{run.name}: the warm-up round failed: {warm_up['firstErrors']}")
        time.sleep(SETTLE_SECONDS)
        if database is not None:
            run.baseline = internals(port, tokens_file)
        driver = drive(kit, port, tokens_file, seconds, concurrency, run.mode)
        started = time.monotonic()
        while driver.poll() is None:
            run.rss_series.append((time.monotonic() - started, rss_kb(server.pid)))
            if database is not None:
                run.rows_series.append(count_connection_rows(database))
            time.sleep(10 if seconds >= 60 else 1)
        run.churn = driver_result(driver)
        time.sleep(SETTLE_SECONDS)
        run.rss_end_kb = rss_kb(server.pid)
        if database is not None:
            run.final = internals(port, tokens_file)
            run.connection_rows = count_connection_rows(database)
            run.checks = hub_checks(run, seconds)
        return run
    finally:
        server.terminate()
        server.wait(timeout=20)


def hub_checks(run: Run, seconds: int) -> list[tuple[str, bool, str]]:
    before, after = run.baseline, run.final
    moved = {key: (before[key], after[key]) for key in PER_CONNECTION if after[key] != before[key]}
    warm = run.rss_warm_kb(seconds)
    churn = run.churn["churnPerSecond"]
    return [
        ("no connection row left", run.connection_rows == 0, f"{run.connection_rows} rows"),
        ("per-connection structures back to the baseline", not moved,
         "all equal" if not moved else ", ".join(f"{k} {a} → {b}" for k, (a, b) in moved.items())),
        ("analytics subscribers forgotten", after["analyticsSubscribers"] == 0,
         f"{after['analyticsSubscribers']} left"),
        (f"greenlets within {GREENLET_MARGIN} of the baseline",
         after["greenlets"] <= before["greenlets"] + GREENLET_MARGIN,
         f"{before['greenlets']} → {after['greenlets']}"),
        (f"RSS after the run within {RSS_MARGIN:.0%} of RSS after the warm-up",
         run.rss_end_kb <= warm * (1 + RSS_MARGIN),
         f"{warm} → {run.rss_end_kb} KB ({run.rss_end_kb / warm - 1:+.1%})"),
        (f"churn at least {GOAL_CHURN_PER_SECOND}/s", churn >= GOAL_CHURN_PER_SECOND, f"{churn}/s"),
        ("no client error", run.churn["errors"] == 0,
         f"{run.churn['errors']} errors" + (f": {run.churn['firstErrors']}"
                                            if run.churn["errors"] else "")),
    ]


def report(runs: list[Run], seconds: int, concurrency: int) -> list[str]:
    """The BENCHMARKS.md section, between the markers."""
    commit = short_commit()
    names = [run.name for run in runs]
    by_name = {run.name: run.figures(seconds) for run in runs}
    ratios = [name for name in names if name != "node" and runs[names.index(name)].mode == "basic"]
    lines = [
        MARKER, f"## Connection churn ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit})",
        "",
        f"Machine: {machine()}. Server on CPU 0, the official client on CPU 1, "
        f"{concurrency} workers for {seconds} s per server, one server after the other; every "
        "other disconnect is abrupt (TCP reset, no close frame). `hub-full`: connect with a "
        "token, `join_room`, `subscribe_analytics`, `track_message` on the user's own message, "
        "wait for the three acks and the pushed `session`, `analytics_update` and "
        "`message_update`, leave. `hub-basic` and `node`: connect with a token, one "
        "`get_rooms` ack, leave (all the Node peer supports). The hub runs on SQLite with "
        "its production settings, except the per-address, per-user and event-rate caps that "
        f"one load generator exceeds, and a ping interval and timeout of {PING_INTERVAL} + "
        f"{PING_TIMEOUT} s instead of 25 + 20 s, so that the settle before each reading "
        f"({SETTLE_SECONDS} s after a warm-up round, and after the run) outlasts Engine.IO's "
        "ping timers. Memory is compared with the first sample at or after "
        f"{WARM_UP_SECONDS} s (half the run when shorter): each socket's ping timer outlives "
        "it by one interval and the allocator's arenas and SQLAlchemy's caches fill in the "
        "first seconds, so the first round's figure is below the level the process keeps. "
        "Connection rows are written behind, in one batch per `CONNECTION_FLUSH_INTERVAL` "
        "(0.2 s): a connection that opens and closes between two flushes costs no statement, "
        "so the SQL share of these rounds is the rows of the sockets alive at each flush "
        "(the row counts sampled every 10 s in the table).",
        f"Command: `make soak SOAK_SECONDS={seconds}`.", "",
        "| figure | " + " | ".join(names) + " | " + " | ".join(f"{n} / node" for n in ratios)
        + " |",
        "|" + " --- |" * (1 + len(names) + len(ratios)),
    ]
    for label in by_name[names[0]]:
        cells = [str(by_name[name][label]) for name in names]
        quotients = []
        for name in ratios:
            hub, node = by_name[name][label], by_name.get("node", {}).get(label)
            quotients.append(f"{hub / node:.2f}" if isinstance(hub, int | float)
                             and isinstance(node, int | float) and node else "–")
        lines.append(f"| {label} | " + " | ".join(cells + quotients) + " |")
    interval = 10 if seconds >= 60 else 1
    lines.append("")
    for run in runs:
        lines.append(f"{run.name} RSS every {interval} s (KB): "
                     + ", ".join(str(rss) for _, rss in run.rss_series))
        lines.append("")
    for run in runs:
        if not run.checks:
            continue
        lines += [f"Checks for {run.name} ({SETTLE_SECONDS} s after the run, against the "
                  "baseline read after the warm-up round):", ""]
        lines += [f"- {'PASS' if ok else 'FAIL'}: {label} ({detail})"
                  for label, ok, detail in run.checks]
        lines.append("")
    lines.append(MARKER)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("SOAK_SECONDS", 300)))
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    kit = prepare_kit()
    hub_env = {**HUB_ENV, "HUB_DEBUG_INTERNALS": "1",
               "SOCKETIO_PING_INTERVAL": str(PING_INTERVAL),
               "SOCKETIO_PING_TIMEOUT": str(PING_TIMEOUT)}
    runs = []
    for name, mode in (("hub-full", "full"), ("hub-basic", "basic")):
        url, database, tokens_file = prepare_hub(name)
        runs.append(soak(Run(name, mode), [sys.executable, "app.py"],
                         {**hub_env, "DATABASE_URL": url}, 7111, tokens_file, args.seconds,
                         args.concurrency, kit, database))
        print(f"{name}: {runs[-1].churn}", file=sys.stderr)
    runs.append(soak(Run("node", "basic"), ["node", str(kit / "node-peer" / "server.js")], {},
                     7112, tokens_file, args.seconds, args.concurrency, kit, None))
    lines = report(runs, args.seconds, args.concurrency)
    write_section(MARKER, "\n".join(lines))
    (WORK / "soak-results.json").write_text(json.dumps(
        [{"name": r.name, "churn": r.churn, "rssSeries": r.rss_series, "rssEndKb": r.rss_end_kb,
          "baseline": r.baseline, "final": r.final, "connectionRows": r.connection_rows,
          "checks": r.checks} for r in runs], indent=2))
    print("\n".join(lines[1:-1]))
    if not all(ok for run in runs for _, ok, _ in run.checks):
        sys.exit(1)


if __name__ == "__main__":
    main()
