"""Recipients per second end to end through the fake SMSC: a live hub, ``SMS_PROVIDER=smpp``.

One message of ``--recipients`` single-part SMS, posted to a hub on a fresh
SQLite database whose provider binds to the fake SMSC (the ``smpp`` npm package's
server, on loopback), with no pace (``SMS_MAX_PER_SECOND`` far above what is
reached). Measured per window: until the message is ``SENT`` (every
recipient submitted and recorded), until every receipt is in (``DELIVERED``),
the hub's CPU per recipient and the fake's, and the load average (on a
shared machine the wall rates follow the load; the CPU figures do not).

    python -m bench.smpp_pipeline [--recipients 5000] [--windows 10,50]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from bench.run import WORK
from bench.smpp_provider import process_cpu_seconds
from tests.fakes.smsc import FakeSmsc, install_smsc_packages
from tests.support import LiveServer, migrate_database, register_user, seed_admin


def measure(url: str, fake: FakeSmsc, *, window: int, recipients: int) -> dict:
    migrate_database(url)
    seed_admin(url)
    server = LiveServer(url, name="smpp-pipeline", env={
        "SMS_PROVIDER": "smpp", "SMPP_HOST": fake.host, "SMPP_PORT": str(fake.port),
        "SMPP_SYSTEM_ID": fake.system_id, "SMPP_PASSWORD": fake.password,
        "SMPP_SOURCE_ADDR": "+15017122661", "SMPP_WINDOW": str(window),
        "SMS_MAX_PER_SECOND": "1000000", "LOG_LEVEL": "WARNING",
        "DISPATCH_BATCH_SIZE": "500", "DISPATCH_CONCURRENCY": "100"})
    server.start()
    try:
        user = register_user(server)
        phones = [f"+1555{i:07d}" for i in range(recipients)]
        hub_cpu = process_cpu_seconds(server.process.pid)
        fake_cpu = process_cpu_seconds(fake.process.pid)
        started = time.perf_counter()
        response = server.api.post("/api/messages", user.token,
                                   json={"body": "benchmark", "recipients": phones})
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
                "fake_cpu_ms_per_recipient": round(fake_cpu / recipients * 1e3, 3),
                "submits_logged": len(fake.submissions()),
                "load_average": round(os.getloadavg()[0], 1)}
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=5_000)
    parser.add_argument("--windows", default="10,50")
    args = parser.parse_args()
    install_smsc_packages()
    WORK.mkdir(parents=True, exist_ok=True)
    for window in (int(w) for w in args.windows.split(",")):
        with tempfile.TemporaryDirectory(dir=WORK) as directory:
            fake = FakeSmsc.start(Path(directory) / "smsc.jsonl")
            try:
                result = measure(f"sqlite:///{directory}/hub.db", fake, window=window,
                                 recipients=args.recipients)
            finally:
                fake.stop()
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
