"""What one targeted notify costs the server, the hub's against the Node peer's, in one run.

The kit's notify figure is a latency at 200/s, and a latency tail is mostly
queueing: how near the server's core is to full. Its cause is the server's
CPU per notify (the REST request, the stored row, the emit to the user's
sockets), which the kit does not report. Here each server (pinned to CPU 0)
gets what the kit's notify phase sends, from ``bench/notify.js`` on CPU 1
with the official client: N sockets over 100 users, the kit's five
broadcasts first, then COUNT notifies at RATE a second. Reported: the
server's CPU per notify, the latency to the first socket of the user (p50,
p99, and p99 without the first second, when pools and keep-alive connections
are still being opened), and how many notifies were answered other than 201.
Then as many ``GET /healthz`` at the same rate: the CPU of a request that does
no work (the Node peer answers it 404), the HTTP stack's floor under a notify.
Every server is measured ``--rounds`` times, in turn; each figure is the
median. ``--against REF`` measures the hub of another commit too.

    python -m bench.notify_cost [--connections 1000] [--count 2000] [--rate 200]
        [--backends sqlite,postgresql] [--rounds 3] [--against REF]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

from bench.run import (
    HUB_ENV,
    SECRET,
    WORK,
    checkout,
    hub_database,
    machine,
    median_result,
    prepare_kit,
    publish,
    ratio_table,
)
from bench.soak import wait_for_port

ROOT = Path(__file__).resolve().parent.parent
PORT = 7151
BROADCASTS = 5
MARKER = "<!-- bench/notify_cost.py results -->"
FIGURES = [
    ("cpu", "server CPU per notify (ms)", lambda r: r.get("cpu_ms_per_notify")),
    ("floor", "server CPU per GET /healthz at the same rate (ms)",
     lambda r: r.get("cpu_ms_per_get")),
    ("p50", "notify latency p50 (ms)", lambda r: r.get("p50")),
    ("p99", "notify latency p99 (ms)", lambda r: r.get("p99")),
    ("p99_late", "notify latency p99 after the first second (ms)",
     lambda r: r.get("p99_after_first_second")),
    ("rate", "achieved rate (/s)", lambda r: r.get("achieved_rate")),
    ("heard", "notifies heard by a socket", lambda r: r.get("heard")),
    ("refused", "answers other than 201", lambda r: sum(
        count for status, count in r.get("statuses", {}).items() if status != "201")),
]


def measure(kit: Path, command: list[str], cwd: Path, env: dict, tokens_file: Path,
            args: argparse.Namespace) -> dict:
    """One server started, driven by ``notify.js`` and stopped: the driver's figures."""
    server = subprocess.Popen(["taskset", "-c", "0", *command], cwd=cwd,
                              env={**os.environ, **env, "PORT": str(PORT),
                                   "JWT_SECRET_KEY": SECRET},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(PORT)
        driver = subprocess.run(
            ["taskset", "-c", "1", "node", str(ROOT / "bench" / "notify.js"),
             f"http://127.0.0.1:{PORT}", str(tokens_file), str(args.connections),
             str(args.count), str(args.rate), str(BROADCASTS), str(server.pid)],
            env={**os.environ, "NODE_PATH": str(kit / "load" / "node_modules")},
            capture_output=True, text=True, timeout=600, check=True)
    finally:
        server.terminate()
        server.wait(timeout=60)
    return json.loads(driver.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--against", default="")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    WORK.mkdir(parents=True, exist_ok=True)
    kit = prepare_kit()
    sources = {"": ROOT, **({f"@{args.against}": checkout(args.against)} if args.against else {})}
    servers = []
    for backend in args.backends.split(","):
        database = hub_database(backend, "tokens-notify")
        if database is None:
            continue
        url, tokens_file = database
        for name, source in sources.items():
            servers.append((f"hub-{backend}{name}", [sys.executable, "app.py"], source,
                            {**HUB_ENV, "DATABASE_URL": url}, tokens_file))
    servers.append(("node", ["node", str(kit / "node-peer" / "server.js")], ROOT, {},
                    servers[0][4]))
    rounds: dict[str, list[dict]] = {}
    for _ in range(args.rounds):
        for name, command, cwd, env, tokens_file in servers:
            result = measure(kit, command, cwd, env, tokens_file, args)
            print(f"{name}: {json.dumps(result)}", file=sys.stderr)
            rounds.setdefault(name, []).append(result)
    (WORK / "notify-cost.json").write_text(json.dumps(rounds, indent=2))
    medians = {name: median_result(runs) for name, runs in rounds.items()}
    command = " ".join(["make bench-notify", f"CONNECTIONS={args.connections}",
                        f"COUNT={args.count}", f"RATE={args.rate}", f"BACKENDS={args.backends}",
                        f"ROUNDS={args.rounds}",
                        *([f"AGAINST={args.against}"] if args.against else [])])
    publish(MARKER, "What a notify costs the server", [
        f"Machine: {machine()}. Server pinned to CPU 0, `bench/notify.js` to CPU 1.",
        f"Command: `{command}`. {args.connections:,} sockets over 100 users, "
        f"{BROADCASTS} broadcasts, then {args.count:,} notifies at {args.rate}/s. Each figure "
        f"is the median of {args.rounds} rounds, every server measured once a round, in turn.",
        "", *ratio_table(medians, "node", FIGURES), "",
    ])


if __name__ == "__main__":
    main()
