"""A fake run as a process of its own, and the HTTP control API both kinds of fake offer.

Such a fake prints one JSON line with its ports once it listens, and exits when its
standard input closes: the test process holds that pipe, so a fake never outlives it.
"""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path
from typing import Any

import requests


def start_fake(command: list[str], *, cwd: Path, log_path: Path,
               timeout: float) -> tuple[subprocess.Popen, dict]:
    """Start ``command`` (its stderr beside ``log_path``) and wait for its ready line."""
    with log_path.with_suffix(".stderr").open("a") as stderr:
        process = subprocess.Popen(command, cwd=cwd, stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=stderr, text=True)
    ready: dict = {}

    def read() -> None:
        line = process.stdout.readline()
        if line:
            ready.update(json.loads(line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if not ready:
        process.kill()
        raise RuntimeError(f"{command[:3]} did not start within {timeout}s "
                           f"(exit {process.poll()}; see {log_path.with_suffix('.stderr')})")
    return process, ready


def stop_fake(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class ControlApi:
    """JSON calls to a fake's control endpoints: arguments left as None are left out, and
    a refused call raises ``ValueError``."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()

    def post(self, action: str, **body: Any) -> Any:
        body = {key: value for key, value in body.items() if value is not None}
        answer = self.session.post(f"{self.base_url}/{action}", json=body, timeout=30)
        if answer.status_code != 200:
            raise ValueError(answer.json()["error"])
        return answer.json()

    def get(self, action: str) -> Any:
        return self.session.get(f"{self.base_url}/{action}", timeout=10).json()

    def close(self) -> None:
        self.session.close()
