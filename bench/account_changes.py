"""How long a logout or an account change takes to reach a node: REST refused, socket acted on.

For each kind of change (a logout with the refresh token, ``flask users disable``,
``flask users demote``) and each arrangement (one node on SQLite; two nodes on
PostgreSQL + Redis, the change made through node A or its database and
measured on node B), ROUNDS times: a user with a live socket on the measured
node, the change committed at a random moment, then the measured node polled every 5 ms until a
REST call is refused and until the socket is dropped (logout, disable) or has
left ``admins`` (demote). The services' own functions commit the account
changes, as the commands do, without the command's process start-up.

    python -m bench.account_changes [--rounds 20] [--no-write]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from bench.run import machine, short_commit, write_section
from tests.support import (
    REDIS_URL,
    LiveServer,
    RecordingClient,
    fresh_postgres_database,
    make_app,
    migrate_database,
    promote_user,
    register_user,
    seed_admin,
)

ROOT = Path(__file__).resolve().parent.parent

MARKER = "<!-- bench/account_changes.py results -->"
KINDS = ("logout", "disable", "demote")
POLL = 0.005
LIMIT = 10.0


def _until(check) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > LIMIT:
            raise RuntimeError("the change did not arrive within 10 s")
        time.sleep(POLL)
    return time.monotonic() - started


def _round(kind: str, writer: LiveServer, measured: LiveServer, app) -> tuple[float, float]:
    from services import accounts

    user = register_user(writer)
    if kind == "demote":
        user = promote_user(writer, user)
    client = RecordingClient(measured.url)
    client.connect(token=user.token)
    client.wait_for("session")
    path, refused = ("/api/socket/stats", 403) if kind == "demote" else ("/api/auth/me", 401)
    if measured.api.get(path, user.token).status_code != 200:
        raise RuntimeError(f"{kind}: {path} refused before the change")
    # A random phase against the nodes' once-a-second poll: each round ends just after a
    # poll, so without it every change would be made at the same point of the cycle.
    time.sleep(random.uniform(0, 1))
    try:
        if kind == "logout":
            started = time.monotonic()
            writer.api.post("/api/auth/logout", user.refresh_token).raise_for_status()
        else:
            with app.app_context():
                account = accounts.find_user(user.email)
                started = time.monotonic()
                if kind == "disable":
                    accounts.disable_user(account)
                else:
                    accounts.set_role(account, admin=False)
        committed = time.monotonic() - started
        rest = _until(lambda: measured.api.get(path, user.token).status_code == refused)
        if kind == "demote":
            sockets = _until(lambda: "admins" not in client.call("get_rooms"))
        else:
            sockets = _until(client.disconnected.is_set)
        return committed + rest, committed + rest + sockets
    finally:
        client.close()


def _measure(arrangement: str, rounds: int) -> dict[str, list[tuple[float, float]]]:
    results: dict[str, list[tuple[float, float]]] = {kind: [] for kind in KINDS}
    if arrangement == "sqlite":
        url = f"sqlite:///{tempfile.mkdtemp(prefix='account-changes-')}/hub.db"
        database = None
    else:
        database = fresh_postgres_database()
        url = database.__enter__()
    migrate_database(url)
    seed_admin(url)
    env = {}
    if arrangement != "sqlite":
        env = {"SOCKETIO_MESSAGE_QUEUE": REDIS_URL,
               "SOCKETIO_CHANNEL": f"bench-accounts-{uuid.uuid4().hex[:8]}"}
    a = LiveServer(url, name="accounts-a", env={**env, "NODE_ID": "accounts-a"})
    nodes = [a]
    if arrangement != "sqlite":
        nodes.append(LiveServer(url, name="accounts-b", env={**env, "NODE_ID": "accounts-b"}))
    app = make_app(url)
    try:
        for node in nodes:
            node.start()
        for _ in range(rounds):
            for kind in KINDS:
                results[kind].append(_round(kind, a, nodes[-1], app))
    finally:
        for node in nodes:
            node.stop()
        with app.app_context():
            from extensions import db

            db.engine.dispose()
        if database is not None:
            database.__exit__(None, None, None)
    return results


def _cell(values: list[float]) -> str:
    ordered = sorted(values)
    return (f"{statistics.median(ordered) * 1000:.0f} / "
            f"{ordered[int(0.95 * (len(ordered) - 1))] * 1000:.0f} / {ordered[-1] * 1000:.0f}")


def report(results: dict[str, dict], rounds: int) -> str:
    commit = short_commit()
    lines = [
        MARKER,
        f"## Logouts and account changes reaching a node ({datetime.now(UTC):%Y-%m-%d %H:%M} "
        f"UTC, commit {commit})", "",
        f"Machine: {machine()}. Hubs with the testing settings (their loop ticks every "
        "50 ms; production's every 200 ms, so add up to 150 ms there); every node polls "
        "`revoked_tokens` once a second. From the change's commit (the logout's answer) to "
        f"the first refused REST call on the measured node, and to its socket dropped "
        f"(logout, disable) or out of `admins` (demote); {rounds} rounds, polled every "
        "5 ms. Two nodes: changed through node A, measured on node B.",
        f"Command: `python -m bench.account_changes --rounds {rounds}`.", "",
        "| change | arrangement | REST refused, ms (median / p95 / max) "
        "| socket acted on, ms (median / p95 / max) |",
        "| --- | --- | --- | --- |",
    ]
    names = {"sqlite": "one node, SQLite", "cluster": "two nodes, PostgreSQL + Redis"}
    for kind in KINDS:
        for arrangement, by_kind in results.items():
            rows = by_kind[kind]
            lines.append(f"| {kind} | {names[arrangement]} | {_cell([r[0] for r in rows])} | "
                         f"{_cell([r[1] for r in rows])} |")
    return "\n".join(lines) + "\n" + MARKER


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    results = {arrangement: _measure(arrangement, args.rounds)
               for arrangement in ("sqlite", "cluster")}
    section = report(results, args.rounds)
    if not args.no_write:
        write_section(MARKER, section)
    print(section)


if __name__ == "__main__":
    main()
