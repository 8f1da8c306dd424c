"""Commands that work where people type them: ``make`` targets from a shell without the
virtualenv, ``flask run`` refused with what to run instead, and Ctrl-C stopping
``make run`` whether its output goes to a terminal or through a pipe.

The Ctrl-C is a real one: ``make run`` runs in its own session on a pseudo-terminal
(its controlling terminal), and the test types ``^C`` into it, so the terminal sends
SIGINT to the whole foreground process group (make, python, tee), as it does for a
person at a keyboard.
"""

from __future__ import annotations

import os
import pty
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from services.auth import ROLE_ADMIN
from tests.support import (
    ADMIN_EMAIL,
    ROOT,
    eventually,
    free_port,
    make_app,
    migrate_database,
    register_user,
    seed_admin,
    sql_scalar,
)

STOP_BOUND = 10.0


def _shell(**variables: str) -> dict[str, str]:
    """A new terminal's environment: the virtualenv neither activated nor on PATH."""
    venv = str(ROOT / ".venv")
    path = os.pathsep.join(part for part in os.environ.get("PATH", "").split(os.pathsep)
                           if not part.startswith(venv))
    env = {key: value for key, value in os.environ.items()
           if key not in {"VIRTUAL_ENV", "FLASK_APP", "SOCKETIO_MESSAGE_QUEUE"}}
    return {**env, "PATH": path, "HUB_ENV": "testing", **variables}


def _make(*arguments: str, env: dict[str, str], typed: str | None = None,
          ) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *arguments], cwd=ROOT, env=env,
                          input=typed, capture_output=True, text=True, timeout=300)


def _nothing_listens(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


# flask run --------------------------------------------------------------------------------

@pytest.mark.parametrize("arguments", [
    pytest.param(["--app", "app", "run"], id="app"),
    pytest.param(["run"], id="found-in-the-folder"),
    pytest.param(["--app", "app", "run", "--debug"], id="debug-with-reloader"),
])
def test_flask_run_refuses_and_says_what_to_run_instead(tmp_path, arguments):
    port = free_port()
    env = _shell(DATABASE_URL=f"sqlite:///{tmp_path / 'hub.db'}")
    flask = subprocess.Popen([sys.executable, "-m", "flask", *arguments, "--port", str(port)],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True)
    try:
        _, stderr = flask.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(flask.pid, signal.SIGKILL)  # the reloader's child too
        flask.communicate()
        pytest.fail("flask run served instead of refusing")
    assert flask.returncode == 1, stderr
    message = " ".join(stderr.split())
    assert "Error: `flask run` would serve the API without the hub's node" in message
    assert "`make run`" in message and "python app.py`" in message
    assert "Traceback" not in stderr
    assert _nothing_listens(port)


# make admin, make notify, make users ------------------------------------------------------

def test_make_admin_creates_an_admin_with_the_password_typed_twice(tmp_path):
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    made = _make("admin", "EMAIL=ops@example.com", env=_shell(DATABASE_URL=url),
                 typed="correct horse battery\ncorrect horse battery\n")
    assert made.returncode == 0, made.stderr
    assert "created admin ops@example.com (id 1)" in made.stdout
    app = make_app(url)
    with app.app_context():
        from services import auth

        account = auth.verify_credentials("ops@example.com", "correct horse battery")
        assert account.role == ROLE_ADMIN


def test_make_admin_without_an_email_says_how_to_call_it(tmp_path):
    made = _make("admin", env=_shell(DATABASE_URL=f"sqlite:///{tmp_path / 'hub.db'}", EMAIL=""))
    assert made.returncode == 2
    assert "usage: make admin EMAIL=you@example.com" in made.stderr


def test_make_notify_stores_a_notification_for_a_user_named_by_email(sqlite_hub):
    user = register_user(sqlite_hub)
    title = """It's "quoted" & spaced"""
    made = _make("notify", f"USER={user.email}", f"TITLE={title}", "MESSAGE=from make",
                 "TYPE=warning", env=_shell(DATABASE_URL=sqlite_hub.database_url))
    assert made.returncode == 0, made.stderr
    assert "stored, but not sent live: without SOCKETIO_MESSAGE_QUEUE" in made.stderr
    listed = sqlite_hub.api.get("/api/notifications", user.token).json()["notifications"]
    assert [(n["title"], n["message"], n["type"]) for n in listed] == [
        (title, "from make", "warning")]


def test_make_notify_refuses_the_login_name_for_a_user(sqlite_hub):
    """``USER`` is also the shell's login name: only one given to make counts."""
    made = _make("notify", "TITLE=t", "MESSAGE=m",
                 env=_shell(DATABASE_URL=sqlite_hub.database_url, USER=ADMIN_EMAIL))
    assert made.returncode == 2
    assert "usage: make notify USER=<email or id> TITLE=... MESSAGE=..." in made.stderr


def test_make_notify_applies_the_apis_rules(sqlite_hub):
    user = register_user(sqlite_hub)
    made = _make("notify", f"USER={user.id}", f"TITLE={'t' * 201}", "MESSAGE=m",
                 env=_shell(DATABASE_URL=sqlite_hub.database_url))
    assert made.returncode != 0
    assert "Error: title: Length must be between 1 and 200." in made.stderr


def test_make_users_runs_any_users_command(sqlite_hub):
    user = register_user(sqlite_hub)
    env = _shell(DATABASE_URL=sqlite_hub.database_url)
    listed = _make("users", "ARGS=--help", env=env)
    assert listed.returncode == 0, listed.stderr
    assert {"create", "delete", "disable", "enable", "promote", "demote", "quota"} <= set(
        line.split()[0] for line in listed.stdout.split("Commands:")[1].splitlines()
        if line.strip())
    disabled = _make("users", f"ARGS=disable {user.email}", env=env)
    assert disabled.returncode == 0, disabled.stderr
    assert f"disabled {user.email}" in disabled.stdout
    login = {"email": user.email, "password": user.password}
    assert sqlite_hub.api.post("/api/auth/login", json=login).status_code == 401


# Ctrl-C -----------------------------------------------------------------------------------

class Terminal:
    """A pseudo-terminal whose output is read as it comes, so writers never block."""

    def __init__(self) -> None:
        self.master, self.slave = pty.openpty()
        self.output = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.output += chunk

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def close(self) -> None:
        os.close(self.slave)
        os.close(self.master)


def _in_session(session: int) -> list[str]:
    """The processes still in ``session``, as ``pid command``."""
    alive = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] != "Z" and int(fields[3]) == session:
                alive.append(f"{proc.name} {(proc / 'cmdline').read_bytes()!r}")
        except (OSError, IndexError, ValueError):
            continue
    return alive


