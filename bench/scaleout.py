"""Scale-out benchmark: 10,000 connections on one hub process, then split over several, in one run.

Each arrangement gets a fresh PostgreSQL database (several processes need a
shared one) and the hub's production settings as ``bench/run.py`` uses them.
The arrangements of several processes share a Redis message queue on a
channel of their own. With the connections open, ``bench/scaleout.js`` (the
official client) measures broadcast fan-out, notify latency to users on the
process that takes the POST and on the others, and the notifies per second
the processes sustain (``--sustain`` seconds, POSTs spread over the
processes); this script then emits to a room nobody is in, from a process
without sockets built from the measured code (as ``flask notify`` emits),
and charges each hub process the CPU it spends receiving them.

``--baseline REF`` runs every arrangement a second time on the code of git
revision ``REF`` (exported to a directory of its own), in the same session,
so that a change is measured beside what it replaces. Figures go to
BENCHMARKS.md under "Scale-out".

    python -m bench.scaleout [--connections 10000] [--arrangements one,two-one-core,two,three]
                             [--baseline main] [--sustain 10]
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
    short_commit,
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
    "three": Arrangement("three", "three processes, two cores", ("0,1", "0,1", "0,1"), "0,1"),
}
WHY = {
    "one": "the baseline",
    "two-one-core": "the same CPU budget as one process: what splitting and Redis cost",
    "two": "what the second core buys; the load generator has no core of its own and shares "
           "both with the servers, so its latencies are pessimistic",
    "three": "each user's sockets on one of three processes, which share both cores with the "
             "load generator",
}


def pinning(names: list[str]) -> str:
    parts = []
    for name in names:
        arrangement = ARRANGEMENTS[name]
        cpus = arrangement.server_cpus
        servers = (f"server on CPU {cpus[0]}" if len(cpus) == 1 else
                   f"all servers on CPUs {cpus[0].replace(',', ' and ')}"
                   if len(set(cpus)) == 1 and "," in cpus[0] else
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


# Emits ``count`` notifications to ``room`` at ``rate`` through the measured code's own client
# manager, as its processes without sockets emit; prints the CPU it spent, in seconds.
PUBLISHER = """
import sys, time
from services.transport.client_manager import build_client_manager
url, channel, room, count, rate = sys.argv[1:4] + [int(sys.argv[4]), float(sys.argv[5])]
manager = build_client_manager(url, channel)
payload = {"id": "0", "type": "system", "title": "nobody", "message": "x",
           "timestamp": "2026-01-01T00:00:00+00:00", "read": False, "unreadCount": 1}
started, cpu = time.monotonic(), time.process_time()
for index in range(count):
    manager.emit("notification", payload, namespace="/", room=room)
    wait = started + (index + 1) / rate - time.monotonic()
    if wait > 0:
        time.sleep(wait)
