"""What a start costs: a hub process from its command to its first answer.

Every node, every restart and every server the test suite starts pays it, and
most of it is imports. Each hub (this tree, and ``--against REF``'s files from
``git archive``, with this checkout's environment) is measured in turn, RUNS
times, and each figure is the median:

- building the app: ``create_app()`` in a fresh interpreter, the CPU time
  (user + system) of that process from ``getrusage``;
- serving: ``python app.py`` (SQLite, production settings) until ``GET
  /healthz`` answers 200, the wall time and the process's CPU time by then
  (``/proc/PID/stat``, in clock ticks of 10 ms).

    python -m bench.startup [--runs 15] [--against REF]
"""

from __future__ import annotations

import argparse
import http.client
import os
import resource
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
    process_cpu_seconds,
    publish,
    ratio_table,
)

PORT = 7171
MARKER = "<!-- bench/startup.py results -->"


def build_cpu_ms(source: Path, env: dict) -> float:
    """CPU time of a fresh interpreter that builds the app and exits."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", "from app import create_app; create_app()"],
                   cwd=source, env=env, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) * 1000


def serve_until_ready(source: Path, env: dict) -> tuple[float, float]:
    """(wall ms, CPU ms) from ``python app.py`` to its first ``/healthz`` 200."""
    started = time.perf_counter()
    hub = subprocess.Popen([sys.executable, "app.py"], cwd=source, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if hub.poll() is not None:
                raise RuntimeError(f"the hub of {source} exited with {hub.returncode}")
            connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=5)
            try:
                connection.request("GET", "/healthz")
                if connection.getresponse().status == 200:
                    break
            except OSError:
                pass
            finally:
                connection.close()
            time.sleep(0.005)
        wall = (time.perf_counter() - started) * 1000
        cpu = process_cpu_seconds(hub.pid) * 1000
    finally:
        hub.terminate()
        hub.wait(timeout=60)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--against", default="")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    url, _tokens = hub_database("sqlite", "tokens-startup")
    env = {**os.environ, **HUB_ENV, "DATABASE_URL": url, "PORT": str(PORT),
           "JWT_SECRET_KEY": SECRET}
    sources = {"hub": ROOT, **({f"hub@{args.against}": checkout(args.against)}
                               if args.against else {})}
    samples: dict[str, dict[str, list[float]]] = {
        name: {"build": [], "wall": [], "cpu": []} for name in sources}
    for _ in range(args.runs):
        for name, source in sources.items():
            samples[name]["build"].append(build_cpu_ms(source, env))
            wall, cpu = serve_until_ready(source, env)
            samples[name]["wall"].append(wall)
            samples[name]["cpu"].append(cpu)
    results = {name: {figure: round(statistics.median(values))
                      for figure, values in figures.items()}
               for name, figures in samples.items()}
    figures = [
        ("build", "building the app, CPU (ms)", lambda r: r["build"]),
        ("wall", "app.py to its first /healthz answer, wall (ms)", lambda r: r["wall"]),
        ("cpu", "app.py to its first /healthz answer, CPU (ms)", lambda r: r["cpu"]),
    ]
    command = f"make bench-startup RUNS={args.runs}" + (
        f" AGAINST={args.against}" if args.against else "")
    publish(MARKER, "What a start costs", [
        f"Machine: {machine()}. Command: `{command}` (medians of {args.runs} runs, the hubs "
        f"in turn; SQLite, production settings).", "",
        *ratio_table(results, list(results)[-1], figures), "",
    ])


if __name__ == "__main__":
    main()
