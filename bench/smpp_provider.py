"""Submits per second through the SMPP provider alone, against the fake SMSC on loopback.

The provider's own ceiling, beneath the dispatcher and the database: as many
greenlets as the window allows call ``submit`` (one single-part SMS each, a
receipt asked) until ``--count`` are accepted; the fake SMSC (Node) answers and
sends the receipts, which the provider reads on the same bind. Prints one JSON
line per window: wall rate, this process's CPU per submit (its receipt
included), the fake's, and the machine's load average (on a shared machine the
wall rate follows the load; the CPU figures do not).

    python -m bench.smpp_provider [--count 10000] [--windows 10,50] [--binds 1]
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402

from bench.run import process_cpu_seconds  # noqa: E402
from services.messaging.providers.base import Outcome, OutgoingSms  # noqa: E402
from services.messaging.providers.smpp import SmppProvider  # noqa: E402
from tests.fakes.smsc import FakeSmsc, install_smsc_packages  # noqa: E402


def run(fake: FakeSmsc, *, window: int, binds: int, count: int) -> dict:
    receipts: list = []
    provider = SmppProvider(host=fake.host, port=fake.port, system_id=fake.system_id,
                            password=fake.password, source_addr="+15017122661",
                            window=window, binds=binds)
    provider.start(receipts.append, lambda inbound: None)
    gevent.wait([bind.bound for bind in provider.binds], timeout=10)
    numbers = itertools.count()
    outcomes: list[Outcome] = []

    def work() -> None:
        for number in numbers:
            if number >= count:
                return
            sms = OutgoingSms(number, f"+1555{number:07d}", "The hub's benchmark text")
            outcomes.append(provider.submit(sms).outcome)

    fake_cpu = process_cpu_seconds(fake.process.pid)
    cpu, started = time.process_time(), time.perf_counter()
    gevent.joinall([gevent.spawn(work) for _ in range(provider.max_in_flight)])
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    fake_cpu = process_cpu_seconds(fake.process.pid) - fake_cpu
    gevent.sleep(1.0)
    provider.stop()
    return {"window": window, "binds": binds, "submits": count,
            "accepted": outcomes.count(Outcome.ACCEPTED), "seconds": round(wall, 2),
            "per_second": round(count / wall), "cpu_ms_per_submit": round(cpu / count * 1e3, 3),
            "fake_cpu_ms_per_submit": round(fake_cpu / count * 1e3, 3),
            "receipts_read": len(receipts), "load_average": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--windows", default="10,50")
    parser.add_argument("--binds", type=int, default=1)
    args = parser.parse_args()
    install_smsc_packages()
    for window in (int(w) for w in args.windows.split(",")):
        with tempfile.TemporaryDirectory() as directory:
            fake = FakeSmsc.start(Path(directory) / "smsc.jsonl")
            try:
                print(json.dumps(run(fake, window=window, binds=args.binds, count=args.count)),
                      flush=True)
            finally:
                fake.stop()


if __name__ == "__main__":
    main()
