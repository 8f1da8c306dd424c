"""Delivery pipeline throughput: one 10,000-recipient message, with a tracker connected.

Measures how long ``POST /api/messages`` takes to answer, then how fast the
dispatcher sends (simulated provider, zero latency) until the message is
``SENT``, until every delivery receipt is in, and until the tracker has
received a ``DELIVERED`` update for every recipient; on SQLite and PostgreSQL. The
hub's CPU from the POST until the tracker has everything, per recipient, is the
figure a loaded machine does not move much.

The tracker handles each event on its reader thread: python-engineio's client
starts a thread per incoming message, and with thousands of events in flight
those threads fighting over the GIL, not the hub, would set the pace.

Each backend is measured ``--runs`` times on a fresh database; the table gives
the median run's figure with the lowest and highest in brackets, since one run
on a shared 2-core machine can be a quarter off either way.

Each checkout in ``--roots`` (and the commit ``--against``, from ``git archive``)
serves in turn (its own ``app.py``) on a database migrated by this checkout
(whose migrations are a superset), their runs interleaved, so that a tree
before and after a change meet the same load on a shared machine; the table
then has a column per checkout and database.

With ``--nodes N`` (PostgreSQL only) N hubs share the database and a Redis
message queue, as in production: the message is posted to the first, the
tracker follows it on the last, so every ``recipient_update`` travels through
Redis, and the hub CPU is the nodes' sum. Such runs are recorded in a section
of their own.

With ``--profile DIR`` each run's (first) server is sampled by py-spy (``--gil``: only
while it holds the GIL, so gevent's idle loop stays out) into raw stacks,
``DIR/<database>-<run>.txt``, which flamegraph tools read.

    python -m bench.pipeline [--recipients 10000] [--runs 3] [--backends sqlite,postgresql]
                             [--nodes 1] [--profile DIR] [--against REF]
                             [--roots .,../other-checkout]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from bench.run import (
    POSTGRES_URL,
    ROOT,
    WORK,
    checkout,
    fresh_postgres,
    machine,
    process_cpu_seconds,
    short_commit,
    write_section,
)
from tests.support import (
    REDIS_URL,
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


def measure(url: str, recipients: int, profile: Path | None = None, root: Path = ROOT,
            nodes: int = 1) -> dict:
    migrate_database(url)
    seed_admin(url)
    env = {"SIMULATED_SMS_LATENCY": "0", "SIMULATED_RECEIPT_DELAY": "1.0", "LOG_LEVEL": "WARNING",
           "DISPATCH_BATCH_SIZE": "500", "DISPATCH_CONCURRENCY": "100"}
    if nodes > 1:
        env |= {"SOCKETIO_MESSAGE_QUEUE": REDIS_URL,
                "SOCKETIO_CHANNEL": f"bench-pipeline-{uuid.uuid4().hex[:8]}"}
    servers = [LiveServer(url, name=f"pipeline-{number}",
                          env={**env, "NODE_ID": f"pipeline-{number}"},
                          command=[sys.executable, str(root / "app.py")])
               for number in range(1, nodes + 1)]
    for node in servers:
        node.start()
    server, tracked_on = servers[0], servers[-1]
    sampler = None
    if profile is not None:
        sampler = subprocess.Popen(
            [str(Path(sys.executable).parent / "py-spy"), "record", "--gil", "--rate", "500",
             "--format", "raw", "--output", str(profile), "--pid", str(server.process.pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        user = register_user(server)
        tracker = RecordingClient(tracked_on.url)
        handle_inline(tracker)
        tracker.connect(token=user.token)
        phones = [f"+1555{i:07d}" for i in range(recipients)]
        hub_cpu = sum(process_cpu_seconds(node.process.pid) for node in servers)
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
        hub_cpu = sum(process_cpu_seconds(node.process.pid) for node in servers) - hub_cpu
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
            "hub_cpu_ms_per_recipient": round(hub_cpu / recipients * 1e3, 3),
            "tracker_updates": updates,
            "tracker_connected": "yes" if connected else "no",
        }
    finally:
        if sampler is not None:
            sampler.send_signal(signal.SIGINT)
            sampler.wait()
        for node in servers:
            node.stop()


def measure_once(backend: str, recipients: int, profile: Path | None,
                 root: Path = ROOT, nodes: int = 1) -> dict | None:
    """One run on a fresh database; a PostgreSQL one is dropped afterwards."""
    if backend == "sqlite":
        return measure(f"sqlite:///{tempfile.mkdtemp(dir=WORK)}/hub.db", recipients, profile,
                       root)
    url = fresh_postgres()
    if url is None:
        return None
    try:
        return measure(url, recipients, profile, root, nodes)
    finally:
        import psycopg

        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def summarise(runs: list[dict]) -> dict:
    """Per figure: the median run's value (lowest-highest), or the values if not numbers."""
    summary = {}
    for key in runs[0]:
        values = [run[key] for run in runs]
        numbers = all(isinstance(value, int | float) for value in values)
        if numbers and min(values) != max(values):
            summary[key] = (f"{statistics.median_low(values)} "
                            f"({min(values)}–{max(values)})")
        else:
            summary[key] = " / ".join(dict.fromkeys(str(value) for value in values))
    return summary



