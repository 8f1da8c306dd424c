"""Instructions per REST request, counted by callgrind: per-request costs without the noise.

CPU time per request moves by a quarter from run to run on these shared
machines, so a change worth a tenth of a request cannot be seen in it.
Instructions executed can: valgrind's callgrind counts them the same run
after run. Each hub (SQLite, production settings) runs under callgrind with
counting off while it starts; each route gets WARM requests first (caches,
first-use paths), then counting is on for COUNT requests, one after the
other on one keep-alive connection, and the dump's total over COUNT is the
figure. The routes: ``GET /healthz`` (nothing but the HTTP and Flask stack),
``GET /api/socket/user/<id>/online`` (a bearer token checked, an answer from
memory) and ``POST /api/socket/notify/<id>`` to a user with no socket (a
stored row and an empty emit). ``--against REF`` counts another commit's hub
in the same run.

    python -m bench.request_cost [--count 300] [--against REF]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

from bench.run import (
    HUB_ENV,
    SECRET,
    WORK,
    checkout,
    hub_database,
    machine,
    publish,
    ratio_table,
)
from bench.soak import wait_for_port

ROOT = Path(__file__).resolve().parent.parent
PORT = 7161
WARM = 100
MARKER = "<!-- bench/request_cost.py results -->"


def routes(tokens: dict) -> list[tuple[str, str, str, dict | None, str | None]]:
    """(label, method, path, body, token) of each route counted."""
    user = tokens["users"][0]["id"]
    return [
        ("GET /healthz", "GET", "/healthz", None, None),
        ("GET /api/socket/user/<id>/online", "GET", f"/api/socket/user/{user}/online", None,
         tokens["admin"]),
        ("POST /api/socket/notify/<id>", "POST", f"/api/socket/notify/{user}",
         {"title": "t", "message": "m", "type": "system"}, tokens["admin"]),
    ]


def send(connection: http.client.HTTPConnection, method: str, path: str, body: dict | None,
         token: str | None, count: int) -> None:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    for _ in range(count):
        connection.request(method, path, body=json.dumps(body) if body is not None else None,
                           headers=headers)
        response = connection.getresponse()
        response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path} answered {response.status}")


def callgrind_control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True)


def instructions(dump: Path) -> int:
    for line in dump.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {dump}")


@contextlib.contextmanager
def callgrind_server(command: list[str], cwd: Path, env: dict, dump: Path,
                     port: int) -> Iterator[int]:
    """The server ``command`` starts, under callgrind with counting off, listening on
    ``port``: its pid. Its dumps are ``dump.1``, ``dump.2``... (old ones removed first)."""
    for old in dump.parent.glob(f"{dump.name}*"):
        old.unlink()
    with server_process(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                         f"--callgrind-out-file={dump}", *command], cwd, env, port) as pid:
        yield pid


@contextlib.contextmanager
def server_process(command: list[str], cwd: Path, env: dict, port: int) -> Iterator[int]:
    """The server ``command`` starts, once it listens on ``port``: its pid."""
    server = subprocess.Popen(
        command, cwd=cwd, env={**os.environ, **env, "PORT": str(port), "JWT_SECRET_KEY": SECRET},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, timeout=300)
        yield server.pid
    finally:
        server.terminate()
        server.wait(timeout=120)


def count_while(pid: int, work: Callable[[], object]) -> None:
    """Count only what the server executes while ``work`` runs, into its next dump."""
    callgrind_control("-z", str(pid))
    callgrind_control("-i", "on", str(pid))
    work()
    callgrind_control("-i", "off", str(pid))
    callgrind_control("-d", str(pid))


def count_hub(source: Path, url: str, tokens: dict, count: int) -> dict[str, int]:
    """Instructions per request of each route, for the hub of ``source``."""
    output = WORK / "callgrind"
    output.mkdir(exist_ok=True)
    figures = {}
    with callgrind_server([sys.executable, "app.py"], source, {**HUB_ENV, "DATABASE_URL": url},
                          output / "hub.out", PORT) as pid:
        connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=120)
        for dump_number, (label, method, path, body, token) in enumerate(routes(tokens), 1):
            send(connection, method, path, body, token, WARM)
            count_while(pid, partial(send, connection, method, path, body, token, count))
            figures[label] = instructions(output / f"hub.out.{dump_number}") // count
        connection.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--against", default="")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    url, tokens_file = hub_database("sqlite", "tokens-callgrind")
    tokens = json.loads(tokens_file.read_text())
    sources = {"hub": ROOT, **({f"hub@{args.against}": checkout(args.against)}
                               if args.against else {})}
    results = {name: count_hub(source, url, tokens, args.count)
               for name, source in sources.items()}
    routes_counted = [(label, label, lambda counts, label=label: counts[label])
                      for label in results["hub"]]
    command = "make bench-requests" + (f" AGAINST={args.against}" if args.against else "")
    publish(MARKER, "Instructions per REST request", [
        f"Machine: {machine()}. Command: `{command}` ({args.count} requests a route, after "
        f"{WARM} uncounted; SQLite, production settings, one keep-alive connection).", "",
        *ratio_table(results, list(results)[-1], routes_counted), "",
    ])


if __name__ == "__main__":
    main()
