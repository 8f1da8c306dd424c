"""How long one user's one-recipient message waits while another user's 30,000 are sending.

User A posts three messages of 10,000 recipients (the most one message may
have). Once A's first recipients are going out, user B posts a message of
one recipient, waits until it is ``SENT``, and does it again, ``--trials``
times while A's recipients are still queued. The figure is B's wait, from
its ``202`` to its message's ``SENT``. The hub (its production settings, the
simulated provider, PostgreSQL) runs on CPU 0, the clients on CPU 1.

Each checkout in ``--roots`` (or commit in ``--against``, from ``git
archive``) serves in turn on a database migrated by this checkout, so the
claim before and after fair sharing are measured in one run.

    python -m bench.fair_sharing [--trials 5] [--against REF] [--roots .,../other] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import requests

from bench.run import (
    HUB_ENV,
    SECRET,
    checkout,
    fresh_postgres,
    machine,
    prepare_hub_database,
    short_commit,
    write_section,
)
from bench.soak import wait_for_port

MARKER = "<!-- bench/fair_sharing.py results -->"
PORT = 7143
LARGE_MESSAGES = 3
RECIPIENTS = 10_000
SETTINGS = {"DAILY_RECIPIENT_QUOTA": "10000000", "MESSAGES_RATE_LIMIT": "100000/minute"}


def _wait_status(base: str, headers: dict, message_id: str, wanted: str,
                 timeout: float = 300.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = requests.get(f"{base}/api/messages/{message_id}", headers=headers,
                               timeout=30).json()
        if message["status"] == wanted:
            return message
        time.sleep(0.02)
    raise RuntimeError(f"message {message_id} never became {wanted}")


def measure(root: Path, trials: int, commit: str) -> dict:
    url = fresh_postgres()
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
        large = {"Authorization": f"Bearer {tokens['users'][0]['token']}"}
        small = {"Authorization": f"Bearer {tokens['users'][1]['token']}"}
        large_ids = []
        for post in range(LARGE_MESSAGES):
            numbers = [f"+1201555{(post * RECIPIENTS + i) % 10_000:04d}" if post == 0 else
                       f"+336{post * RECIPIENTS + i:08d}" for i in range(RECIPIENTS)]
            answer = requests.post(f"{base}/api/messages", headers=large, timeout=120,
                                   json={"body": "large", "recipients": numbers})
            answer.raise_for_status()
            large_ids.append(answer.json()["id"])
        waits, queued_behind = [], []
        for trial in range(trials):
            first = requests.get(f"{base}/api/messages/{large_ids[0]}", headers=large,
                                 timeout=30).json()
            backlog = sum(requests.get(f"{base}/api/messages/{message_id}", headers=large,
                                       timeout=30).json()["statusCounts"].get("PENDING", 0)
                          for message_id in large_ids)
            started = time.perf_counter()
            answer = requests.post(f"{base}/api/messages", headers=small, timeout=60,
                                   json={"body": "small", "recipients": [
                                       f"+4915100{trial:06d}"]})
            answer.raise_for_status()
            _wait_status(base, small, answer.json()["id"], "SENT")
            waits.append(time.perf_counter() - started)
            queued_behind.append(backlog)
            print(f"{commit}: trial {trial}: {waits[-1]:.2f} s with {backlog} of A's "
                  f"recipients queued (A's first message {first['status']})", file=sys.stderr)
        return {"root": str(root), "commit": commit, "waits": waits,
                "queuedBehind": queued_behind}
    finally:
        server.terminate()
        server.wait(timeout=20)


def report(runs: list[dict], trials: int, command: str) -> str:
    lines = [
        MARKER,
        f"## Fair sharing: one recipient beside 30,000 ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"Machine: {machine()}. Hub with its production settings (simulated provider, "
        "PostgreSQL) on CPU 0, clients on CPU 1. User A posts "
        f"{LARGE_MESSAGES} messages of {RECIPIENTS:,} recipients; then, {trials} times one "
        "after the other while A's recipients are queued, user B posts a one-recipient "
        "message and waits for it to be `SENT`. B's wait is from its `202` to `SENT`.",
        f"Command: `{command}`.", "",
        "| commit | B's wait, median s | B's waits, s | A's recipients queued at each post |",
        "| --- | --- | --- | --- |"]
    for run in runs:
        lines.append(f"| {run['commit']} | {statistics.median(run['waits']):.2f} | "
                     + ", ".join(f"{wait:.2f}" for wait in run["waits"]) + " | "
                     + ", ".join(f"{n:,}" for n in run["queuedBehind"]) + " |")
    lines.append(MARKER)
    return "\n".join(lines)



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--roots", default=".")
    parser.add_argument("--against", default=None, help="a commit measured before this tree")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    roots = [Path(root).resolve() for root in args.roots.split(",")]
    commits = [short_commit(root, "HEAD") for root in roots]
    if args.against:
        roots.insert(0, checkout(args.against))
        commits.insert(0, short_commit(Path.cwd(), args.against))
    runs = [measure(root, args.trials, commit) for root, commit in zip(roots, commits,
                                                                      strict=True)]
    section = report(runs, args.trials, "python -m bench.fair_sharing " + " ".join(sys.argv[1:]))
    print(section)
    if not args.no_write:
        write_section(MARKER, section)


if __name__ == "__main__":
    main()
