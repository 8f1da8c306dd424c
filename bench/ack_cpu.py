"""CPU time per ack round trip, user and system apart, the hub against the Node peer.

``make bench``'s CPU per ack is one figure for user and kernel time together, and on
this Firecracker guest the kernel's part (a ``read`` and a ``write`` an ack) is large
and moves with the neighbours: a change to the hub's Python (the compiled transport)
shows in user time only. Each server runs as in production, pinned to CPU 0, with one
client on CPU 1 acking ``get_rooms`` one at a time (``bench.ack_cost``'s client): ``WARM``
acks first, then ``COUNT`` timed by the server's ``utime`` and ``stime`` in
``/proc/<pid>/stat``. The servers take turns, ``ROUNDS`` times, in a rotated order; each
figure is the median of the rounds.

    python -m bench.ack_cpu [--count 30000] [--rounds 5] [--against REF]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from bench.ack_cost import PORT, WARM, AckClient
from bench.request_cost import server_process
from bench.run import (
    HUB_ENV,
    ROOT,
    WORK,
    checkout,
    hub_database,
    machine,
    median_result,
    prepare_kit,
    process_cpu_times,
    publish,
    ratio_table,
)

MARKER = "<!-- bench/ack_cpu.py results -->"


def measure(command: list[str], cwd: Path, env: dict, token: str, count: int) -> dict:
    """µs of user and system CPU per ack round trip of the server ``command`` starts."""
    with server_process(command, cwd, env, PORT) as pid:
        os.sched_setaffinity(pid, {0})
        client = AckClient(PORT, token)
        client.acks(WARM)
        user_before, system_before = process_cpu_times(pid)
        client.acks(count)
        user_after, system_after = process_cpu_times(pid)
        client.close()
    user = (user_after - user_before) / count * 1e6
    system = (system_after - system_before) / count * 1e6
    return {"user": round(user, 1), "system": round(system, 1), "all": round(user + system, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--against", default="")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    os.sched_setaffinity(0, {1})
    kit = prepare_kit()
    url, tokens_file = hub_database("sqlite", "tokens-ack-cpu")
    token = json.loads(tokens_file.read_text())["users"][0]["token"]
    hub_env = {**HUB_ENV, "DATABASE_URL": url}
    servers = {"hub": ([sys.executable, "app.py"], ROOT, hub_env)}
    if args.against:
        servers[f"hub@{args.against}"] = ([sys.executable, "app.py"], checkout(args.against),
                                          hub_env)
    servers["node"] = (["node", "server.js"], kit / "node-peer", {})
    rounds: dict[str, list[dict]] = {name: [] for name in servers}
    names = list(servers)
    for round_number in range(args.rounds):
        for name in names[round_number % len(names):] + names[:round_number % len(names)]:
            figures = measure(*servers[name], token, args.count)
            rounds[name].append(figures)
            print(f"round {round_number + 1} {name}: {figures}", flush=True)
    results = {name: median_result(runs) for name, runs in rounds.items()}
    per_round = "; ".join(f"{name} {' / '.join(str(run['user']) for run in runs)}"
                          for name, runs in rounds.items())
    command = "make bench-ack-cpu" + (f" AGAINST={args.against}" if args.against else "")
    publish(MARKER, "CPU time per ack round trip, user and system", [
        f"Machine: {machine()}. Command: `{command}` ({args.count} `get_rooms` acks timed on "
        f"one connection after {WARM} untimed, each server pinned to CPU 0 and the client to "
        f"CPU 1; medians of {args.rounds} rounds, the servers in turn; the hub on SQLite with "
        "production settings).", "",
        *ratio_table(results, "node", [
            ("user", "user CPU per ack (µs)", lambda figures: figures["user"]),
            ("system", "system CPU per ack (µs)", lambda figures: figures["system"]),
            ("all", "CPU per ack (µs)", lambda figures: figures["all"]),
        ]), "",
        f"User µs per ack, by round: {per_round}.", "",
    ])


if __name__ == "__main__":
    main()
