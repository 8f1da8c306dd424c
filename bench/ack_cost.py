"""Instructions per ack round trip, the hub against the Node peer, counted by callgrind.

CPU time per ack is what ``make bench`` reports, and on these shared
machines it moves by a fifth between rounds of the same servers (Node's own
figure went from 21.8 to 17.7 µs between two tables): a lever worth a tenth
of an ack cannot be seen in it. Instructions executed can. Each server (the
hub on SQLite with production settings, ``--against REF``'s hub, and the
kit's Node peer) runs under valgrind's callgrind with counting off; one
client connects with a user's token and sends ``get_rooms`` with an ack id,
the load generator's ack phase, one at a time: ``WARM`` of them uncounted
(Node's JIT compiles the path, caches fill), then counting is on for
``COUNT``, and the dump's total over ``COUNT`` is the figure.

The total carries work that is not the ack's: the hub's periodic tasks run
on timers that fire fifty times as often per ack under valgrind's slowdown,
and V8 may still be compiling on a helper thread. So a second figure counts
only what runs under each event loop's socket-readiness callback
(``gevent_callback_io`` in gevent's libev loop, ``uv__io_poll`` in libuv),
inclusive of everything it calls: the read, the parsing, the handler, the
answer's encoding and its write.

The client speaks Engine.IO 4 / Socket.IO 5 over websocket-client and sends
the official client's bytes (``42<id>["get_rooms"]``, masked); the counts
are of the server's user space (interpreter or V8, event loop, libraries),
not of the kernel, whose share is the same two system calls an ack on
either server (one ``read``, one ``write``, by ``strace -c``).

    python -m bench.ack_cost [--count 2000] [--against REF]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import websocket

from bench.request_cost import callgrind_server, count_while, instructions
from bench.run import (
    HUB_ENV,
    WORK,
    checkout,
    hub_database,
    machine,
    prepare_kit,
    publish,
    ratio_table,
)

ROOT = Path(__file__).resolve().parent.parent
PORT = 7162
WARM = 10_000
IO_CALLBACKS = {"hub": "gevent_callback_io", "node": "uv__io_poll"}
MARKER = "<!-- bench/ack_cost.py results -->"


class AckClient:
    """One Socket.IO client on a WebSocket, acking ``get_rooms`` one at a time."""

    def __init__(self, port: int, token: str) -> None:
        self.ws = websocket.create_connection(
            f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket", timeout=300)
        if not self.ws.recv().startswith("0"):
            raise RuntimeError("no Engine.IO open packet")
        self.ws.send("40" + json.dumps({"token": token}))
        self._receive_until(lambda text: text.startswith("40"))
        self.next_id = 0

    def _receive_until(self, wanted) -> str:
        while True:
            text = self.ws.recv()
            if text == "2":
                self.ws.send("3")
            elif text.startswith("44"):
                raise RuntimeError(f"connection refused: {text}")
            elif wanted(text):
                return text

    def acks(self, count: int) -> None:
        for _ in range(count):
            ack_id, self.next_id = self.next_id, self.next_id + 1
            self.ws.send(f'42{ack_id}["get_rooms"]')
            prefix = f"43{ack_id}["
            self._receive_until(lambda text, prefix=prefix: text.startswith(prefix))

    def close(self) -> None:
        self.ws.close()


def inclusive(dump: Path, function: str) -> int:
    """Instructions spent in ``function`` and everything it called, by callgrind_annotate."""
    annotated = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(dump)],
        check=True, capture_output=True, text=True).stdout
    for line in annotated.splitlines():
        if re.search(rf":{function}(\s|$)", line):
            return int(line.split()[0].replace(",", ""))
    raise RuntimeError(f"{function} not in {dump}")


def count_server(name: str, command: list[str], cwd: Path, env: dict, token: str,
                 count: int, io_callback: str) -> dict[str, int]:
    """Instructions per ack round trip of the server ``command`` starts: in all, and
    under its event loop's I/O callback."""
    output = WORK / "callgrind"
    output.mkdir(exist_ok=True)
    dump = output / f"ack-{name}.out"
    with callgrind_server(command, cwd, env, dump, PORT) as pid:
        client = AckClient(PORT, token)
        client.acks(WARM)
        count_while(pid, lambda: client.acks(count))
        client.close()
    counted = Path(f"{dump}.1")
    return {"ack": instructions(counted) // count,
            "io": inclusive(counted, io_callback) // count}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--against", default="")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    kit = prepare_kit()
    url, tokens_file = hub_database("sqlite", "tokens-callgrind")
    token = json.loads(tokens_file.read_text())["users"][0]["token"]
    hubs = {"hub": ROOT, **({f"hub@{args.against}": checkout(args.against)}
                            if args.against else {})}
    results = {name: count_server(name, [sys.executable, "app.py"], source,
                                  {**HUB_ENV, "DATABASE_URL": url}, token, args.count,
                                  IO_CALLBACKS["hub"])
               for name, source in hubs.items()}
    results["node"] = count_server("node", ["node", "server.js"], kit / "node-peer", {},
                                   token, args.count, IO_CALLBACKS["node"])
    command = "make bench-acks" + (f" AGAINST={args.against}" if args.against else "")
    publish(MARKER, "Instructions per ack round trip", [
        f"Machine: {machine()}. Command: `{command}` ({args.count} `get_rooms` acks counted "
        f"on one connection, after {WARM} uncounted; the hub on SQLite with production "
        "settings).", "",
        *ratio_table(results, "node", [
            ("ack", "instructions per ack round trip, in all", lambda figures: figures["ack"]),
            ("io", "of which under the event loop's I/O callback",
             lambda figures: figures["io"]),
        ]), "",
    ])


if __name__ == "__main__":
    main()
