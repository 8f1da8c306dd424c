"""Side-by-side benchmark: the hub against the Node socket.io peer, in one run.

Uses the measuring kit in ``../shared/bench`` (the official socket.io client
as load generator, and the Node peer). For each size it starts the hub with
its real configuration (SQLite, then PostgreSQL when reachable), then the
Node peer, each pinned to CPU 0 with the load on CPU 1, and writes a table of
figures and hub/Node ratios to BENCHMARKS.md. The hub runs under
``bench/gc_pauses.py``, which adds its garbage collections' longest pause
while serving. ``--against REF`` measures the hub of another commit too (its
files from ``git archive``, this checkout's environment), in the same run.

    python -m bench.run [--sizes 1000,5000,10000] [--backends sqlite,postgresql] [--against main]
        [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KIT = Path(os.environ.get("BENCH_KIT", ROOT.parent / "shared" / "bench"))
WORK = ROOT / "bench" / "out"
SECRET = "bench-secret-0123456789abcdef0123456789"
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
RESULTS_MARKER = "<!-- bench/run.py results -->"
LOAD_ARGS = "--k 5 --m 1000 --rate 200 --ackc 100 --ackt 5"

# The hub's production settings, except the per-address and per-user caps and the
# per-socket event rate, which a load generator on one address must exceed.
HUB_ENV = {
    "HUB_ENV": "production", "WEBHOOK_SECRET": "bench-webhook-secret", "LOG_LEVEL": "WARNING",
    "MAX_CONNECTIONS_PER_ADDRESS": "1000000", "MAX_CONNECTIONS_PER_USER": "100000",
    "EVENT_RATE": "100000", "EVENT_BURST": "100000", "EVENT_BYTES_PER_SECOND": "100000000",
    "EVENT_BYTES_BURST": "100000000",
}


def prepare_kit() -> Path:
    """A writable copy of the kit with its npm dependencies installed."""
    kit = WORK / "kit"
    for part in ("load", "node-peer"):
        target = kit / part
        target.mkdir(parents=True, exist_ok=True)
        for name in os.listdir(KIT / part):
            if name != "node_modules":
                shutil.copy(KIT / part / name, target / name)
        if not (target / "node_modules").exists():
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=target, check=True,
                           capture_output=True)
    shutil.copy(KIT / "compare.sh", kit / "compare.sh")
    return kit


def checkout(ref: str) -> Path:
    """The files of commit ``ref``, in a folder of their own (no git worktree is made),
    built as its ``make`` built them: a commit with ``scripts/compile_transport.py``
    (4153efd, measured and not kept; BENCHMARKS.md, "The transport compiled") has its
    transport compiled."""
    commit = subprocess.run(["git", "rev-parse", "--short", ref], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.strip()
    target = WORK / f"hub-{commit}"
    if not target.exists():
        target.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", commit], cwd=ROOT, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    compile_script = target / "scripts" / "compile_transport.py"
    if compile_script.exists():
        subprocess.run([sys.executable, str(compile_script)], cwd=target, check=True)
    return target


def run_hub(kit: Path, name: str, size: int, source: Path, env: dict,
            load_args: str) -> dict | None:
    """The hub of ``source`` measured by the kit, with its collections' pauses in ``gc``."""
    pauses = WORK / f"gc-{name}-{size}.json"
    pauses.unlink(missing_ok=True)
    command = [sys.executable, str(ROOT / "bench" / "gc_pauses.py"), str(pauses),
               str(source / "app.py")]
    result = run_compare(kit, name, 7102, size, command, env, load_args)
    if result is not None and pauses.exists():
        result["gc"] = json.loads(pauses.read_text())
    return result


def prepare_hub_database(url: str, users: int = 100) -> dict:
    """Migrate a fresh database, create the users, and return the kit's tokens file."""
    os.environ["JWT_SECRET_KEY"] = SECRET
    import flask_migrate
    from flask_jwt_extended import create_access_token

    from app import create_app, install_migrations
    from config import _normalise_database_url
    from extensions import db
    from models import User

    app = create_app("testing", SQLALCHEMY_DATABASE_URI=_normalise_database_url(url),
                     JWT_SECRET_KEY=SECRET)
    install_migrations(app)
    with app.app_context():
        flask_migrate.upgrade()
        from services import auth

        password_hash = auth.hash_password("bench password")
        rows = [User(email=f"bench{i}@example.com", password_hash=password_hash,
                     role="user") for i in range(users)]
        admin = User(email="bench-admin@example.com", password_hash=password_hash,
                     role="admin")
        db.session.add_all([*rows, admin])
        db.session.commit()
        from datetime import timedelta

        def token(user):
            return create_access_token(identity=str(user.id), additional_claims={
                "role": user.role}, expires_delta=timedelta(hours=3))
        tokens = {"admin": token(admin),
                  "users": [{"id": str(u.id), "token": token(u)} for u in rows]}
        db.engine.dispose()
    return tokens


