"""Sending through Twilio: recipients per second end to end, and the hub's CPU per recipient.

One message to ``--recipients`` numbers through the fake Twilio
(``tests/fakes/twilio_api.py``, a process of its own), ``--in-flight`` requests at
once (``TWILIO_MAX_IN_FLIGHT`` and ``DISPATCH_CONCURRENCY``), no pace
(``SMS_MAX_PER_SECOND`` far above what is reached). The fake answers each
request with its ``201`` and posts the signed ``sent`` and ``delivered``
callbacks, which the hub checks and applies. Measured: until every recipient
is ``SENT``, until every one is ``DELIVERED``, and the hub process's CPU time
(user + system, from ``/proc``) over the whole run divided by the recipients.
The fake, this script and the hub share the machine.

    python -m bench.twilio [--recipients 2000] [--in-flight 50] [--runs 3]
                           [--backends sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime

from bench.pipeline import summarise
from bench.run import (
    POSTGRES_URL,
    WORK,
    fresh_postgres,
    machine,
    process_cpu_seconds,
    write_section,
)
from tests.fakes.twilio_api import FakeTwilio
from tests.support import LiveServer, migrate_database, register_user, seed_admin

MARKER = "<!-- bench/twilio.py results -->"
PUBLIC = "https://hub.example.com"


def measure(url: str, recipients: int, in_flight: int) -> dict:
    migrate_database(url)
    seed_admin(url)
    fake = FakeTwilio.start_process(WORK / f"fake-twilio-{time.time_ns()}.jsonl")
    server = LiveServer(url, name="bench-twilio", env={
        "SMS_PROVIDER": "twilio", "TWILIO_ACCOUNT_SID": fake.account_sid,
        "TWILIO_AUTH_TOKEN": fake.auth_token, "TWILIO_FROM": "+15017122661",
        "TWILIO_API_BASE": fake.api_base, "PUBLIC_BASE_URL": PUBLIC,
        "TWILIO_MAX_IN_FLIGHT": str(in_flight), "DISPATCH_CONCURRENCY": str(in_flight),
        "DISPATCH_BATCH_SIZE": "500", "SMS_MAX_PER_SECOND": "1000000", "LOG_LEVEL": "WARNING"})
    try:
        server.start()
        fake.route(PUBLIC, server.url)
        user = register_user(server)
        phones = [f"+1555{index:07d}" for index in range(recipients)]
        cpu_before = process_cpu_seconds(server.process.pid)
        started = time.perf_counter()
        answer = server.api.post("/api/messages", user.token,
                                 json={"body": "benchmark", "recipients": phones})
        assert answer.status_code == 202, answer.text
        message_id = answer.json()["id"]
        marks: dict[str, float] = {}
        deadline = started + 600
        while "delivered" not in marks and time.perf_counter() < deadline:
            message = server.api.get(f"/api/messages/{message_id}", user.token).json()
            if message["status"] != "SENDING":
                marks.setdefault("sent", time.perf_counter())
            if message["deliveredCount"] == recipients:
                marks["delivered"] = time.perf_counter()
            time.sleep(0.1)
        cpu = process_cpu_seconds(server.process.pid) - cpu_before
        accepted = len(fake.submissions(accepted=True))
        return {
            "sent_s": round(marks["sent"] - started, 2),
            "sent_per_s": round(recipients / (marks["sent"] - started)),
            "delivered_s": round(marks["delivered"] - started, 2),
            "delivered_per_s": round(recipients / (marks["delivered"] - started)),
            "cpu_ms_per_recipient": round(cpu * 1000 / recipients, 2),
            "submitted": accepted,
        }
    finally:
        server.stop()
        fake.stop()


def measure_once(backend: str, recipients: int, in_flight: int) -> dict | None:
    """One run on a fresh database; a PostgreSQL one is dropped afterwards."""
    WORK.mkdir(parents=True, exist_ok=True)
    if backend == "sqlite":
        return measure(f"sqlite:///{tempfile.mkdtemp(dir=WORK)}/hub.db", recipients, in_flight)
    url = fresh_postgres()
    if url is None:
        return None
    try:
        return measure(url, recipients, in_flight)
    finally:
        import psycopg

        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    rows = {}
    for backend in args.backends.split(","):
        runs = []
        for _ in range(args.runs):
            run = measure_once(backend, args.recipients, args.in_flight)
            if run is None:
                break
            print(backend, run, file=sys.stderr)
            runs.append(run)
        if runs:
            rows[backend] = summarise(runs)
    labels = [("all recipients accepted by Twilio (s)", "sent_s"),
              ("recipients sent per second", "sent_per_s"),
              ("all delivered by signed callbacks (s)", "delivered_s"),
              ("recipients delivered per second", "delivered_per_s"),
              ("hub CPU per recipient (ms)", "cpu_ms_per_recipient"),
              ("submissions the fake logged", "submitted")]
    lines = [MARKER, f"## Sending through Twilio ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)", "",
             f"Machine: {machine()}. One message to {args.recipients:,} recipients through "
             f"the fake Twilio (its own process), {args.in_flight} requests in flight, no "
             "pace; every send answered `201`, then a signed `sent` and `delivered` callback "
             "each. Hub CPU: user + system time of the hub process over the run. Median of "
             f"{args.runs} runs, lowest and highest in brackets.",
             f"Command: `python -m bench.twilio --recipients {args.recipients} "
             f"--in-flight {args.in_flight} --runs {args.runs}`.", "",
             "| figure | " + " | ".join(rows) + " |", "| --- |" + " --- |" * len(rows)]
    lines += [f"| {label} | " + " | ".join(str(rows[b][key]) for b in rows) + " |"
              for label, key in labels]
    lines.append(MARKER)
    write_section(MARKER, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
