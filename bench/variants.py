"""The hub's WebSocket transport and packet JSON against their alternatives, in one run.

The performance issue asks whether gevent-websocket or simple-websocket, and
orjson or the standard ``json``, is faster without losing behaviour. Each
variant of ``bench/hub_variant.py`` is served with the hub's production
settings on a fresh SQLite database and measured by the kit's load generator
(``bench/run.py``'s load, server on CPU 0, load on CPU 1). The figures and
their ratios to the shipped hub go to BENCHMARKS.md; a variant that cannot be
measured is recorded with its error.

    python -m bench.variants [--connections 5000] [--variants hub,hub-json,...]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from bench.run import (
    FIGURES,
    HUB_ENV,
    LOAD_ARGS,
    SECRET,
    WORK,
    CompareFailed,
    compare,
    machine,
    prepare_hub_database,
    prepare_kit,
    ratio_table,
    short_commit,
    write_section,
)

ROOT = Path(__file__).resolve().parent.parent

MARKER = "<!-- bench/variants.py results -->"
BEFORE_HEADING = "## Where the hub's time goes"
PORT = 7121
REFERENCE = "hub"
VARIANTS = {
    "hub": "as shipped: the hub's Engine.IO WebSocket socket on gevent-websocket "
           "(`LimitedWebSocketHandler`), orjson packets (`PacketJson`)",
    "hub-json": "as shipped, but Socket.IO packets through python-engineio's standard-library "
                "JSON module",
    "engineio-socket": "direct WebSocket sessions on python-engineio's own socket over "
                       "gevent-websocket (the hub's size-limited frame reader kept), without "
                       "`serve_engine_request`",
    "simple-websocket": "python-engineio's gevent driver on simple-websocket (as when "
                        "gevent-websocket is not installed), gevent's plain WSGI handler",
}
PACKAGES = ("gevent", "gevent-websocket", "simple-websocket", "wsproto", "python-engineio",
            "python-socketio", "orjson")

_BY_KEY = {key: (key, label, pick) for key, label, pick in FIGURES}
VARIANT_FIGURES = [
    _BY_KEY["ack_cpu"], _BY_KEY["ack_rate"], _BY_KEY["broadcast"], _BY_KEY["kb_per_conn"],
    _BY_KEY["connect_server_cpu_ms_per_conn"], _BY_KEY["connect_fail"],
    _BY_KEY["broadcast_missed"],
    ("notify_missed", "notifies not received",
     lambda r: r["notify"]["sent"] - r["notify"]["got"] if "notify" in r else None),
]


def measure(kit: Path, variant: str, connections: int, load_args: str) -> dict:
    """One variant on a database of its own, so earlier runs' rows cannot slow it."""
    url = f"sqlite:///{tempfile.mkdtemp(dir=WORK)}/hub.db"
    tokens_file = WORK / f"tokens-variant-{variant}.json"
    tokens_file.write_text(json.dumps(prepare_hub_database(url)))
    return compare(kit, variant, PORT, connections,
                   [sys.executable, "-m", "bench.hub_variant", variant],
                   {**HUB_ENV, "DATABASE_URL": url, "TOKENS": str(tokens_file),
                    "JWT_SECRET_KEY": SECRET}, load_args)


def report(results: dict[str, dict], failures: dict[str, str], args: argparse.Namespace) -> str:
    """The BENCHMARKS.md section, between its markers."""
    commit = short_commit()
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in PACKAGES)
    command = "flock /tmp/cpu.lock .venv/bin/python -m bench.variants"
    if args.connections != 5000:
        command += f" --connections {args.connections}"
    lines = [
        MARKER,
        f"## Transport and JSON variants ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"commit {commit})", "",
        f"Machine: {machine()}. Server pinned to CPU 0, load generator to CPU 1; "
        f"{args.connections:,} connections, SQLite, one fresh database per variant.",
        f"Command: `{command}` (or `make bench-variants`; load: `{args.load_args}`).",
        f"Packages: {versions}.", "",
        *[f"- `{name}`: {VARIANTS[name]}" for name in args.variants], "",
    ]
    if results:
        reference = REFERENCE if REFERENCE in results else next(iter(results))
        lines += [*ratio_table(results, reference, VARIANT_FIGURES), ""]
    for name, error in failures.items():
        tail = "\n".join(error.splitlines()[-12:])
        lines += [f"`{name}` could not be measured:", "", "```", tail, "```", ""]
    lines.append(MARKER)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int,
                        default=int(os.environ.get("CONNECTIONS", "5000")))
    parser.add_argument("--variants", type=lambda text: text.split(","),
                        default=os.environ.get("VARIANTS", ",".join(VARIANTS)).split(","))
    parser.add_argument("--load-args", default=os.environ.get("LOAD_ARGS", LOAD_ARGS))
    parser.add_argument("--no-write", action="store_true", help="print, leave BENCHMARKS.md")
    args = parser.parse_args()
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    WORK.mkdir(parents=True, exist_ok=True)
    kit = prepare_kit()
    results: dict[str, dict] = {}
    failures: dict[str, str] = {}
    for variant in args.variants:
        try:
            results[variant] = measure(kit, variant, args.connections, args.load_args)
        except CompareFailed as failure:
            print(f"{variant} failed:\n{failure}", file=sys.stderr)
            failures[variant] = str(failure)
    (WORK / f"variants-{args.connections}.json").write_text(
        json.dumps({"results": results, "failures": failures}, indent=2))
    section = report(results, failures, args)
    if not args.no_write:
        write_section(MARKER, section, before=BEFORE_HEADING)
    print(section)


if __name__ == "__main__":
    main()