def hub_database(backend: str, tokens_name: str) -> tuple[str, Path] | None:
    """A fresh, migrated ``backend`` database with the kit's users, and the file of their
    tokens (``WORK/<tokens_name>-<backend>.json``); None when PostgreSQL is unreachable."""
    url = (f"sqlite:///{tempfile.mkdtemp(dir=WORK)}/hub.db" if backend == "sqlite"
           else fresh_postgres())
    if url is None:
        return None
    tokens_file = WORK / f"{tokens_name}-{backend}.json"
    tokens_file.write_text(json.dumps(prepare_hub_database(url)))
    return url, tokens_file


def fresh_postgres() -> str | None:
    try:
        import psycopg

        name = f"hub_bench_{int(time.time())}"
        with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
    except Exception as exc:
        print(f"PostgreSQL not reachable ({exc}); skipping it", file=sys.stderr)
        return None


class CompareFailed(RuntimeError):
    """The kit's run ended without figures; the message is the tail of its output."""


def compare(kit: Path, name: str, port: int, size: int, command: list[str], env: dict,
            load_args: str) -> dict:
    """One ``compare.sh`` run: the server's figures, or ``CompareFailed`` with the reason.

    Callers that must report why a server could not be measured (not just
    that it was not) need the kit's output, so the failure carries it.
    """
    started = time.monotonic()
    result = subprocess.run([str(kit / "compare.sh"), name, str(port), str(size), "--", *command],
                            cwd=ROOT, env={**os.environ, **env, "SECRET": SECRET,
                                           "LOAD_ARGS": load_args},
                            capture_output=True, text=True, timeout=900)
    if result.returncode != 0 or not result.stdout.strip():
        raise CompareFailed(result.stderr[-2000:].strip() or f"exit status {result.returncode}")
    line = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"{name} n={size}: {time.monotonic() - started:.0f}s", file=sys.stderr)
    return line["result"]


def run_compare(kit: Path, name: str, port: int, size: int, command: list[str],
                env: dict, load_args: str) -> dict | None:
    try:
        return compare(kit, name, port, size, command, env, load_args)
    except CompareFailed as failure:
        print(f"{name} at {size} failed:\n{failure}", file=sys.stderr)
        return None


FIGURES = [
    ("connect_server_cpu_ms_per_conn", "server CPU per connect (ms)", lambda r: r.get(
        "connect_server_cpu_ms_per_conn")),
    ("connect_fail", "connect failures", lambda r: r.get("connect_fail")),
    ("kb_per_conn", "memory per connection (KB)", lambda r: r.get("kb_per_conn")),
    ("broadcast", "server CPU per broadcast delivery (µs)",
     lambda r: r.get("broadcast_server_cpu_us_per_delivery")),
    ("broadcast_all", "broadcast: last client has it (ms, median)",
     lambda r: r.get("broadcast_median_all_ms")),
    ("broadcast_missed", "broadcast deliveries missed", lambda r: r.get("broadcast_missed")),
    ("notify_p50", "notify latency p50 (ms)", lambda r: r.get("notify", {}).get("p50")),
    ("notify_p99", "notify latency p99 (ms)", lambda r: r.get("notify", {}).get("p99")),
    ("notify_rate", "notify achieved rate (/s)",
     lambda r: r.get("notify", {}).get("achieved_rate")),
    ("ack_cpu", "server CPU per ack round trip (µs)", lambda r: r.get("ack_server_cpu_us_per_ack")),
    ("ack_rate", "acks per second (100 clients)", lambda r: r.get("ack", {}).get("per_s")),
    ("ack_p99", "ack latency p99 (ms)", lambda r: r.get("ack", {}).get("p99")),
    ("gc_max", "longest GC pause while serving (ms)", lambda r: r.get("gc", {}).get("max_ms")),
    ("gc_max_cpu", "longest GC pause while serving, CPU time (ms)",
     lambda r: r.get("gc", {}).get("max_cpu_ms")),
]


def ratio_table(results: dict[str, dict], reference: str,
                figures: list[tuple] = FIGURES) -> list[str]:
    """Markdown rows: one column per run, then each other run's ratio to ``reference``."""
    names = list(results)
    others = [name for name in names if name != reference]
    header = ["figure", *names, *(f"{name} / {reference}" for name in others)]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for _key, label, pick in figures:
        values = {name: pick(result) for name, result in results.items()}
        base = values.get(reference)
        ratios = [f"{values[name] / base:.2f}" if isinstance(values[name], int | float) and
                  isinstance(base, int | float) and base else "–" for name in others]
        cells = [str(values[n]) if values[n] is not None else "–" for n in names]
        lines.append("| " + " | ".join([label, *cells, *ratios]) + " |")
    return lines


def median_result(runs: list[dict]) -> dict:
    """One server's figures over several rounds: the median of each number, however nested.

    A single run's latency tail moves with whatever else the machine does in
    that second; the median of rounds taken in turn keeps the servers'
    comparison from resting on one such second.
    """
    merged: dict = {}
    for key, first in runs[0].items():
        values = [run[key] for run in runs if key in run]
        if all(isinstance(value, int | float) and not isinstance(value, bool)
               for value in values):
            merged[key] = round(statistics.median(values), 3)
        elif all(isinstance(value, dict) for value in values):
            merged[key] = median_result(values)
        else:
            merged[key] = first
    return merged


