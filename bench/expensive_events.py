"""What one user's expensive events, at the allowed rate, cost another client's acks.

``track_message`` answers with up to a thousand ``recipient_update`` events and
``subscribe_analytics`` computes every figure. For each scenario the hub runs
with its production settings (20 events a second per socket, burst 40; the
snapshot budget, SQLite) on CPU 0; from CPU 1 the heavy user's sockets send
one event each at 19 a second, just inside the event rate, for SECONDS, while
a bystander of another user times its ``get_rooms`` acks (about 13 a second,
inside its own rate). The heavy user has a message of 1,000 recipients, sent
and delivered before the scenario starts; ``track_message`` tracks it. The
``get_rooms`` scenario is the control: an event that costs nothing.

Each checkout in ``--roots`` serves in turn (its own ``app.py``), so a tree
before and after a change are measured in one run, on the same machine.

    python -m bench.expensive_events [--seconds 20] [--roots .,../other-checkout]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
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
import websocket

from bench.run import (
    HUB_ENV,
    SECRET,
    WORK,
    machine,
    prepare_hub_database,
    process_cpu_seconds,
    short_commit,
    write_section,
)
from bench.soak import wait_for_port

MARKER = "<!-- bench/expensive_events.py results -->"
PORT = 7131
LIMITS = {"EVENT_RATE": "20", "EVENT_BURST": "40"}
HEAVY_RATE = 19.0
ACK_INTERVAL = 0.07
SCENARIOS = [("get_rooms", 1), ("track_message", 1), ("track_message", 4),
             ("subscribe_analytics", 1), ("subscribe_analytics", 4)]


def hammer(url: str, token: str, event: str, argument, seconds: float, ready, go,
           out) -> None:
    """One heavy socket: the event at ``HEAVY_RATE`` for ``seconds``, everything read unparsed."""
    ws = websocket.create_connection(url.replace("http", "ws")
                                     + "/socket.io/?EIO=4&transport=websocket", timeout=10)
    ws.recv()
    ws.send("40" + json.dumps({"token": token}))
    ws.recv()
    received = bytearray()

    def drain() -> None:
        while True:
            try:
                data = ws.sock.recv(1 << 20)
            except OSError:
                return
            if not data:
                return
            received.extend(data)
    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    args = json.dumps([event] if argument is None else [event, argument])
    ready.put(True)
    go.wait()
    started, sent = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        sent += 1
        ws.send(f"42{sent}{args}")
        delay = started + sent / HEAVY_RATE - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    time.sleep(0.5)
    ws.close()
    reader.join(timeout=5)
    out.put({"sent": sent, "refused": received.count(b'"rate_limited"')})


class HeavyUser:
    """The heavy user's sockets, each in its own process (on CPU 1), connected before ``run``.

    Starting Python processes costs far more than anything measured here, so
    it is done before the bystander starts timing.
    """

    def __init__(self, url: str, token: str, sockets: int, event: str, argument,
                 seconds: float) -> None:
        context = multiprocessing.get_context("spawn")
        self.ready, self.go, self.out = context.Queue(), context.Event(), context.Queue()
        self.seconds = seconds
        self.processes = [context.Process(target=hammer, args=(
            url, token, event, argument, seconds, self.ready, self.go, self.out))
            for _ in range(sockets)]
        for process in self.processes:
            process.start()
        for _ in self.processes:
            self.ready.get(timeout=60)

    def run(self) -> dict:
        self.go.set()
        results = [self.out.get(timeout=self.seconds + 60) for _ in self.processes]
        for process in self.processes:
            process.join()
        return {"sent": sum(r["sent"] for r in results),
                "refused": sum(r["refused"] for r in results)}


def settled_message(url: str, token: str) -> str:
    """A message of 1,000 recipients, sent and delivered, so that nothing else runs after."""
    headers = {"Authorization": f"Bearer {token}"}
    created = requests.post(f"{url}/api/messages", headers=headers, timeout=30, json={
        "body": "bench", "recipients": [f"+1555{i:07d}" for i in range(1000)]})
    created.raise_for_status()
    message_id = created.json()["id"]
    previous = None
    for _ in range(120):
        time.sleep(1)
        current = requests.get(f"{url}/api/messages/{message_id}", headers=headers,
                               timeout=30).json()
        if current["status"] != "SENDING" and current == previous:
            return message_id
        previous = current
    raise RuntimeError("the message never settled")


def quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def scenario(url: str, pid: int, tokens: dict, index: int, event: str, sockets: int,
             seconds: float) -> dict:
    heavy, calm = tokens["users"][2 * index], tokens["users"][2 * index + 1]
    message_id = settled_message(url, heavy["token"])
    argument = message_id if event == "track_message" else None
    bystander = socketio.Client(reconnection=False)
    bystander.connect(url, auth={"token": calm["token"]}, transports=["websocket"],
                      wait_timeout=10)
    acks: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            bystander.call("get_rooms", timeout=60)
            acks.append(time.perf_counter() - started)
            stop.wait(ACK_INTERVAL)
    heavy_sockets = HeavyUser(url, heavy["token"], sockets, event, argument, seconds)
    prober = threading.Thread(target=probe)
    cpu_before, wall_before = process_cpu_seconds(pid), time.monotonic()
    prober.start()
    counts = heavy_sockets.run()
    stop.set()
    prober.join()
    cpu_share = (process_cpu_seconds(pid) - cpu_before) / (time.monotonic() - wall_before)
    bystander.disconnect()
    return {"event": event, "sockets": sockets, "acks": len(acks),
            "p50Ms": statistics.median(acks) * 1000, "p99Ms": quantile(acks, 0.99) * 1000,
            "maxMs": max(acks) * 1000, "serverCpuShare": cpu_share, **counts}


def run_root(root: Path, seconds: float) -> dict:
    url = f"sqlite:///{tempfile.mkdtemp(dir=WORK)}/hub.db"
    tokens = prepare_hub_database(url, 2 * len(SCENARIOS))
    server = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, str(root / "app.py")], cwd=root,
        env={**os.environ, **HUB_ENV, **LIMITS, "DATABASE_URL": url, "PORT": str(PORT),
             "JWT_SECRET_KEY": SECRET},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(PORT)
        base = f"http://127.0.0.1:{PORT}"
        commit = short_commit(root)
        results = [scenario(base, server.pid, tokens, index, event, sockets, seconds)
                   for index, (event, sockets) in enumerate(SCENARIOS)]
        for result in results:
            print(f"{commit}: {json.dumps(result)}", file=sys.stderr)
        return {"commit": commit, "scenarios": results}
    finally:
        server.terminate()
        server.wait(timeout=20)


def report(runs: list[dict], seconds: float, roots: str) -> str:
    lines = [
        MARKER,
        f"## Expensive events at the allowed rate ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)", "",
        f"Machine: {machine()}. Hub with its production settings (SQLite; 20 events a second "
        "per socket, burst 40; snapshot budget 500 rows a second, 1,000 at once) on CPU 0. "
        f"From CPU 1, one user's sockets each send the event at {HEAVY_RATE:g} a second for "
        f"{seconds:g} s while another user's socket times its `get_rooms` acks (about "
        f"{1 / (ACK_INTERVAL + 0.004):.0f} a second). The heavy user has a message of 1,000 "
        "recipients, sent and delivered; `track_message` tracks it. `get_rooms` is the "
        "control. Refused: heavy events answered `rate_limited`.",
        f"Command: `python -m bench.expensive_events --seconds {seconds:g} --roots {roots}`.", "",
        "| scenario | commit | bystander ack p50 / p99 / max (ms) | server CPU | refused |",
        "| --- | --- | --- | --- | --- |"]
    for index, (event, sockets) in enumerate(SCENARIOS):
        for run in runs:
            s = run["scenarios"][index]
            lines.append(
                f"| `{event}` × {sockets} socket{'s' if sockets > 1 else ''} | {run['commit']} "
                f"| {s['p50Ms']:.1f} / {s['p99Ms']:.1f} / {s['maxMs']:.0f} "
                f"| {s['serverCpuShare'] * 100:.0f} % | {s['refused']} of {s['sent']} |")
    lines.append(MARKER)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--roots", default=".", help="checkouts to serve, comma-separated")
    parser.add_argument("--no-write", action="store_true", help="print, leave BENCHMARKS.md")
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})
    WORK.mkdir(parents=True, exist_ok=True)
    runs = [run_root(Path(root).resolve(), args.seconds) for root in args.roots.split(",")]
    section = report(runs, args.seconds, args.roots)
    if not args.no_write:
        write_section(MARKER, section)
    print(section)


if __name__ == "__main__":
    main()
