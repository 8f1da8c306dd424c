"""Live analytics under load: what 1,000 subscribers cost the server, in one run.

Starts the hub with its production settings (SQLite, then PostgreSQL when
reachable) pinned to CPU 0, creates 100 users, and from CPU 1 opens 10
Socket.IO connections per user with the official client (``bench/analytics.js``).
Messages with one recipient each are POSTed at 100/s spread over the users
(simulated provider, no latency, receipts after 0.2 s), in phases: the same
sockets connected but not subscribed (``off``), then all subscribed to analytics
(``on``), alternately. The analytics work is the difference in the server's CPU
(``/proc/<pid>/stat``) between the two kinds of phase; the CPU the scheduler
spends inside its rounds (``hub_analytics_round_cpu_seconds_total``) is
recorded beside it. At the end, the last figures each user's sockets received
are compared with the REST twins and with an independent count in the
database. The table goes to BENCHMARKS.md under "Live analytics".

    python -m bench.analytics [--backends sqlite,postgresql] [--seconds 20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from bench.run import (
    HUB_ENV,
    SECRET,
    WORK,
    fresh_postgres,
    machine,
    prepare_hub_database,
    prepare_kit,
    short_commit,
    write_section,
)
from bench.soak import wait_for_port

ROOT = Path(__file__).resolve().parent.parent

MARKER = "<!-- bench/analytics.py results -->"
TYPES = ("dashboard_stats", "message_stats", "usage_stats")
REST = {"dashboard_stats": "dashboard", "message_stats": "messages", "usage_stats": "usage"}
RECEIPT_DELAY = "0.2"
COMPUTE_CPU = 'hub_analytics_round_cpu_seconds_total{part="compute"}'
EMIT_CPU = 'hub_analytics_round_cpu_seconds_total{part="emit"}'


def run_hub(url: str, port: int, tokens_file: Path, config: dict, backend: str,
            profile: Path | None = None) -> dict:
    server = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, str(ROOT / "app.py")], cwd=ROOT,
        env={**os.environ, **HUB_ENV, "DATABASE_URL": url, "PORT": str(port),
             "JWT_SECRET_KEY": SECRET, "SIMULATED_SMS_LATENCY": "0",
             "SIMULATED_RECEIPT_DELAY": RECEIPT_DELAY},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(port)
        kit = WORK / "kit"
        driver = subprocess.Popen(
            ["taskset", "-c", "1", "node", str(ROOT / "bench" / "analytics.js"),
             f"http://127.0.0.1:{port}", str(tokens_file), str(server.pid), json.dumps(config)],
            cwd=ROOT, env={**os.environ, "NODE_PATH": str(kit / "load" / "node_modules")},
            stderr=subprocess.PIPE, text=True)
        profilers = []
        for line in driver.stderr:
            print(line, end="", file=sys.stderr)
            if profile and line.startswith('{"window"'):
                window = json.loads(line)
                target = profile / f"{backend}-{window['index']}-{window['window']}.txt"
                profilers.append(subprocess.Popen(
                    ["taskset", "-c", "1", str(Path(sys.executable).parent / "py-spy"), "record",
                     "--pid", str(server.pid), "--duration", str(int(window["seconds"])),
                     "--rate", "100", "--nonblocking", "--format", "raw", "-o", str(target)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        if driver.wait(timeout=900) != 0:
            raise RuntimeError(f"the driver failed ({driver.returncode})")
        for profiler in profilers:
            profiler.wait(timeout=60)
        result = json.loads(Path(config["out"]).read_text())
        result["checks"] = check_figures(url, port, tokens_file, result)
        return result
    finally:
        server.terminate()
        try:
            _, errors = server.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            _, errors = server.communicate()
        if errors and errors.strip():
            print(f"hub stderr (last lines):\n{errors[-3000:]}", file=sys.stderr)


def independent_counts(url: str) -> dict[str, dict]:
    """Per user, straight from the rows: what the dashboard figures must say."""
    from sqlalchemy import create_engine, text

    from config import _normalise_database_url

    engine = create_engine(_normalise_database_url(url))
    with engine.connect() as conn:
        messages = {row.user_id: row for row in conn.execute(text(
            "SELECT user_id, COUNT(*) AS total, "
            "SUM(CASE WHEN status = 'SENDING' THEN 1 ELSE 0 END) AS in_flight "
            "FROM messages GROUP BY user_id"))}
        recipients = {row.user_id: row for row in conn.execute(text(
            "SELECT m.user_id, COUNT(*) AS total, "
            "SUM(CASE WHEN r.status IN ('SENT', 'DELIVERED') THEN 1 ELSE 0 END) AS sent, "
            "SUM(CASE WHEN r.status = 'DELIVERED' THEN 1 ELSE 0 END) AS delivered, "
            "SUM(CASE WHEN r.status = 'FAILED' THEN 1 ELSE 0 END) AS failed, "
            "SUM(r.cost) AS cost "
            "FROM recipients r JOIN messages m ON m.id = r.message_id GROUP BY m.user_id"))}
    engine.dispose()
    counts = {}
    for user_id, row in messages.items():
        rec = recipients[user_id]
        counts[str(user_id)] = {
            "messagesTotal": int(row.total), "inFlight": int(row.in_flight),
            "recipientsTotal": int(rec.total), "sent": int(rec.sent),
            "delivered": int(rec.delivered), "failed": int(rec.failed),
            "costTotal": round(float(Decimal(str(rec.cost or 0))), 4),
        }
    return counts


def completed_in(url: str, start: float, seconds: float) -> int:
    """Recipients that reached their final state (delivered, or refused) in the window."""
    from sqlalchemy import create_engine, text

    from config import _normalise_database_url

    begin = datetime.fromtimestamp(start, UTC)
    end = datetime.fromtimestamp(start + seconds, UTC)
    if url.startswith("sqlite"):
        begin, end = (value.replace(tzinfo=None).isoformat(" ") for value in (begin, end))
    engine = create_engine(_normalise_database_url(url))
    with engine.connect() as conn:
        count = conn.execute(text(
            "SELECT COUNT(*) FROM recipients WHERE "
            "(status = 'DELIVERED' AND delivered_at >= :begin AND delivered_at < :end) OR "
            "(status = 'FAILED' AND sent_at >= :begin AND sent_at < :end)"),
            {"begin": begin, "end": end}).scalar()
    engine.dispose()
    return int(count)


def check_figures(url: str, port: int, tokens_file: Path, result: dict) -> dict:
    import requests

    tokens = {user["id"]: user["token"] for user in json.loads(tokens_file.read_text())["users"]}
    independent = independent_counts(url)
    last = result["lastFigures"]
    rest_mismatches, count_mismatches, missing = [], [], 0
    for user_id, token in tokens.items():
        figures = last.get(user_id, {})
        for kind in TYPES:
            if kind not in figures:
                missing += 1
                continue
            rest = requests.get(f"http://127.0.0.1:{port}/api/analytics/{REST[kind]}",
                                headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
            if rest != figures[kind]:
                rest_mismatches.append((user_id, kind))
        expected = independent.get(user_id)
        dashboard = figures.get("dashboard_stats", {})
        if expected is None or any(dashboard.get(key) != value for key, value in expected.items()):
            count_mismatches.append(user_id)
    if count_mismatches:
        first = count_mismatches[0]
        print(f"user {first}: pushed {last.get(first, {}).get('dashboard_stats')} "
              f"counted {independent.get(first)}", file=sys.stderr)
    in_flight = sum(row["inFlight"] for row in independent.values())
    for phase in result["phases"]:
        phase["completedPerSecond"] = round(
            completed_in(url, phase["startedAt"] / 1000, phase["seconds"]) / phase["seconds"], 1)
    return {
        "users": len(tokens), "missingFigures": missing,
        "restMismatches": len(rest_mismatches), "countMismatches": len(count_mismatches),
        "messages": sum(row["messagesTotal"] for row in independent.values()),
        "inFlightAtEnd": in_flight,
    }


def summarise(result: dict) -> dict:
    phases = result["phases"]

    def mean(values):
        values = list(values)
        return sum(values) / len(values) if values else None

    off = [p for p in phases if p["kind"] == "off"]
    on = [p for p in phases if p["kind"] == "on"]
    summary = {
        "cpu_off": mean(p["serverCpuShare"] for p in off),
        "cpu_on": mean(p["serverCpuShare"] for p in on),
        "compute_on": mean(p["metrics"].get(COMPUTE_CPU, 0) / p["seconds"] for p in on),
        "emit_on": mean(p["metrics"].get(EMIT_CPU, 0) / p["seconds"] for p in on),
        "round_cpu_off": mean((p["metrics"].get(COMPUTE_CPU, 0) + p["metrics"].get(EMIT_CPU, 0))
                              / p["seconds"] for p in off),
        "figures_per_s": mean(p["metrics"].get("hub_analytics_figures_computed_total", 0) /
                              p["seconds"] for p in on),
        "completed_off": mean(p["completedPerSecond"] for p in off),
        "completed_on": mean(p["completedPerSecond"] for p in on),
        "updates": {kind: (max(p["updatesPerSubscriberPerSecond"][kind]["mean"] for p in on),
                           max(p["updatesPerSubscriberPerSecond"][kind]["max"] for p in on))
                    for kind in TYPES},
        "min_gap_ms": min(min(p["minGapMs"].values()) for p in on),
        "deliveries_per_s": mean(p["updatesReceived"] / p["seconds"] for p in on),
    }
    summary["analytics_share"] = summary["cpu_on"] - summary["cpu_off"]
    summary["writes_on"] = summary["analytics_share"] - summary["compute_on"] - summary["emit_on"]
    return summary


def pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


def report(results: dict[str, dict], args: argparse.Namespace) -> str:
    names = list(results)
    summaries = {name: summarise(result) for name, result in results.items()}
    rows = [
        ("connections (all subscribe in the `on` phases)",
         lambda r, s: str(r["connections"])),
        ("recipients completed per second, `off` / `on` phases",
         lambda r, s: f"{s['completed_off']} / {s['completed_on']}"),
        ("server CPU, `off` phases (connected, not subscribed)", lambda r, s: pct(s["cpu_off"])),
        ("server CPU, `on` phases (1,000 subscribers)", lambda r, s: pct(s["cpu_on"])),
        ("**analytics work: `on` − `off` (share of one core)**",
         lambda r, s: f"**{pct(s['analytics_share'])}**"),
        ("… of which computing the figures (inside the scheduler's rounds)",
         lambda r, s: pct(s["compute_on"])),
        ("… of which handing the updates to Socket.IO (inside the rounds)",
         lambda r, s: pct(s["emit_on"])),
        ("… of which the rest: the sockets' writers sending them (difference)",
         lambda r, s: pct(s["writes_on"])),
        ("figure sets computed per second, `on` phases", lambda r, s: f"{s['figures_per_s']:.0f}"),
        ("`analytics_update` received per second, all subscribers",
         lambda r, s: f"{s['deliveries_per_s']:.0f}"),
        *[(f"`{kind}` updates per subscriber per second (mean / max)",
           lambda r, s, kind=kind: f"{s['updates'][kind][0]:.2f} / {s['updates'][kind][1]:.2f}")
          for kind in TYPES],
        ("shortest gap between two updates of one type on one socket (ms)",
         lambda r, s: str(s["min_gap_ms"])),
        ("users whose last pushed figures ≠ REST twins (of 100)",
         lambda r, s: str(r["checks"]["restMismatches"])),
        ("users whose last dashboard ≠ independent count of rows (of 100)",
         lambda r, s: str(r["checks"]["countMismatches"])),
        ("sockets of a user that disagree on the last figures",
         lambda r, s: str(r["socketsDisagreeingWithTheirUser"])),
        ("messages in the database at the end (none in flight)",
         lambda r, s: f"{r['checks']['messages']} ({r['checks']['inFlightAtEnd']} in flight)"),
    ]
    commit = short_commit()
    lines = [
        MARKER,
        f"## Live analytics ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit})", "",
        f"Machine: {machine()}. Hub with its production settings (`ANALYTICS_INTERVAL` 1 s) "
        "on CPU 0; the official client and the message driver on CPU 1.",
        f"{args.users} users, {args.per_user} sockets each; {args.rate:g} one-recipient "
        "messages per second spread over the users, 1 in 20 to a refused number, "
        + ("made by `bench/analytics_writer.py` on CPU 1: the rows and `analytics_marks` "
           "the delivery pipeline writes (created, sent on the next 50 ms tick with the "
           "owner's notification, delivered 0.2 s later), as another node of the hub would, "
           "so that the measured core carries the analytics work and not the pipeline "
           "(about 18 ms of CPU per message: 100/s would saturate it alone)"
           if args.driver == "rows" else
           "by `POST /api/messages` to the measured hub (simulated provider, no latency, "
           f"receipts after {RECEIPT_DELAY} s): its own pipeline shares the measured core")
        + f". Phases of "
        f"{args.seconds:g} s (after {args.warmup:g} s of warm-up) in the order "
        f"{', '.join(args.phases.split(','))}: `off` with the sockets connected but not "
        "subscribed, `on` with every socket subscribed to analytics. Server CPU from "
        "`/proc/<pid>/stat` over each window, averaged per kind of phase.",
        "On PostgreSQL the CPU counted inside the rounds also holds other greenlets' work "
        "(they run while a round waits for the database), so only the total is meaningful "
        "there; on SQLite a round never yields.",
        f"Command: `make bench-analytics` (`python -m bench.analytics --seconds {args.seconds:g} "
        f"--phases {args.phases} --driver {args.driver}`).", "",
        "| figure | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for label, pick in rows:
        lines.append(f"| {label} | " + " | ".join(
            pick(results[n], summaries[n]) for n in names) + " |")
    lines += ["", "Per phase (server CPU share of one core; recipients completed per second):", ""]
    for name, result in results.items():
        lines.append(f"- {name}: " + ", ".join(
            f"{p['kind']} {p['serverCpuShare'] * 100:.1f} % ({p['completedPerSecond']}/s)"
            for p in result["phases"]))
    lines.append(MARKER)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", default=os.environ.get("BACKENDS", "sqlite,postgresql"))
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--per-user", type=int, default=10)
    parser.add_argument("--phases", default="off,on,off,on")
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--driver", choices=("rows", "http"), default="rows",
                        help="rows: bench/analytics_writer.py on CPU 1 makes the pipeline's "
                        "rows and marks; http: POST /api/messages to the measured hub, whose "
                        "own pipeline then shares its core")
    parser.add_argument("--no-write", action="store_true", help="print, leave BENCHMARKS.md")
    parser.add_argument("--profile", type=Path, help="py-spy each window into this folder "
                        "(on CPU 1; for finding costs, not for the recorded figures)")
    args = parser.parse_args()
    if args.phases.split(",")[-1] != "on":
        parser.error("the last phase must be 'on': its final figures are checked")
    os.sched_setaffinity(0, {1})
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)
    prepare_kit()
    config = {"perUser": args.per_user, "rate": args.rate, "seconds": args.seconds,
              "warmup": args.warmup, "settle": 3, "drain": 4, "phases": args.phases.split(","),
              "out": str(WORK / "analytics-driver.json")}
    results = {}
    for backend in args.backends.split(","):
        url = (f"sqlite:///{tempfile.mkdtemp(dir=WORK)}/hub.db" if backend == "sqlite"
               else fresh_postgres())
        if url is None:
            continue
        tokens_file = WORK / f"tokens-analytics-{backend}.json"
        tokens_file.write_text(json.dumps(prepare_hub_database(url, args.users)))
        if args.driver == "rows":
            # The driver runs it from ROOT (its cwd), where ``-m`` finds the package.
            config["writer"] = ["taskset", "-c", "1", sys.executable, "-m",
                                "bench.analytics_writer", url, str(tokens_file)]
        else:
            config.pop("writer", None)
        started = time.monotonic()
        results[backend] = run_hub(url, 7121, tokens_file, config, backend, args.profile)
        (WORK / f"analytics-{backend}.json").write_text(json.dumps(
            {k: v for k, v in results[backend].items() if k != "lastFigures"}, indent=2))
        print(f"{backend}: {time.monotonic() - started:.0f} s, "
              f"{json.dumps(summarise(results[backend]))}", file=sys.stderr)
    section = report(results, args)
    if not args.no_write:
        write_section(MARKER, section)
    print(section)


if __name__ == "__main__":
    main()
