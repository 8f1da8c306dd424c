"""Serve a hub as ``python app.py`` does, timing every garbage collection with ``gc.callbacks``.

``bench/run.py`` starts the hub through this script, so that the pauses
come from the same run as the other figures. When the hub exits (the kit
stops it with SIGTERM), the figures of its collections while serving go to
the JSON file named first, by generation: how many, the longest (wall clock,
and CPU time, which other processes on the same core do not inflate), how
many took over ``LONG_PAUSE_MS``, and the cyclic garbage found; and, for each SIGUSR2,
one reclaim of frozen cycles (``reclaims``). Start-up's
collections (imports, migrations) are counted apart, and so are those once the
server has stopped accepting (the node closing every socket as it leaves): no
client waits on them.

    python bench/gc_pauses.py OUT.json path/to/app.py
"""

from gevent import monkey

monkey.patch_all()

import atexit  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import runpy  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from gevent.pywsgi import WSGIServer  # noqa: E402

LONG_PAUSE_MS = 20.0


def _figures() -> dict:
    return {str(generation): {"count": 0, "total_ms": 0.0, "max_ms": 0.0, "max_cpu_ms": 0.0,
                              "over_long_ms": 0, "collected": 0} for generation in range(3)}


class PauseLog:
    """Each collection's wall-clock and CPU time, as counts and maxima per phase."""

    def __init__(self) -> None:
        self.started = self.started_cpu = 0.0
        self.phases = {"start-up": _figures(), "serving": _figures(), "stopping": _figures(),
                       "window": _figures()}
        self.phase = "start-up"
        self.in_window = False
        self.reclaims: list[dict] = []

    def toggle_window(self, *_: object) -> None:
        """SIGUSR1: collections from now on count in the ``window`` phase too, until the next.

        A benchmark marks the stretch it is about (``bench/burst.py``: a connect
        burst), so its pauses are told apart from the rest of the run's.
        """
        self.in_window = not self.in_window

    def reclaim(self, *_: object) -> None:
        """SIGUSR2: what the node's reclaim (``LongLivedCollector.reclaim``) does, now, timed,
        with the frozen cyclic garbage it found: what the node held until then. Done here
        rather than by calling it, so that a tree whose reclaim differs is measured alike."""
        frozen = gc.get_freeze_count()
        started, started_cpu = time.perf_counter(), time.thread_time()
        gc.unfreeze()
        collected = gc.collect()
        gc.freeze()
        self.reclaims.append({
            "frozen_objects": frozen, "collected": collected,
            "ms": round((time.perf_counter() - started) * 1000, 2),
            "cpu_ms": round((time.thread_time() - started_cpu) * 1000, 2)})

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self.started, self.started_cpu = time.perf_counter(), time.thread_time()
            return
        elapsed = (time.perf_counter() - self.started) * 1000
        cpu = (time.thread_time() - self.started_cpu) * 1000
        phases = [self.phase, "window"] if self.in_window else [self.phase]
        for phase in phases:
            figures = self.phases[phase][str(info["generation"])]
            figures["count"] += 1
            figures["total_ms"] += elapsed
            figures["max_ms"] = max(figures["max_ms"], elapsed)
            figures["max_cpu_ms"] = max(figures["max_cpu_ms"], cpu)
            figures["over_long_ms"] += elapsed > LONG_PAUSE_MS
            figures["collected"] += info["collected"]

    def summary(self) -> dict:
        phases = {name: {generation: {key: round(value, 2) for key, value in figures.items()}
                         for generation, figures in generations.items()}
                  for name, generations in self.phases.items()}
        serving = phases["serving"].values()
        return {"max_ms": max(figures["max_ms"] for figures in serving),
                "max_cpu_ms": max(figures["max_cpu_ms"] for figures in serving),
                "over_20ms": sum(figures["over_long_ms"] for figures in serving),
                "frozen_objects": gc.get_freeze_count(), "threshold": gc.get_threshold(),
                "reclaims": self.reclaims, **phases}


def main() -> None:
    output, app = Path(sys.argv[1]), Path(sys.argv[2]).resolve()
    pauses = PauseLog()
    gc.callbacks.append(pauses)
    signal.signal(signal.SIGUSR1, pauses.toggle_window)
    signal.signal(signal.SIGUSR2, pauses.reclaim)
    atexit.register(lambda: output.write_text(json.dumps(pauses.summary())))
    serve_forever = WSGIServer.serve_forever

    def serving(server: WSGIServer, *args, **kwargs) -> None:
        pauses.phase = "serving"
        try:
            serve_forever(server, *args, **kwargs)
        finally:
            pauses.phase = "stopping"

    WSGIServer.serve_forever = serving
    sys.argv = [str(app)]
    sys.path[0] = str(app.parent)  # the hub's folder, as for ``python app.py``; not bench/
    runpy.run_path(str(app), run_name="__main__")


if __name__ == "__main__":
    main()
