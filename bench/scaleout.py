"""Scale-out benchmark: 10,000 connections on one hub process, then split over two, in one run.

Each arrangement gets a fresh PostgreSQL database (several processes need a
shared one) and the hub's production settings as ``bench/run.py`` uses them.
The two-process arrangements share a Redis message queue on a channel of
their own. With the connections open, ``bench/scaleout.js`` (the official
client) measures broadcast fan-out and notify latency to users on the process
that takes the POST and on the other one; this script then publishes emits
addressed to nobody on the queue and charges each process the CPU it spends
receiving them. Figures go to BENCHMARKS.md under "Scale-out".

    python -m bench.scaleout [--connections 10000] [--arrangements one,two-one-core,two]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.run import (
    HUB_ENV,
    SECRET,
    WORK,
    machine,
    prepare_hub_database,
    prepare_kit,
    write_section,
)
from bench.soak import wait_for_port
from tests.support import fresh_postgres_database

ROOT = Path(__file__).resolve().parent.parent

MARKER = "<!-- bench/scaleout.py results -->"
REDIS_BASE = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
FIRST_PORT = 7113


@dataclass(frozen=True)
class Arrangement:
    """Which CPUs each server process and the load generator may run on."""

    name: str
    label: str
    server_cpus: tuple[str, ...]
    load_cpus: str

    @property
    def processes(self) -> int:
        return len(self.server_cpus)


ARRANGEMENTS = {
    "one": Arrangement("one", "one process", ("0",), "1"),
    "two-one-core": Arrangement("two-one-core", "two processes, one core", ("0", "0"), "1"),
    "two": Arrangement("two", "two processes, two cores", ("0", "1"), "0,1"),
}
WHY = {
    "one": "the baseline",
    "two-one-core": "the same CPU budget as one process: what splitting and Redis cost",
    "two": "what the second core buys; the load generator has no core of its own and shares "
           "both with the servers, so its latencies are pessimistic",
}


def pinning(names: list[str]) -> str:
    parts = []
    for name in names:
        arrangement = ARRANGEMENTS[name]
        cpus = arrangement.server_cpus
        servers = (f"server on CPU {cpus[0]}" if len(cpus) == 1 else
                   f"both servers on CPU {cpus[0]}" if len(set(cpus)) == 1 else
                   "servers on " + " and ".join(f"CPU {cpu}" for cpu in cpus))
        load = arrangement.load_cpus.split(",")
        load_text = f"CPU {load[0]}" if len(load) == 1 else "CPUs " + " and ".join(load)
        parts.append(f"*{arrangement.label}*: {servers}, load generator on {load_text} "
                     f"({WHY[name]})")
    return "Pinning (`taskset`): " + "; ".join(parts) + ". PostgreSQL and Redis are not pinned."


def cpu_ms(pid: int) -> int:
    """utime + stime of ``pid`` in ms (CLK_TCK = 100)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 10


class QueueTally:
    """What the processes publish on the queue, counted by event (emits) or method."""

    def __init__(self, queue_url: str, channel: str) -> None:
        import redis

        self.counts: Counter[str] = Counter()
        self.pubsub = redis.Redis.from_url(queue_url).pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(**{channel: self._count})
        self.thread = self.pubsub.run_in_thread(sleep_time=0.1, daemon=True)

    def _count(self, message: dict) -> None:
        data = json.loads(message["data"])
        self.counts[data.get("event") or data.get("method")] += 1

    def stop(self) -> dict[str, int]:
        self.thread.stop()
        self.thread.join(timeout=5)
        self.pubsub.close()
        return dict(self.counts.most_common())


def queue_receive_cost(pids: list[int], queue_url: str, channel: str, emits: int,
                       rate: float, windows: int = 3) -> dict:
    """CPU each process spends on an emit for which it holds no socket.

    Every emit through the queue reaches every process, which decodes it and
    looks up the room before finding nothing to send. The emits here go to a
    room nobody is in, at ``rate``, in a few windows; each follows an idle
    window of the same length, whose CPU (pings and pongs of the open
    sockets, the node's own loop) is subtracted. Alternating keeps the
    background's drift out of the difference.
    """
    import socketio

    publisher = socketio.RedisManager(queue_url, channel=channel, write_only=True)
    payload = {"id": "0", "type": "system", "title": "nobody", "message": "x",
               "timestamp": datetime.now(UTC).isoformat(), "read": False, "unreadCount": 1}
    per_window = emits // windows
    window = per_window / rate + 0.5
    idle, busy = [0] * len(pids), [0] * len(pids)
    publish_cpu = publish_seconds = 0.0
    for _ in range(windows):
        before = [cpu_ms(pid) for pid in pids]
        time.sleep(window)
        idle = [total + cpu_ms(pid) - b for total, pid, b in zip(idle, pids, before, strict=True)]
        before = [cpu_ms(pid) for pid in pids]
        started, own_cpu = time.monotonic(), time.process_time()
        for index in range(per_window):
            publisher.emit("notification", payload, namespace="/", room="user:0")
            wait = started + (index + 1) / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        publish_cpu += time.process_time() - own_cpu
        publish_seconds += time.monotonic() - started
        time.sleep(max(0.0, started + window - time.monotonic()))
        busy = [total + cpu_ms(pid) - b for total, pid, b in zip(busy, pids, before, strict=True)]
    sent = per_window * windows
    return {
        "emits": sent, "achieved_rate": round(sent / publish_seconds),
        "idle_ms_by_process": idle, "busy_ms_by_process": busy,
        "receive_cpu_us_per_emit_by_process": [
            round((b - i) * 1000 / sent) for b, i in zip(busy, idle, strict=True)],
        "publisher_cpu_us_per_emit": round(publish_cpu * 1e6 / sent),
    }


