"""What trackers of a 10,000-recipient message cost the hub: a packet per change, or batches.

For each scenario the hub runs with its production settings (SQLite, the
simulated provider) on CPU 0 and sends one message of 10,000 recipients;
from CPU 1, 1 or 10 sockets of its owner track it, per recipient
(``track_message`` with the id) or batched (``{messageId, batch: true}``),
and read everything unparsed until every recipient is delivered. A scenario
without trackers measures the sending itself; the hub's CPU beyond it,
divided by the status changes delivered (three per recipient: SENDING, SENT,
DELIVERED, times the trackers), is the cost per change delivered. Packets
are Socket.IO events received per tracker, the snapshot included. The
sending itself costs more than the trackers, and on a shared machine its CPU
varies from run to run: each scenario runs ``--rounds`` times, interleaved,
and the medians are compared.

That difference varies from round to round by more than one batched
tracker costs, so the hub runs under ``bench/tracker_cpu.py``, which times
the thread CPU spent in the trackers' paths (the per-recipient emits, the
batches, the snapshots, the socket writes): beyond the same round's run
without trackers, per change delivered, a second figure, steadier than the
first, and the one the goal is read from.

With ``--against REF`` the hub of that commit (from ``git archive``, on a
database migrated by this checkout) serves its own scenarios in the same
rounds: those of its modes, per recipient only for a commit before batches;
each checkout's cost per change counts from its own run without trackers.

    python -m bench.recipient_batches [--recipients 10000] [--rounds 3] [--against REF]
"""

from __future__ import annotations

import argparse
import json
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
import websocket

from bench.expensive_events import cpu_seconds
from bench.run import (
    HUB_ENV,
    ROOT,
    SECRET,
    WORK,
    checkout,
    machine,
    prepare_hub_database,
    short_commit,
    write_section,
)
from bench.soak import wait_for_port

MARKER = "<!-- bench/recipient_batches.py results -->"
PORT = 7141
# One user's ten trackers would be past the production snapshot budget.
BUDGET = {"SNAPSHOT_RATE": "1000000", "SNAPSHOT_BURST": "1000000"}
SCENARIOS = [("none", 0), ("per recipient", 1), ("batched", 1), ("per recipient", 10),
             ("batched", 10)]
CHANGES_PER_RECIPIENT = 3


class Tracker:
    """One raw websocket that tracks the message and counts what it receives."""

    def __init__(self, base: str, token: str) -> None:
        self.ws = websocket.create_connection(
            base.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket", timeout=30)
        self.ws.recv()
        self.ws.send("40" + json.dumps({"token": token}))
        self.ws.recv()
        self.received = bytearray()
        self.reader = threading.Thread(target=self._drain, daemon=True)

    def track(self, argument) -> None:
        self.reader.start()
        self.ws.send("421" + json.dumps(["track_message", argument]))

    def _drain(self) -> None:
        while True:
            try:
                data = self.ws.sock.recv(1 << 20)
            except OSError:
                return
            if not data:
                return
            self.received.extend(data)

    def close(self) -> dict:
        self.ws.close()
        self.reader.join(timeout=5)
        return {"bytes": len(self.received), "packets": self.received.count(b'42["')}


def settle(base: str, headers: dict, message_id: str, total: int) -> None:
    while True:
        message = requests.get(f"{base}/api/messages/{message_id}", headers=headers,
                               timeout=30).json()
        if message["status"] != "SENDING" and \
                message["deliveredCount"] + message["failedCount"] == total:
            return
        time.sleep(0.5)


def scenario(mode: str, trackers: int, recipients: int, root: Path = ROOT) -> dict:
    folder = Path(tempfile.mkdtemp(dir=WORK))
    url = f"sqlite:///{folder}/hub.db"
    tokens = prepare_hub_database(url, 1)
    token = tokens["users"][0]["token"]
    paths = folder / "tracker-cpu.json"
    server = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, str(ROOT / "bench" / "tracker_cpu.py"), str(paths),
         str(root / "app.py")], cwd=root,
        env={**os.environ, **HUB_ENV, **BUDGET, "DATABASE_URL": url, "PORT": str(PORT),
             "JWT_SECRET_KEY": SECRET},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(PORT)
        base = f"http://127.0.0.1:{PORT}"
        headers = {"Authorization": f"Bearer {token}"}
        sockets = [Tracker(base, token) for _ in range(trackers)]
        time.sleep(1)
        cpu_before, started = cpu_seconds(server.pid), time.monotonic()
        created = requests.post(f"{base}/api/messages", headers=headers, timeout=60, json={
            "body": "bench", "recipients": [f"+1555{i:07d}" for i in range(recipients)]})
        created.raise_for_status()
        message_id = created.json()["id"]
        for tracker in sockets:
            tracker.track(message_id if mode == "per recipient"
                          else {"messageId": message_id, "batch": True})
        settle(base, headers, message_id, recipients)
        time.sleep(1.0)
        cpu = cpu_seconds(server.pid) - cpu_before
        wall = time.monotonic() - started
        received = [tracker.close() for tracker in sockets]
    finally:
        server.terminate()
        server.wait(timeout=20)
    result = {"mode": mode, "trackers": trackers, "cpuSeconds": cpu, "wallSeconds": wall,
              "trackerCpuSeconds": json.loads(paths.read_text())["seconds"],
              "packetsPerTracker": sum(r["packets"] for r in received) / max(1, trackers),
              "bytesPerTracker": sum(r["bytes"] for r in received) / max(1, trackers)}
    print(json.dumps(result), file=sys.stderr)
    return result


