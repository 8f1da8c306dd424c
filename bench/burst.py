"""Garbage-collection pauses while a loaded hub takes a connect burst.

Issue 23's pause goal: with 10,000 sockets open, 2,000 more connecting at
once must not meet a collection pause over 20 ms. The hub runs under
``bench/gc_pauses.py`` pinned to CPU 0, the official client (``bench/burst.js``)
on CPU 1 opens the base, and once it has settled the burst; a signal marks
the burst's start and end, so its collections are counted apart from the
base's. Then the hub does what its reclaim of frozen cycles does
(``LongLivedCollector.reclaim``, through ``gc_pauses.py``'s SIGUSR2) twice:
with every socket still open (its pause is a loaded node's), and once they
have all closed; the objects the two find are what the node kept frozen over
those connections' lifetimes. Each backend is measured ``--rounds`` times;
the table gives the worst pause of all rounds and the median of the rest.
``--against REF`` measures the hub of another commit too, round for round.

    python -m bench.burst [--base 10000] [--burst 2000] [--backends sqlite,postgresql]
        [--rounds 3] [--against REF]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.run import (
    HUB_ENV,
    ROOT,
    SECRET,
    WORK,
    checkout,
    hub_database,
    machine,
    prepare_kit,
    process_cpu_seconds,
    publish,
)
from bench.soak import wait_for_port

MARKER = "<!-- bench/burst.py results -->"
PORT = 7103
OPENERS = 200
# After the load generator exits, time for the hub to see every socket closed.
CLOSE_SECONDS = 10


def read_phase(load: subprocess.Popen, phase: str) -> dict:
    for line in load.stdout:
        if line.startswith("{"):
            figures = json.loads(line)
            if figures.get("phase") == phase:
                return figures
    raise RuntimeError(f"the load generator ended before its {phase!r} line")


def one_round(kit: Path, source: Path, url: str, tokens_file: Path, base: int,
              burst: int) -> dict:
    """One hub of ``source``, its base opened, then the burst: the burst's figures and
    collections, then its reclaims with every socket open and once they have closed."""
    pauses_file = WORK / "gc-burst.json"
    pauses_file.unlink(missing_ok=True)
    env = {**os.environ, **HUB_ENV, "DATABASE_URL": url, "JWT_SECRET_KEY": SECRET,
           "PORT": str(PORT)}
    hub = subprocess.Popen(["taskset", "-c", "0", sys.executable,
                            str(ROOT / "bench" / "gc_pauses.py"), str(pauses_file),
                            str(source / "app.py")], env=env, cwd=source,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    load = None
    try:
        wait_for_port(PORT)
        load = subprocess.Popen(
            ["taskset", "-c", "1", "node", str(ROOT / "bench" / "burst.js"),
             f"http://127.0.0.1:{PORT}", str(tokens_file), str(base), str(burst), str(OPENERS)],
            env={**os.environ, "NODE_PATH": str(kit / "load" / "node_modules")},
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready = read_phase(load, "ready")
        time.sleep(2)
        cpu_before = process_cpu_seconds(hub.pid)
        hub.send_signal(signal.SIGUSR1)
        load.stdin.write("go\n")
        load.stdin.flush()
        burst_figures = read_phase(load, "burst")
        hub.send_signal(signal.SIGUSR1)
        cpu = process_cpu_seconds(hub.pid) - cpu_before
        time.sleep(2)
        hub.send_signal(signal.SIGUSR2)
        time.sleep(2)
        load.stdin.write("close\n")
        load.stdin.flush()
        load.wait(timeout=120)
        time.sleep(CLOSE_SECONDS)
        hub.send_signal(signal.SIGUSR2)
        time.sleep(2)
    finally:
        if load is not None and load.poll() is None:
            load.kill()
        hub.terminate()
        hub.wait(timeout=60)
    pauses = json.loads(pauses_file.read_text())
    window, (loaded, closed) = pauses["window"], pauses["reclaims"]
    return {
        "base_open": ready["open"], "base_failures": ready["failures"],
        "opened": burst_figures["opened"], "seconds": burst_figures["seconds"],
        "failures": burst_figures["failures"] - ready["failures"],
        "cpu_ms_per_connect": cpu * 1000 / max(1, burst_figures["opened"]),
        "collections": [window[str(generation)]["count"] for generation in range(3)],
        "max_ms": max(figures["max_ms"] for figures in window.values()),
        "max_cpu_ms": max(figures["max_cpu_ms"] for figures in window.values()),
        "over_20ms": sum(figures["over_long_ms"] for figures in window.values()),
        "reclaim_loaded": loaded, "reclaim_closed": closed,
    }


def summary_rows(rounds: dict[str, list[dict]]) -> list[str]:
    names = list(rounds)
    rows = [("sockets open before the burst", lambda runs: min(r["base_open"] for r in runs)),
            ("burst: sockets opened (median)", lambda runs: statistics.median(
                r["opened"] for r in runs)),
            ("burst: seconds (median)", lambda runs: round(statistics.median(
                r["seconds"] for r in runs), 2)),
            ("connect failures (all rounds)", lambda runs: sum(
                r["failures"] + r["base_failures"] for r in runs)),
            ("server CPU per connect in the burst (ms, median)", lambda runs: round(
                statistics.median(r["cpu_ms_per_connect"] for r in runs), 3)),
            ("collections in the burst, generations 0 / 1 / 2 (median)", lambda runs: " / ".join(
                str(statistics.median(r["collections"][g] for r in runs)) for g in range(3))),
            ("longest collection pause in the burst (ms, worst round)", lambda runs: round(
                max(r["max_ms"] for r in runs), 2)),
            ("longest collection pause in the burst, CPU time (ms, worst round)",
             lambda runs: round(max(r["max_cpu_ms"] for r in runs), 2)),
            ("pauses over 20 ms (all rounds)", lambda runs: sum(r["over_20ms"] for r in runs)),
            ("reclaim with every socket open: frozen objects (median)",
             lambda runs: statistics.median(r["reclaim_loaded"]["frozen_objects"]
                                            for r in runs)),
            ("reclaim with every socket open: pause (ms, worst round)",
             lambda runs: max(r["reclaim_loaded"]["ms"] for r in runs)),
            ("cyclic garbage kept frozen over the sockets' lifetimes (objects, median)",
             lambda runs: statistics.median(r["reclaim_loaded"]["collected"]
                                            + r["reclaim_closed"]["collected"] for r in runs))]
    lines = ["| figure | " + " | ".join(names) + " |", "|" + " --- |" * (1 + len(names))]
    for label, pick in rows:
        lines.append(f"| {label} | " + " | ".join(str(pick(rounds[n])) for n in names) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", type=int, default=10000)
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--against", default="",
                        help="a commit whose hub is measured too, in the same rounds")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    WORK.mkdir(parents=True, exist_ok=True)
    kit = prepare_kit()
    sources = {"": ROOT, **({f"@{args.against}": checkout(args.against)} if args.against
                            else {})}
    rounds: dict[str, list[dict]] = {}
    for backend in args.backends.split(","):
        database = hub_database(backend, "tokens-burst")
        if database is None:
            continue
        url, tokens_file = database
        for _ in range(args.rounds):
            for suffix, source in sources.items():
                figures = one_round(kit, source, url, tokens_file, args.base, args.burst)
                print(f"hub-{backend}{suffix}: {json.dumps(figures)}", file=sys.stderr)
                rounds.setdefault(f"hub-{backend}{suffix}", []).append(figures)
    command = (f"python -m bench.burst --base {args.base} --burst {args.burst} "
               f"--backends {args.backends} --rounds {args.rounds}"
               + (f" --against {args.against}" if args.against else ""))
    publish(MARKER, "Collection pauses in a connect burst", [
        f"Machine: {machine()}. Hub with its production settings (`bench/run.py`'s) under "
        f"`bench/gc_pauses.py` on CPU 0; the official client on CPU 1 opens "
        f"{args.base:,} sockets, waits 2 s, then opens {args.burst:,} more with "
        f"{OPENERS} openers; the collections between the burst's first connect and its last "
        f"are counted. {args.rounds} rounds per backend, each on a new hub process.",
        f"Command: `make bench-burst` (`{command}`).", "",
        *summary_rows(rounds), "",
    ])


if __name__ == "__main__":
    main()