def run_arrangement(arrangement: Arrangement, kit: Path, connections: int, load_args: list[str],
                    redis_db: int, queue_emits: int, queue_rate: float) -> dict:
    with fresh_postgres_database() as url:
        tokens_file = WORK / f"tokens-scaleout-{arrangement.name}.json"
        tokens_file.write_text(json.dumps(prepare_hub_database(url)))
        channel = f"hub-bench-scaleout-{uuid.uuid4().hex[:8]}"
        queue_url = f"{REDIS_BASE}/{redis_db}"
        env = {**os.environ, **HUB_ENV, "DATABASE_URL": url, "JWT_SECRET_KEY": SECRET}
        if arrangement.processes > 1:
            env.update({"SOCKETIO_MESSAGE_QUEUE": queue_url, "SOCKETIO_CHANNEL": channel})
        servers: list[subprocess.Popen] = []
        logs = []
        tally = QueueTally(queue_url, channel) if arrangement.processes > 1 else None
        ports = [FIRST_PORT + index for index in range(arrangement.processes)]
        try:
            for index, (port, cpus) in enumerate(zip(ports, arrangement.server_cpus,
                                                     strict=True)):
                logs.append(open(WORK / f"scaleout-{arrangement.name}-{port}.log", "w"))  # noqa: SIM115
                servers.append(subprocess.Popen(
                    ["taskset", "-c", cpus, sys.executable, str(ROOT / "app.py")], cwd=ROOT,
                    env={**env, "PORT": str(port), "NODE_ID": f"bench-{'ab'[index]}"},
                    stdout=logs[-1], stderr=subprocess.STDOUT))
            for port in ports:
                wait_for_port(port)
            pids = [server.pid for server in servers]
            load = subprocess.Popen(
                ["taskset", "-c", arrangement.load_cpus, "node",
                 str(ROOT / "bench" / "scaleout.js"),
                 "--urls", ",".join(f"http://127.0.0.1:{port}" for port in ports),
                 "--pids", ",".join(map(str, pids)), "--tokens", str(tokens_file),
                 "--n", str(connections), *load_args],
                env={**os.environ, "NODE_PATH": str(kit / "load" / "node_modules")},
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert load.stdin is not None and load.stdout is not None
            held = load.stdout.readline()
            if not held.strip():
                raise RuntimeError(f"{arrangement.name}: the load generator stopped early")
            published = tally.stop() if tally else None
            queue = (queue_receive_cost(pids, queue_url, channel, queue_emits, queue_rate)
                     if arrangement.processes > 1 else None)
            load.stdin.write("done\n")
            load.stdin.flush()
            result = json.loads(load.stdout.read().strip().splitlines()[-1])
            load.wait(timeout=60)
            result["queue"] = queue
            result["published"] = published
            return result
        finally:
            if tally is not None:
                tally.stop()
            for server in servers:
                server.send_signal(2)
            for server in servers:
                try:
                    server.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
            for log in logs:
                log.close()


def _cell(value: object) -> str:
    if value is None:
        return "–"
    return f"{value:,}" if isinstance(value, int) else str(value)


def table(results: dict[str, dict]) -> list[str]:
    names = list(results)

    rows: list[tuple[str, object]] = [
        ("connections per process", lambda r: " + ".join(
            f"{n:,}" for n in r["connections_per_process"])),
        ("connect failures", lambda r: r["connect_fail"]),
        ("server CPU per connect, all processes (ms)",
         lambda r: r["connect_server_cpu_ms_per_conn"]),
        ("broadcast: median client has it (ms, median over the broadcasts)",
         lambda r: r["broadcast_p50_ms_median"]),
        ("broadcast: last client has it, median (ms)", lambda r: r["broadcast_all_ms_median"]),
        ("broadcast: last client has it, p99 (ms; the slowest broadcast)",
         lambda r: r["broadcast_all_ms_p99"]),
        ("broadcast deliveries missed", lambda r: r["broadcast_missed"]),
        ("server CPU per broadcast delivery, all processes (µs)",
         lambda r: r["broadcast_server_cpu_us_per_delivery"]),
        ("broadcast server CPU by process (ms, all broadcasts)",
         lambda r: " + ".join(map(str, r["broadcast_server_cpu_ms_by_process"]))),
        ("notify, user on the process posted to: latency p50 (ms)",
         lambda r: r["notify"]["same"]["p50"]),
        ("notify, user on the process posted to: latency p99 (ms)",
         lambda r: r["notify"]["same"]["p99"]),
        ("notify, user on the other process: latency p50 (ms)",
         lambda r: (r["notify"].get("other") or {}).get("p50")),
        ("notify, user on the other process: latency p99 (ms)",
         lambda r: (r["notify"].get("other") or {}).get("p99")),
        ("notifies missed", lambda r: sum(p["missed"] for p in r["notify"].values())),
        ("notify's emit call, user on the process posted to (µs, mean wall time)",
         lambda r: r["notify"]["same"]["emit_call_us_mean"]),
        ("notify's emit call, user on the other process (µs, mean wall time)",
         lambda r: (r["notify"].get("other") or {}).get("emit_call_us_mean")),
        ("messages on the queue while connecting, broadcasting and notifying",
         lambda r: r["published"] and ", ".join(
             f"{kind} {count:,}" for kind, count in r["published"].items())),
        ("queue: CPU per emit received for no local socket, by process (µs)",
         lambda r: r["queue"] and " / ".join(
             map(str, r["queue"]["receive_cpu_us_per_emit_by_process"]))),
        ("queue: publisher CPU per emit (µs, redis-py outside the hub)",
         lambda r: r["queue"] and r["queue"]["publisher_cpu_us_per_emit"]),
    ]
    lines = ["| figure | " + " | ".join(ARRANGEMENTS[n].label for n in names) + " |",
             "|" + " --- |" * (1 + len(names))]
    for label, pick in rows:
        lines.append(f"| {label} | " + " | ".join(_cell(pick(results[n])) for n in names) + " |")
    return lines


def method(args: argparse.Namespace) -> str:
    return (
        "A fresh PostgreSQL database per arrangement and the production settings of "
        "`bench/run.py`; two processes share Redis on a channel of their own. "
        f"{args.connections:,} sockets of the official client over 100 users; with two "
        "processes the first 50 users' sockets are on the first and the others' on the "
        f"second, and every REST call goes to the first. {args.broadcasts} broadcasts; "
        f"{args.notifies} notifies at {args.notify_rate:g}/s to users on each process "
        "(latency to the user's first socket); "
        f"{args.queue_emits:,} emits to a room nobody is in, published on the queue at "
        f"{args.queue_rate:g}/s from outside the hub, for the receiving CPU. Server CPU from "
        "`/proc/<pid>/stat`, summed over the processes, background included."
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=10000)
    parser.add_argument("--arrangements", default="one,two-one-core,two")
    parser.add_argument("--broadcasts", type=int, default=10)
    parser.add_argument("--notifies", type=int, default=200)
    parser.add_argument("--notify-rate", type=float, default=20)
    parser.add_argument("--queue-emits", type=int, default=6000)
    parser.add_argument("--queue-rate", type=float, default=1000)
    parser.add_argument("--redis-db", type=int, default=9)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    WORK.mkdir(parents=True, exist_ok=True)
    kit = WORK / "kit" if (WORK / "kit" / "load" / "node_modules").exists() else prepare_kit()
    load_args = ["--k", str(args.broadcasts), "--notify", str(args.notifies),
                 "--rate", str(args.notify_rate)]
    results: dict[str, dict] = {}
    for name in args.arrangements.split(","):
        started = time.monotonic()
        results[name] = run_arrangement(ARRANGEMENTS[name], kit, args.connections, load_args,
                                        args.redis_db, args.queue_emits, args.queue_rate)
        print(f"{name}: {time.monotonic() - started:.0f} s", file=sys.stderr)
    (WORK / "results-scaleout.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    lines = [MARKER, f"## Scale-out: one process or two on Redis "
             f"({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit})", "",
             f"Machine: {machine()}.",
             f"Command: `make bench-scaleout` (`python -m bench.scaleout --connections "
             f"{args.connections} --arrangements {args.arrangements}`).", "",
             pinning(list(results)), "",
             method(args), "",
             *table(results), MARKER]
    write_section(MARKER, "\n".join(lines))


if __name__ == "__main__":
    main()
