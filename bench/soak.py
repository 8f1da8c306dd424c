"""Connection churn soak: the hub and the Node socket.io peer, same load, same run.

For ``SOAK_SECONDS`` (default 300) the official client connects, authenticates,
asks for its rooms and disconnects, half of the time abruptly, from CONC
workers. Server memory is sampled every 10 s; for the hub, its per-connection
structures are read at the end. Figures go to BENCHMARKS.md under
"Connection churn".

    python bench/soak.py [--seconds 300] [--concurrency 20]
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import HUB_ENV, SECRET, WORK, machine, prepare_hub_database, prepare_kit  # noqa: E402

MARKER = "<!-- bench/soak.py results -->"


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_for_port(port: int, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on {port}")


def soak(name: str, command: list[str], env: dict, port: int, tokens_file: Path, seconds: int,
         concurrency: int, kit: Path) -> dict:
    server = subprocess.Popen(["taskset", "-c", "0", *command], cwd=ROOT,
                              env={**os.environ, **env, "PORT": str(port),
                                   "JWT_SECRET_KEY": SECRET},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port)
        driver = subprocess.Popen(
            ["taskset", "-c", "1", "node", str(ROOT / "bench" / "churn.js"),
             f"http://127.0.0.1:{port}", str(tokens_file), str(seconds), str(concurrency)],
            env={**os.environ, "NODE_PATH": str(kit / "load" / "node_modules")},
            stdout=subprocess.PIPE, text=True)
        samples: list[tuple[float, int]] = []
        started = time.monotonic()
        while driver.poll() is None:
            samples.append((time.monotonic() - started, rss_kb(server.pid)))
            time.sleep(10 if seconds >= 60 else 1)
        result = json.loads(driver.stdout.read().strip().splitlines()[-1])
        time.sleep(3)
        # After a minute the population of per-connection timers (Engine.IO's ping
        # greenlets live one ping interval past their socket) has reached its level.
        warmed = [rss for at, rss in samples if at >= min(60, seconds / 2)] or [samples[-1][1]]
        result.update({"rssFirstKb": samples[0][1], "rssWarmKb": warmed[0],
                       "rssPeakAfterWarmKb": max(warmed), "rssEndKb": rss_kb(server.pid),
                       "rssSeries": [rss for _, rss in samples]})
        if name.startswith("hub"):
            import requests

            tokens = json.loads(tokens_file.read_text())
            result["internals"] = requests.get(
                f"http://127.0.0.1:{port}/api/socket/debug/internals",
                headers={"Authorization": f"Bearer {tokens['admin']}"}, timeout=10).json()
        return result
    finally:
        server.terminate()
        server.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("SOAK_SECONDS", 300)))
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    kit = prepare_kit()
    url = f"sqlite:///{tempfile.mkdtemp(dir=WORK)}/hub.db"
    tokens_file = WORK / "tokens-soak.json"
    tokens_file.write_text(json.dumps(prepare_hub_database(url)))
    hub = soak("hub", [sys.executable, "app.py"],
               {**HUB_ENV, "DATABASE_URL": url, "HUB_DEBUG_INTERNALS": "1"}, 7111, tokens_file,
               args.seconds, args.concurrency, kit)
    node = soak("node", ["node", str(kit / "node-peer" / "server.js")], {}, 7112, tokens_file,
                args.seconds, args.concurrency, kit)
    print(json.dumps({"hub": hub, "node": node}, indent=2))
    rows = [
        ("connects + disconnects per second", "churnPerSecond"),
        ("connects", "connects"), ("abrupt disconnects", "abrupt"),
        ("client errors", "errors"), ("RSS at the first sample (KB)", "rssFirstKb"),
        ("RSS after one minute (KB)", "rssWarmKb"),
        ("RSS peak after one minute (KB)", "rssPeakAfterWarmKb"),
        ("RSS at the end (KB)", "rssEndKb"),
    ]
    lines = [MARKER, f"## Connection churn ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)", "",
             f"Machine: {machine()}. Server on CPU 0, the official client on CPU 1, "
             f"{args.concurrency} workers for {args.seconds} s each; every other disconnect "
             "is abrupt (TCP reset).", f"Command: `make soak SOAK_SECONDS={args.seconds}`.", "",
             "| figure | hub (SQLite, auth + SQL state) | Node peer | hub / Node |",
             "| --- | --- | --- | --- |"]
    for label, key in rows:
        ratio = (f"{hub[key] / node[key]:.2f}" if isinstance(hub.get(key), int | float)
                 and node.get(key) else "–")
        lines.append(f"| {label} | {hub.get(key)} | {node.get(key)} | {ratio} |")
    internals = hub.get("internals", {})
    lines += ["", "Hub RSS every 10 s (KB): " + ", ".join(map(str, hub["rssSeries"])),
              "", "Node RSS every 10 s (KB): " + ", ".join(map(str, node["rssSeries"]))]
    lines += ["", "Hub internals after the run (all per-connection structures back to zero "
              "but the admin's read): " + ", ".join(f"{k} {v}" for k, v in internals.items()),
              MARKER]
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if MARKER in text:
        before, _, rest = text.partition(MARKER)
        text = before + "\n".join(lines) + rest.partition(MARKER)[2]
    else:
        text = text.rstrip() + "\n\n" + "\n".join(lines) + "\n"
    path.write_text(text)


if __name__ == "__main__":
    main()
