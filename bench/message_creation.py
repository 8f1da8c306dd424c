"""What creating a 10,000-recipient message, and downloading its report, cost others' acks.

A message of 10,000 numbers (three countries) is parsed, priced and inserted
in its ``POST /api/messages``; its ``report.csv`` is 10,000 rows. While one
user does either, another user's socket times its ``get_rooms`` acks every
10 ms. The hub runs with its production settings on CPU 0, the clients on
CPU 1. Each POST (and each download) starts only once the previous message
has been sent and its receipts applied, so the acks timed during it measure
the request itself, not the dispatcher; the acks of the control phase are
timed with nothing else running.

Each checkout in ``--roots`` serves in turn (its own ``app.py``) on a database
migrated by this checkout (whose migrations are a superset), so a tree
before and after a change are measured in one run, on the same machine.

    python -m bench.message_creation [--posts 8] [--backends sqlite,postgresql]
                                     [--roots .,../other-checkout] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import requests
import socketio

from bench.run import (
    HUB_ENV,
    SECRET,
    WORK,
    fresh_postgres,
    machine,
    prepare_hub_database,
    short_commit,
    write_section,
)
from bench.soak import wait_for_port

MARKER = "<!-- bench/message_creation.py results -->"
PORT = 7141
RECIPIENTS = 10_000
ACK_INTERVAL = 0.01
CONTROL_SECONDS = 3.0
SETTINGS = {"DAILY_RECIPIENT_QUOTA": "10000000", "MESSAGES_RATE_LIMIT": "100000/minute"}


def phones(post: int) -> list[str]:
    """10,000 numbers, a third each in the US, France and Germany, new for each post."""
    numbers = []
    for i in range(RECIPIENTS):
        serial = post * RECIPIENTS + i
        numbers.append((f"+1201555{serial % 10_000:04d}", f"+336{serial:08d}",
                        f"+49151{serial:08d}")[i % 3])
    return numbers


class AckProbe:
    """The bystander: times a ``get_rooms`` ack every ``ACK_INTERVAL``, from a thread."""

    def __init__(self, url: str, token: str) -> None:
        self.client = socketio.Client(reconnection=False)
        self.client.connect(url, auth={"token": token}, transports=["websocket"],
                            wait_timeout=10)
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self.stop.is_set():
            started = time.perf_counter()
            self.client.call("get_rooms", timeout=60)
            self.samples.append((started, time.perf_counter() - started))
            self.stop.wait(ACK_INTERVAL)

    def __enter__(self) -> AckProbe:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        self.thread.join()
        self.client.disconnect()

    def within(self, windows: list[tuple[float, float]]) -> list[float]:
        """The latencies of the acks asked for inside one of ``windows``."""
        return [latency for started, latency in self.samples
                if any(begin <= started <= end for begin, end in windows)]


def settle(base: str, headers: dict, message_id: str) -> None:
    """Until the message is sent and every receipt applied: nothing of it runs any more."""
    for _ in range(600):
        message = requests.get(f"{base}/api/messages/{message_id}", headers=headers,
                               timeout=30).json()
        if message["status"] != "SENDING" and message["deliveredCount"] == message["successCount"]:
            return
        time.sleep(0.2)
    raise RuntimeError(f"message {message_id} never settled")


def figures(latencies: list[float]) -> dict:
    ordered = sorted(latencies)
    return {"acks": len(ordered), "p50Ms": statistics.median(ordered) * 1000,
            "p99Ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
            "maxMs": ordered[-1] * 1000}


def measure(root: Path, backend: str, posts: int) -> dict:
    url = (f"sqlite:///{tempfile.mkdtemp(dir=WORK)}/hub.db" if backend == "sqlite"
           else fresh_postgres())
    if url is None:
        raise RuntimeError("PostgreSQL is not reachable")
    tokens = prepare_hub_database(url, 2)
    server = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, str(root / "app.py")], cwd=root,
        env={**os.environ, **HUB_ENV, **SETTINGS, "DATABASE_URL": url, "PORT": str(PORT),
             "JWT_SECRET_KEY": SECRET},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(PORT)
        base = f"http://127.0.0.1:{PORT}"
        headers = {"Authorization": f"Bearer {tokens['users'][1]['token']}"}
        commit = short_commit(root)
        with AckProbe(base, tokens["users"][0]["token"]) as probe:
            time.sleep(CONTROL_SECONDS)
            control = [(probe.samples[0][0], time.perf_counter())]
            post_windows, post_seconds, message_ids = [], [], []
            for post in range(posts):
                numbers = phones(post)
                started = time.perf_counter()
                created = requests.post(f"{base}/api/messages", headers=headers, timeout=60,
                                        json={"body": "bench", "recipients": numbers})
                ended = time.perf_counter()
                created.raise_for_status()
                post_windows.append((started, ended))
                post_seconds.append(ended - started)
                message_ids.append(created.json()["id"])
                settle(base, headers, message_ids[-1])
            report_windows, report_seconds, first_byte = [], [], []
            for message_id in message_ids:
                started = time.perf_counter()
                with requests.get(f"{base}/api/messages/{message_id}/report.csv",
                                  headers=headers, stream=True, timeout=60) as response:
                    if response.status_code == 404:
                        break
                    response.raise_for_status()
                    chunks = response.iter_content(65536)
                    next(chunks)
                    first_byte.append(time.perf_counter() - started)
                    size = sum(len(chunk) for chunk in chunks)
                ended = time.perf_counter()
                report_windows.append((started, ended))
                report_seconds.append(ended - started)
            result = {"root": str(root), "commit": commit, "backend": backend,
                      "control": figures(probe.within(control)),
                      "create": figures(probe.within(post_windows)),
                      "postMs": [s * 1000 for s in post_seconds]}
            if report_windows:
                result.update(report=figures(probe.within(report_windows)),
                              reportMs=[s * 1000 for s in report_seconds],
                              firstByteMs=[s * 1000 for s in first_byte], reportBytes=size)
        print(result, file=sys.stderr)
        return result
    finally:
        server.terminate()
        server.wait(timeout=20)


def _acks(f: dict) -> str:
    return f"{f['p50Ms']:.1f} / {f['p99Ms']:.1f} / {f['maxMs']:.0f} ({f['acks']})"


def report(runs: list[dict], posts: int, command: str) -> str:
    lines = [
        MARKER,
        "## Creating a 10,000-recipient message, and its report "
        f"({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)", "",
        f"Machine: {machine()}. Hub with its production settings on CPU 0, clients on CPU 1. "
        f"Another user's socket asks for a `get_rooms` ack every {ACK_INTERVAL * 1000:g} ms "
        f"throughout; its acks are counted in a row when asked for during that row's requests. "
        f"Control: {CONTROL_SECONDS:g} s with nothing else running. Create: {posts} "
        f"`POST /api/messages` of {RECIPIENTS:,} numbers (a third each in the US, France and "
        "Germany), one at a time, each once the previous message was sent and its receipts "
        "applied. Report: `GET /api/messages/<id>/report.csv` of each of those messages "
        "(10,000 rows), read as fast as the client can.",
        f"Command: `{command}`.", "",
        "| commit | database | phase | others' ack p50 / p99 / max, ms (acks) | request ms, "
        "median (max) | first byte ms, median |",
        "| --- | --- | --- | --- | --- | --- |"]
    for run in runs:
        prefix = f"| {run['commit']} | {run['backend']}"
        lines.append(f"{prefix} | control | {_acks(run['control'])} | – | – |")
        lines.append(f"{prefix} | create | {_acks(run['create'])} | "
                     f"{statistics.median(run['postMs']):.0f} ({max(run['postMs']):.0f}) | – |")
        if "report" in run:
            lines.append(
                f"{prefix} | report | {_acks(run['report'])} | "
                f"{statistics.median(run['reportMs']):.0f} ({max(run['reportMs']):.0f}) | "
                f"{statistics.median(run['firstByteMs']):.0f} |")
        else:
            lines.append(f"{prefix} | report | no `report.csv` in this tree | – | – |")
    lines.append(MARKER)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--posts", type=int, default=8)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--roots", default=".", help="checkouts to serve, comma-separated")
    parser.add_argument("--no-write", action="store_true", help="print, leave BENCHMARKS.md")
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})
    WORK.mkdir(parents=True, exist_ok=True)
    runs = [measure(Path(root).resolve(), backend, args.posts)
            for root in args.roots.split(",") for backend in args.backends.split(",")]
    command = " ".join(["python -m bench.message_creation", *sys.argv[1:]])
    section = report(runs, args.posts, command)
    if not args.no_write:
        write_section(MARKER, section)
    print(section)


if __name__ == "__main__":
    main()