print(time.process_time() - cpu, time.monotonic() - started)
"""


def queue_receive_cost(pids: list[int], root: Path, queue_url: str, channel: str, emits: int,
                       rate: float, windows: int = 3) -> dict:
    """CPU each process spends on an emit for which it holds no socket.

    The emits go to a room nobody is in, at ``rate``, in a few windows; each
    follows an idle window of the same length, whose CPU (pings and pongs of
    the open sockets, the node's own loop) is subtracted. Alternating keeps
    the background's drift out of the difference. The publisher is a process
    of its own running the measured code (``root``), so it routes its emits
    as that code's ``flask notify`` would.
    """
    per_window = emits // windows
    window = per_window / rate + 0.5
    idle, busy = [0] * len(pids), [0] * len(pids)
    publish_cpu = publish_seconds = 0.0
    for _ in range(windows):
        before = [cpu_ms(pid) for pid in pids]
        time.sleep(window)
        idle = [total + cpu_ms(pid) - b for total, pid, b in zip(idle, pids, before, strict=True)]
        publisher = subprocess.Popen(
            [sys.executable, "-c", PUBLISHER, queue_url, channel, "user:0", str(per_window),
             str(rate)], cwd=root, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(root)})
        time.sleep(0.3)  # its imports; the window starts with its first emit, near enough
        before = [cpu_ms(pid) for pid in pids]
        started = time.monotonic()
        out, _ = publisher.communicate(timeout=window * 4 + 30)
        time.sleep(max(0.0, started + window - time.monotonic()))
        busy = [total + cpu_ms(pid) - b for total, pid, b in zip(busy, pids, before, strict=True)]
        cpu, seconds = map(float, out.split())
        publish_cpu += cpu
        publish_seconds += seconds
    sent = per_window * windows
    return {
        "emits": sent, "achieved_rate": round(sent / publish_seconds),
        "idle_ms_by_process": idle, "busy_ms_by_process": busy,
        "receive_cpu_us_per_emit_by_process": [
            round((b - i) * 1000 / sent) for b, i in zip(busy, idle, strict=True)],
        "publisher_cpu_us_per_emit": round(publish_cpu * 1e6 / sent),
    }


def code_tree(revision: str) -> Path:
    """The files of git ``revision``, exported once to a directory of their own."""
    commit = subprocess.run(["git", "rev-parse", "--short", revision], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.strip()
    tree = WORK / f"tree-{commit}"
    if not (tree / "app.py").exists():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", commit], cwd=ROOT, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def run_arrangement(arrangement: Arrangement, kit: Path, connections: int, load_args: list[str],
                    redis_db: int, queue_emits: int, queue_rate: float,
                    root: Path = ROOT) -> dict:
    """One arrangement of the code at ``root``: the load generator's figures and the queue's."""
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
                    ["taskset", "-c", cpus, sys.executable, str(root / "app.py")], cwd=root,
                    env={**env, "PORT": str(port), "NODE_ID": f"bench-{'abc'[index]}"},
                    stdout=logs[-1], stderr=subprocess.STDOUT))
            for port in ports:
                wait_for_port(port, timeout=120)  # several processes starting on a busy machine
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
            queue = (queue_receive_cost(pids, root, queue_url, channel, queue_emits, queue_rate)
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


def column_label(key: str) -> str:
    """``three`` or ``three@main``: the arrangement, and the revision when not this one."""
    name, _, revision = key.partition("@")
    return ARRANGEMENTS[name].label + (f", {revision}" if revision else "")


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
        ("messages on the shared channel while connecting, broadcasting and notifying",
         lambda r: r["published"] and ", ".join(
             f"{kind} {count:,}" for kind, count in r["published"].items())),
        ("queue: CPU per emit received for no local socket, by process (µs)",
         lambda r: r["queue"] and " / ".join(
             map(str, r["queue"]["receive_cpu_us_per_emit_by_process"]))),
        ("queue: publisher CPU per emit (µs, a process without sockets)",
         lambda r: r["queue"] and r["queue"]["publisher_cpu_us_per_emit"]),
        ("sustained notifies per second (POSTs completed, spread over the processes)",
         lambda r: (r.get("sustained") or {}).get("per_second")),
        ("sustained notifies: missed at the sockets",
         lambda r: (r.get("sustained") or {}).get("missed")),
        ("sustained notifies: server CPU by process (ms)",
         lambda r: r.get("sustained") and " + ".join(
             map(str, r["sustained"]["server_cpu_ms_by_process"]))),
    ]
    lines = ["| figure | " + " | ".join(column_label(n) for n in names) + " |",
             "|" + " --- |" * (1 + len(names))]
    for label, pick in rows:
        lines.append(f"| {label} | " + " | ".join(_cell(pick(results[n])) for n in names) + " |")
    return lines


def method(args: argparse.Namespace) -> str:
    return (
        "A fresh PostgreSQL database per arrangement and the production settings of "
        "`bench/run.py`; two processes share Redis on a channel of their own. "
        f"{args.connections:,} sockets of the official client over 100 users; with several "
        "processes the users are split over them in order (each user's sockets on one), and "
        f"every REST call but the sustained notifies goes to the first. {args.broadcasts} "
        f"broadcasts; {args.notifies} notifies at {args.notify_rate:g}/s to users on each "
        "process (latency to the user's first socket); "
        f"{args.sustain:g} s of notifies with {args.concurrency} in flight, to every user in "
        "turn, POSTed to each process in turn; "
        f"{args.queue_emits:,} emits to a room nobody is in, published at "
        f"{args.queue_rate:g}/s by a process without sockets running the measured code, for "
        "the receiving CPU. Server CPU from `/proc/<pid>/stat`, summed over the processes, "
        "background included."
        + (f" Columns marked `{args.baseline}` ran the code of that revision "
           f"({args.baseline_commit}), exported with `git archive`, in the same session."
           if args.baseline else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=10000)
    parser.add_argument("--arrangements", default="one,two-one-core,two,three")
    parser.add_argument("--baseline", default="",
                        help="also run every arrangement on this git revision's code")
    parser.add_argument("--broadcasts", type=int, default=10)
    parser.add_argument("--notifies", type=int, default=200)
    parser.add_argument("--notify-rate", type=float, default=20)
    parser.add_argument("--sustain", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--queue-emits", type=int, default=6000)
    parser.add_argument("--queue-rate", type=float, default=1000)
    parser.add_argument("--redis-db", type=int, default=9)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    WORK.mkdir(parents=True, exist_ok=True)
    kit = WORK / "kit" if (WORK / "kit" / "load" / "node_modules").exists() else prepare_kit()
    load_args = ["--k", str(args.broadcasts), "--notify", str(args.notifies),
                 "--rate", str(args.notify_rate), "--sustain", str(args.sustain),
                 "--concurrency", str(args.concurrency)]
    trees = [("", ROOT)]
    if args.baseline:
        trees.append((args.baseline, code_tree(args.baseline)))
        args.baseline_commit = trees[-1][1].name.removeprefix("tree-")
    results: dict[str, dict] = {}
    for name in args.arrangements.split(","):
        for revision, root in trees:
            key = f"{name}@{revision}" if revision else name
            started = time.monotonic()
            results[key] = run_arrangement(ARRANGEMENTS[name], kit, args.connections, load_args,
                                           args.redis_db, args.queue_emits, args.queue_rate,
                                           root=root)
            print(f"{key}: {time.monotonic() - started:.0f} s", file=sys.stderr)
    (WORK / "results-scaleout.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    commit = short_commit()
    command = (f"python -m bench.scaleout --connections {args.connections} "
               f"--arrangements {args.arrangements}"
               + (f" --baseline {args.baseline}" if args.baseline else ""))
    lines = [MARKER, f"## Scale-out: one process or several on Redis "
             f"({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit})", "",
             f"Machine: {machine()}.",
             f"Command: `make bench-scaleout` (`{command}`).", "",
             pinning(args.arrangements.split(",")), "",
             method(args), "",
             *table(results), MARKER]
    write_section(MARKER, "\n".join(lines))


if __name__ == "__main__":
    main()