def median_of(rounds: list[dict], baselines: list[dict]) -> dict:
    """A scenario's medians over the rounds; its CPU beyond trackers is taken round by round
    against the same round's run of its commit without trackers, so that a round on a
    slower moment of the machine counts against itself."""
    cpu = [r["cpuSeconds"] for r in rounds]
    return {**rounds[0], "cpuSeconds": statistics.median(cpu), "cpuRange": (min(cpu), max(cpu)),
            "extraCpuSeconds": statistics.median(
                r["cpuSeconds"] - base["cpuSeconds"] for r, base in zip(rounds, baselines,
                                                                        strict=True)),
            "extraTrackerCpuSeconds": statistics.median(
                r["trackerCpuSeconds"] - base["trackerCpuSeconds"]
                for r, base in zip(rounds, baselines, strict=True)),
            "wallSeconds": statistics.median(r["wallSeconds"] for r in rounds)}


def report(results: list[dict], recipients: int, rounds: int, command: str) -> str:
    commits = ", ".join(dict.fromkeys(r["commit"] for r in results))
    lines = [
        MARKER,
        f"## Batched recipient updates ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {commits})",
        "",
        f"Machine: {machine()}, shared with other work. Hub with its production settings "
        "(SQLite, the simulated provider; the snapshot budget raised so that one user may have "
        f"ten trackers) on CPU 0, sending one message of {recipients:,} recipients; from CPU 1 "
        "its owner's sockets track it and read everything. Cost per change: the median over "
        "the rounds of the hub's CPU beyond the same round's run of the same commit without "
        f"trackers, divided by the status changes delivered ({CHANGES_PER_RECIPIENT} per "
        f"recipient per tracker); {rounds} rounds of each, interleaved. In the trackers' "
        "paths: the same from the thread CPU timed in the trackers' paths "
        "(`bench/tracker_cpu.py`), beyond the same round's run without trackers. Packets: "
        "Socket.IO events per tracker, snapshot included.",
        f"Command: `{command}`.", "",
        "| commit | trackers | mode | hub CPU, median (min–max) s | wall (s) "
        "| CPU per change delivered (µs) | in the trackers' paths (µs) "
        "| packets per tracker | bytes per tracker |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        delivered = recipients * CHANGES_PER_RECIPIENT * r["trackers"]
        per_change = r["extraCpuSeconds"] / delivered * 1e6 if delivered else None
        in_paths = r["extraTrackerCpuSeconds"] / delivered * 1e6 if delivered else None
        low, high = r["cpuRange"]
        lines.append(
            f"| {r['commit']} | {r['trackers']} | {r['mode']} | {r['cpuSeconds']:.2f} "
            f"({low:.2f}–{high:.2f}) | {r['wallSeconds']:.1f} "
            f"| {'–' if per_change is None else f'{per_change:.1f}'} "
            f"| {'–' if in_paths is None else f'{in_paths:.2f}'} "
            f"| {r['packetsPerTracker']:,.0f} | {r['bytesPerTracker'] / 1e6:.2f} MB |")
    lines.append(MARKER)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--against", help="a commit before batches, measured per recipient")
    parser.add_argument("--no-write", action="store_true", help="print, leave BENCHMARKS.md")
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})
    WORK.mkdir(parents=True, exist_ok=True)
    plan = [(ROOT, short_commit(), planned) for planned in SCENARIOS]
    if args.against:
        plan = [(checkout(args.against), short_commit(ROOT, args.against), (mode, trackers))
                for mode, trackers in SCENARIOS if mode != "batched"] + plan
    rounds = [[{**scenario(mode, trackers, args.recipients, root), "commit": commit}
               for root, commit, (mode, trackers) in plan]
              for _ in range(args.rounds)]
    baseline_of = {commit: index for index, (_, commit, (_, trackers)) in enumerate(plan)
                   if trackers == 0}
    results = [median_of([run[index] for run in rounds],
                         [run[baseline_of[commit]] for run in rounds])
               for index, (_, commit, _) in enumerate(plan)]
    section = report(results, args.recipients, args.rounds,
                     "python -m bench.recipient_batches " + " ".join(sys.argv[1:]))
    if not args.no_write:
        write_section(MARKER, section)
    print(section)


if __name__ == "__main__":
    main()