def table(size: int, results: dict[str, dict]) -> str:
    return "\n".join([f"### {size:,} connections", "", *ratio_table(results, "node")])


def process_cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of another process so far, every thread's, from /proc
    (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def process_cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of another process so far, together."""
    return sum(process_cpu_times(pid))


def short_commit(root: Path = ROOT, ref: str = "HEAD") -> str:
    """``ref``'s short hash as seen from ``root``, to label figures; an archived tree
    (``checkout``) is named after its commit."""
    if ref == "HEAD" and not (root / ".git").exists():
        return root.name.removeprefix("hub-")
    return subprocess.run(["git", "rev-parse", "--short", ref], cwd=root, capture_output=True,
                          text=True).stdout.strip() or root.name


def machine() -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as handle:
        memory_kb = int(handle.readline().split()[1])
    return f"{os.cpu_count()} × {model}, {memory_kb // 1024 // 1024} GiB, {platform.platform()}"


def publish(marker: str, title: str, lines: list[str]) -> None:
    """Write a dated section of figures to BENCHMARKS.md, above the soak's, and print it.

    The heading names the commit measured, so every figure can be traced to its code.
    """
    report = "\n".join([
        marker,
        f"## {title} ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {short_commit()})", "",
        *lines,
        marker,
    ])
    write_section(marker, report, before="<!-- bench/soak.py results -->")
    print(report)


def write_section(marker: str, section: str, before: str | None = None) -> None:
    """Put ``section`` (which starts and ends with ``marker``) into BENCHMARKS.md.

    A section already there is replaced in place, so reruns keep the
    document's order; a new one goes just above the ``before`` line when
    given and present, else at the end.
    """
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if marker in text:
        head, _, rest = text.partition(marker)
        text = head + section + rest.partition(marker)[2]
    elif before and f"\n{before}\n" in text:
        head, _, rest = text.partition(f"\n{before}\n")
        text = head + "\n" + section + "\n\n" + before + "\n" + rest
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default=os.environ.get("SIZES", "1000,5000,10000"))
    parser.add_argument("--backends", default=os.environ.get("BACKENDS", "sqlite,postgresql"))
    parser.add_argument("--load-args", default=os.environ.get("LOAD_ARGS", LOAD_ARGS))
    parser.add_argument("--label", default="",
                        help="keep this run in its own section of BENCHMARKS.md, beside the "
                             "main table instead of replacing it (e.g. 'capacity')")
    parser.add_argument("--against", default=os.environ.get("AGAINST", ""),
                        help="also measure the hub of this commit (e.g. main), in the same run")
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("ROUNDS", "3")),
                        help="measure every server this many times, in turn, and report the "
                             "median of each figure")
    args = parser.parse_args()
    marker = f"<!-- bench/run.py results: {args.label} -->" if args.label else RESULTS_MARKER
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    WORK.mkdir(parents=True, exist_ok=True)
    kit = prepare_kit()
    sources = {"": ROOT, **({f"@{args.against}": checkout(args.against)} if args.against else {})}
    sizes = [int(s) for s in args.sizes.split(",")]
    sections = []
    for size in sizes:
        servers = []
        for backend in args.backends.split(","):
            database = hub_database(backend, "tokens")
            if database is None:
                continue
            url, tokens_file = database
            env = {**HUB_ENV, "DATABASE_URL": url, "TOKENS": str(tokens_file),
                   "JWT_SECRET_KEY": SECRET}
            servers += [(f"hub-{backend}{name}", source, env) for name, source in sources.items()]
        rounds: dict[str, list[dict]] = {}
        for _ in range(args.rounds):
            for name, source, env in servers:
                result = run_hub(kit, name, size, source, env, args.load_args)
                if result:
                    rounds.setdefault(name, []).append(result)
            node = run_compare(kit, "node", 7101, size,
                               ["node", str(kit / "node-peer" / "server.js")], {}, args.load_args)
            if node:
                rounds.setdefault("node", []).append(node)
        (WORK / f"results-{size}.json").write_text(json.dumps(rounds, indent=2))
        sections.append(table(size, {name: median_result(runs) for name, runs in rounds.items()}))
    title = f"Hub vs Node socket.io peer{f', {args.label}' if args.label else ''}"
    command = " ".join(["make bench", f"SIZES={args.sizes}", f"BACKENDS={args.backends}",
                        f"ROUNDS={args.rounds}",
                        *([f"BENCH_LABEL={args.label}"] if args.label else []),
                        *([f"AGAINST={args.against}"] if args.against else [])])
    publish(marker, title, [
        f"Machine: {machine()}. Server pinned to CPU 0, load generator to CPU 1.",
        f"Command: `{command}` (load: `{args.load_args}`). Each figure is the median of "
        f"{args.rounds} rounds, every server measured once a round, in turn.", "",
        *[section + "\n" for section in sections],
    ])


if __name__ == "__main__":
    main()
