"""Recipients per second end to end through the fake SMSC: a live hub, ``SMS_PROVIDER=smpp``.

One message of ``--recipients`` single-part SMS, posted to a hub on a fresh
SQLite database whose provider binds to the fake SMSC (the ``smpp`` npm package's
server, on loopback), with no pace (``SMS_MAX_PER_SECOND`` far above what is
reached). Measured per window: until the message is ``SENT`` (every
recipient submitted and recorded), until every receipt is in (``DELIVERED``),
the hub's CPU per recipient (all of it, and the share spent in the POST that
creates the message, mostly parsing the numbers) and the fake's, and the load
average (on a shared machine the wall rates follow the load; the CPU figures
do not).

Each checkout in ``--roots`` (and the commit ``--against``, from ``git archive``)
serves in turn (its own ``app.py``, on a database migrated by this checkout),
``--runs`` times each, interleaved, so that a tree before and after a change
meet the same load. With ``--profile DIR`` each hub is sampled by py-spy
(``--gil``: only while it holds the GIL) into raw stacks,
``DIR/<commit>-w<window>-<run>.txt``; a sampled hub runs slower.

    python -m bench.smpp_pipeline [--recipients 5000] [--windows 10,50] [--runs 1]
                                  [--against REF] [--roots .,../other] [--profile DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.run import ROOT, WORK, checkout, machine, process_cpu_seconds, short_commit
from tests.fakes.smsc import FakeSmsc, install_smsc_packages
from tests.support import LiveServer, migrate_database, register_user, seed_admin


def measure(url: str, fake: FakeSmsc, *, window: int, recipients: int, root: Path = ROOT,
            profile: Path | None = None) -> dict:
    migrate_database(url)
    seed_admin(url)
    server = LiveServer(url, name="smpp-pipeline", env={
        "SMS_PROVIDER": "smpp", "SMPP_HOST": fake.host, "SMPP_PORT": str(fake.port),
        "SMPP_SYSTEM_ID": fake.system_id, "SMPP_PASSWORD": fake.password,
        "SMPP_SOURCE_ADDR": "+15017122661", "SMPP_WINDOW": str(window),
        "SMS_MAX_PER_SECOND": "1000000", "LOG_LEVEL": "WARNING",
        "DISPATCH_BATCH_SIZE": "500", "DISPATCH_CONCURRENCY": "100"},
        command=[sys.executable, str(root / "app.py")])
    server.start()
    sampler = None
    if profile is not None:
        sampler = subprocess.Popen(
            [str(Path(sys.executable).parent / "py-spy"), "record", "--gil", "--rate", "200",
             "--format", "raw", "--output", str(profile), "--pid", str(server.process.pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        user = register_user(server)
        phones = [f"+1555{i:07d}" for i in range(recipients)]
        hub_cpu = process_cpu_seconds(server.process.pid)
        fake_cpu = process_cpu_seconds(fake.process.pid)
        started = time.perf_counter()
        response = server.api.post("/api/messages", user.token,
                                   json={"body": "benchmark", "recipients": phones})
        post_cpu = process_cpu_seconds(server.process.pid) - hub_cpu
        assert response.status_code == 202, response.text
        message_id = response.json()["id"]
        marks: dict[str, float] = {}
        while "delivered" not in marks and time.perf_counter() - started < 600:
            message = server.api.get(f"/api/messages/{message_id}", user.token).json()
            if message["status"] != "SENDING":
                marks.setdefault("sent", time.perf_counter())
            if message["deliveredCount"] == recipients:
                marks["delivered"] = time.perf_counter()
            time.sleep(0.1)
        hub_cpu = process_cpu_seconds(server.process.pid) - hub_cpu
        fake_cpu = process_cpu_seconds(fake.process.pid) - fake_cpu
        return {"window": window, "recipients": recipients,
                "sent_per_s": round(recipients / (marks["sent"] - started)),
                "delivered_per_s": round(recipients / (marks["delivered"] - started)),
                "hub_cpu_ms_per_recipient": round(hub_cpu / recipients * 1e3, 3),
                "post_cpu_ms_per_recipient": round(post_cpu / recipients * 1e3, 3),
                "fake_cpu_ms_per_recipient": round(fake_cpu / recipients * 1e3, 3),
                "submits_logged": len(fake.submissions()),
                "load_average": round(os.getloadavg()[0], 1)}
    finally:
        if sampler is not None:
            sampler.send_signal(signal.SIGINT)
            sampler.wait()
        server.stop()



def _figure(values: list[float]) -> str:
    """The median, with the lowest and highest when they differ."""
    median = statistics.median_low(values)
    return f"{median} ({min(values)}–{max(values)})" if min(values) != max(values) else \
        str(median)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=5_000)
    parser.add_argument("--windows", default="10,50")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--roots", default=".", help="checkouts to serve, comma-separated")
    parser.add_argument("--against", default=None, help="a commit measured before the roots")
    parser.add_argument("--profile", type=Path, help="directory for py-spy's raw stacks")
    args = parser.parse_args()
    install_smsc_packages()
    WORK.mkdir(parents=True, exist_ok=True)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    roots = [Path(root).resolve() for root in args.roots.split(",")]
    labels = {root: short_commit(root) for root in roots}
    if args.against:
        roots.insert(0, checkout(args.against))
        labels[roots[0]] = short_commit(ROOT, args.against)
    results: dict[tuple[str, int], list[dict]] = {}
    for window in (int(w) for w in args.windows.split(",")):
        for number in range(1, args.runs + 1):
            for root in roots:
                with tempfile.TemporaryDirectory(dir=WORK) as directory:
                    fake = FakeSmsc.start(Path(directory) / "smsc.jsonl")
                    profile = (args.profile / f"{labels[root]}-w{window}-{number}.txt"
                               if args.profile else None)
                    try:
                        result = measure(f"sqlite:///{directory}/hub.db", fake, window=window,
                                         recipients=args.recipients, root=root,
                                         profile=profile)
                    finally:
                        fake.stop()
                result["commit"] = labels[root]
                print(json.dumps(result), flush=True)
                results.setdefault((labels[root], window), []).append(result)
    print(f"\nMachine: {machine()}.\nCommand: `python -m bench.smpp_pipeline "
          + " ".join(sys.argv[1:]) + "`.\n")
    print("| commit | window | sent/s | delivered/s | hub CPU per recipient (ms) "
          "| of which the POST (ms) | fake SMSC CPU (ms) | load average |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for (commit, window), runs in results.items():
        print(f"| {commit} | {window} | "
              + " | ".join(_figure([run[key] for run in runs]) for key in (
                  "sent_per_s", "delivered_per_s", "hub_cpu_ms_per_recipient",
                  "post_cpu_ms_per_recipient", "fake_cpu_ms_per_recipient",
                  "load_average")) + " |")


if __name__ == "__main__":
    main()