@pytest.mark.parametrize("command", [
    pytest.param("make run", id="terminal"),
    pytest.param("make run 2>&1 | tee {log}", id="pipe"),
    # A pipeline a script starts in the background inherits SIGINT ignored.
    pytest.param("trap '' INT; make run 2>&1 | tee {log}", id="pipe-started-with-sigint-ignored"),
])
def test_ctrl_c_stops_make_run_whether_its_output_is_a_terminal_or_a_pipe(tmp_path, command):
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    migrate_database(url)
    seed_admin(url)  # so that `make run` prints no demo password
    port = free_port()
    terminal = Terminal()
    shell = subprocess.Popen(
        ["setsid", "--ctty", "bash", "-c", command.format(log=tmp_path / "hub.log")],
        cwd=ROOT, env=_shell(DATABASE_URL=url, HOST="127.0.0.1", PORT=str(port)),
        stdin=terminal.slave, stdout=terminal.slave, stderr=terminal.slave)
    try:
        def serving() -> bool:
            if shell.poll() is not None:
                raise AssertionError(terminal.output.decode(errors="replace"))
            try:
                return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok
            except requests.RequestException:
                return False
        eventually(serving, timeout=120, interval=0.2)
        assert sql_scalar(url, "SELECT count(*) FROM nodes") == 1
        terminal.type(b"\x03")
        shell.wait(timeout=STOP_BOUND)
        assert eventually(lambda: _in_session(shell.pid) == [], timeout=STOP_BOUND), \
            _in_session(shell.pid)
        assert _nothing_listens(port)
        assert sql_scalar(url, "SELECT count(*) FROM nodes") == 0, "the node did not stop cleanly"
    finally:
        if _in_session(shell.pid):
            os.killpg(shell.pid, signal.SIGKILL)
        shell.wait(timeout=10)
        terminal.close()
