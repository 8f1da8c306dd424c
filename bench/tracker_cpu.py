"""Serve a hub as ``python app.py`` does, timing the CPU its trackers' paths take.

``bench/recipient_batches.py`` starts the hub through this script. The
hub's CPU beyond a run without trackers is the whole cost of trackers, but
the sending itself varies from run to run by more than one tracker costs.
So the functions through which the hub works for trackers (``PATHS``: the
per-recipient emits and the batches they note, a batch going out, a
snapshot, a socket's backlog written later) are timed here with the CPU
clock of the thread that runs them (``time.thread_time``, which the
process's other threads, SQLite's in gevent's pool, do not inflate), each
call counted once however they nest, and without the time other greenlets
run while one of them waits (an emit burst's pause, a query): the clock of
a greenlet stops when it switches away (``greenlet.settrace``). When the hub exits (SIGTERM), the
total goes to the JSON file named first. Paths a commit lacks are skipped,
so a commit before batches is timed the same way.

    python bench/tracker_cpu.py OUT.json path/to/app.py
"""

from gevent import monkey

monkey.patch_all()

import atexit  # noqa: E402
import functools  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import runpy  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import greenlet  # noqa: E402

# (module, attribute path) of every function through which the hub works for trackers,
# before and after batches (the snapshot was ``messages.track`` before ``tracking``).
PATHS = (
    ("services.messaging.announcements", "emit_recipient_updates"),
    ("services.messaging.recipient_batches", "RecipientBatches.flush"),
    ("services.messaging.tracking", "track"),
    ("services.messaging.messages", "track"),
    ("services.transport.engine_socket", "EngineWebSocket._flush"),
)


class PathClock:
    """Thread CPU spent inside the timed functions, outermost calls only, by greenlet."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        # The greenlets inside a timed call, each with when its clock last started.
        self.inside: dict[greenlet.greenlet, float] = {}
        self.timed: list[str] = []

    def wrap(self, function):
        @functools.wraps(function)
        def timed(*args, **kwargs):
            current = greenlet.getcurrent()
            if current in self.inside:
                return function(*args, **kwargs)
            self.inside[current] = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += time.thread_time() - self.inside.pop(current)
                self.calls += 1
        return timed

    def switched(self, event: str, args: tuple) -> None:
        if event not in ("switch", "throw"):
            return
        origin, target = args
        inside = self.inside
        if origin in inside or target in inside:
            now = time.thread_time()  # a system call: only when a timed greenlet is involved
            if origin in inside:
                self.seconds += now - inside[origin]
            if target in inside:
                inside[target] = now

    def install(self) -> None:
        for module_name, attribute in PATHS:
            try:
                owner = importlib.import_module(module_name)
            except ImportError:
                continue
            *parents, name = attribute.split(".")
            for parent in parents:
                owner = getattr(owner, parent, None)
            if owner is None or not hasattr(owner, name):
                continue
            setattr(owner, name, self.wrap(getattr(owner, name)))
            self.timed.append(f"{module_name}.{attribute}")
        greenlet.settrace(self.switched)


def main() -> None:
    output, app = Path(sys.argv[1]), Path(sys.argv[2]).resolve()
    sys.argv = [str(app)]
    sys.path[0] = str(app.parent)  # the hub's folder, as for ``python app.py``; not bench/
    clock = PathClock()
    clock.install()
    atexit.register(lambda: output.write_text(json.dumps(
        {"seconds": clock.seconds, "calls": clock.calls, "timed": clock.timed})))
    runpy.run_path(str(app), run_name="__main__")


if __name__ == "__main__":
    main()
