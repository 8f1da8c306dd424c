"""Reading the fakes' JSONL event logs, and the counts the provider tests assert on."""

from __future__ import annotations

import bisect
import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path


def read_log(path: str | Path) -> list[dict]:
    """A fake's JSONL log, or the simulated provider's send log, a complete line at a time
    (one being written is skipped)."""
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_text().splitlines(keepends=True)
    return [json.loads(line) for line in lines if line.endswith("\n")]


def per_phone(submissions: Iterable[dict], key: str) -> Counter:
    """How many times each destination was submitted (``key``: ``to`` or ``dest``)."""
    return Counter(submission[key] for submission in submissions)


def busiest_window(timestamps: Iterable[float], seconds: float = 1.0) -> int:
    """The most events in any window of ``seconds``, wherever it starts (not per clock second)."""
    ordered = sorted(timestamps)
    return max((bisect.bisect_left(ordered, start + seconds) - index
                for index, start in enumerate(ordered)), default=0)