def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--nodes", type=int, default=1,
                        help="hubs sharing the database and Redis (PostgreSQL only)")
    parser.add_argument("--profile", type=Path, help="directory for py-spy's raw stacks")
    parser.add_argument("--roots", default=".", help="checkouts to serve, comma-separated")
    parser.add_argument("--against", default=None, help="a commit measured before the roots")
    args = parser.parse_args()
    if args.nodes > 1 and args.backends != "postgresql":
        parser.error("--nodes above 1 needs --backends postgresql: nodes share one database")
    WORK.mkdir(parents=True, exist_ok=True)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    roots = [Path(root).resolve() for root in args.roots.split(",")]
    labels = {root: short_commit(root) for root in roots}
    if args.against:
        roots.insert(0, checkout(args.against))
        labels[roots[0]] = short_commit(ROOT, args.against)
    several = len(roots) > 1
    runs: dict[tuple[str, Path], list[dict]] = {}
    for backend in args.backends.split(","):
        for number in range(1, args.runs + 1):
            for root in roots:
                name = f"{backend}-{labels[root]}-{number}.txt" if several else \
                    f"{backend}-{number}.txt"
                run = measure_once(backend, args.recipients,
                                   args.profile / name if args.profile else None, root,
                                   args.nodes)
                if run is None:
                    break
                print(backend, labels[root], run, file=sys.stderr)
                runs.setdefault((backend, root), []).append(run)
    rows = {(f"{backend} @ {labels[root]}" if several else backend): summarise(found)
            for (backend, root), found in runs.items()}
    command = f"python -m bench.pipeline --recipients {args.recipients} --runs {args.runs}"
    marker, title, setting = MARKER, "Delivery pipeline", ""
    if args.nodes > 1:
        command += f" --backends postgresql --nodes {args.nodes}"
        marker = f"{MARKER[:-4]}: {args.nodes} nodes -->"
        title = f"Delivery pipeline on {args.nodes} nodes"
        setting = (f" {args.nodes} hubs on one PostgreSQL database and Redis, the message "
                   "posted to the first, the tracker on the last; hub CPU summed over them.")
    if args.against:
        command += f" --against {args.against}"
    if args.roots != ".":
        command += f" --roots {args.roots}"
    lines = [marker, f"## {title} ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)", "",
             f"Machine: {machine()}. One message to {args.recipients:,} recipients, simulated "
             "provider with zero latency, receipts after 1 s, one tracker connected "
             "(it receives every `recipient_update`). Median of "
             f"{args.runs} runs per database, lowest and highest in brackets"
             + (", the checkouts' runs interleaved" if several else "") + "." + setting,
             f"Command: `{command}`.", "",
             "| figure | " + " | ".join(rows) + " |", "| --- |" + " --- |" * len(rows)]
    labels_of = [("POST /api/messages answered (ms)", "post_ms"),
                 ("all recipients sent or refused (s)", "sent_s"),
                 ("recipients sent per second", "sent_per_s"),
                 ("all delivery receipts applied (s)", "delivered_s"),
                 ("recipients delivered per second, end to end", "delivered_per_s"),
                 ("tracker has every recipient `DELIVERED` (s)", "tracked_s"),
                 ("recipients per second as the tracker saw them", "tracked_per_s"),
                 ("hub CPU per recipient, POST to the tracker's last (ms)",
                  "hub_cpu_ms_per_recipient"),
                 ("`recipient_update` events the tracker received", "tracker_updates"),
                 ("tracker still connected at the end", "tracker_connected")]
    for label, key in labels_of:
        lines.append(f"| {label} | " + " | ".join(str(r[key]) for r in rows.values()) + " |")
    lines.append(marker)
    print("\n".join(lines))
    if args.profile or several:
        return  # a sampled server runs slower, a comparison is not the record: not written
    write_section(marker, "\n".join(lines))


if __name__ == "__main__":
    main()
