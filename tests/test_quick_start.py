"""The README's quick start, followed in a fresh clone: ``make run`` serves a hub one can log in to.

The clone borrows this checkout's virtualenv (same requirements, so ``make``
finds it installed) to keep the test to seconds; everything else, the
database, the demo admin and its password file, the JWT key, is made by
``make run`` in the clone as on a new machine. ``make test`` is what runs
this file, so it is not run again here.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time

import requests

from tests.support import ROOT, free_port


def _lines(stream, into: queue.Queue) -> None:
    for line in stream:
        into.put(line)
    into.put(None)


def _read_until(lines: queue.Queue, pattern: str, seen: list[str], timeout: float) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        found = re.search(pattern, line)
        if found:
            return found
    raise AssertionError(f"`make run` never printed {pattern!r}:\n" + "".join(seen))


def test_make_run_in_a_fresh_clone_serves_the_hub_and_says_how_to_log_in(tmp_path):
    clone = tmp_path / "hub"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=60)
    (clone / ".venv").symlink_to(ROOT / ".venv")
    port = free_port()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "PORT": str(port)}
    process = subprocess.Popen(["make", "run"], cwd=clone, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               start_new_session=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_lines, args=(process.stdout, lines), daemon=True).start()
    seen: list[str] = []
    try:
        page = _read_until(lines, r"Open (http://\S+/testSocket) and log in as (\S+)", seen, 120)
        password = _read_until(lines, r"password: (.+?)\s{2,}\(shown once", seen, 10).group(1)
        _read_until(lines, rf"Hub serving on http://127\.0\.0\.1:{port}\b", seen, 60)
        assert page.group(1) == f"http://127.0.0.1:{port}/testSocket"
        email = page.group(2)
        assert (clone / "instance" / "demo-admin.txt").read_text().split() == [email, password]

        login = requests.post(f"http://127.0.0.1:{port}/api/auth/login", timeout=10,
                              json={"email": email, "password": password})
        assert login.status_code == 200, login.text
        assert login.json()["user"]["role"] == "admin"
        test_socket = requests.get(page.group(1), timeout=10)
        assert test_socket.status_code == 200
        assert "/static/vendor/socket.io" in test_socket.text
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C, as the README says
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode is not None
