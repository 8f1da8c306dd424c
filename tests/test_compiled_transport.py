"""The transport compiled with Cython: used only while it matches the sources, and optional.

The rest of the suite runs against the build (``make test`` compiles first); these tests
pin down when the build is used, and that the same files still serve as Python.
"""

import json
import os
import shutil
import struct
import subprocess
import sys

import pytest
import websocket

from services.transport import compiled
from services.transport.frames import CLOSE_MESSAGE_TOO_BIG
from tests.support import (
    ROOT,
    RecordingClient,
    raw_socketio_connect,
    register_user,
    require_service,
)


@pytest.fixture
def sources_and_build(tmp_path):
    """A copy of the sources, and a build of them: a manifest and a file per module."""
    sources, build = tmp_path / "sources", tmp_path / "build"
    sources.mkdir()
    for name in compiled.MODULES:
        shutil.copy(compiled.SOURCE_DIR / f"{name}.py", sources)
    package = compiled.package_dir(build)
    package.mkdir(parents=True)
    suffix = compiled.fingerprint(sources)["ext_suffix"]
    for name in compiled.MODULES:
        (package / f"{name}{suffix}").write_bytes(b"")
    compiled.manifest_path(build).write_text(json.dumps(compiled.fingerprint(sources)))
    return sources, build


def test_a_build_is_used_only_while_it_matches_every_source(sources_and_build):
    sources, build = sources_and_build
    assert compiled.build_state(sources, build) == "compiled"
    edited = sources / "frames.py"
    edited.write_text(edited.read_text() + "\n# edited after the build\n")
    assert compiled.build_state(sources, build) == "stale"


def test_a_build_for_another_interpreter_is_stale(sources_and_build):
    sources, build = sources_and_build
    manifest = compiled.manifest_path(build)
    other = {**json.loads(manifest.read_text()), "ext_suffix": ".cpython-312-x86_64-linux-gnu.so"}
    manifest.write_text(json.dumps(other))
    assert compiled.build_state(sources, build) == "stale"


@pytest.mark.parametrize("damage", ["no manifest", "unreadable manifest", "a module missing"])
def test_an_incomplete_build_is_not_used(sources_and_build, damage):
    sources, build = sources_and_build
    manifest = compiled.manifest_path(build)
    if damage == "no manifest":
        manifest.unlink()
    elif damage == "unreadable manifest":
        manifest.write_text("{not json")
    else:
        suffix = compiled.fingerprint(sources)["ext_suffix"]
        (compiled.package_dir(build) / f"socket_server{suffix}").unlink()
    assert compiled.build_state(sources, build) == "not built"


def _require_build() -> None:
    require_service("the compiled transport", compiled.build_state() == "compiled",
                    "`make compiled` builds it (make test does)")


def test_the_suite_runs_the_compiled_modules():
    _require_build()
    import services.transport.frames
    import services.transport.socket_server

    assert services.transport.BUILD == "compiled"
    for module in (services.transport.frames, services.transport.socket_server):
        assert module.__file__.startswith(str(compiled.package_dir())), module.__file__


def _module_file(env: dict[str, str]) -> str:
    return subprocess.run(
        [sys.executable, "-c", "import services.transport.engine_socket as m; print(m.__file__)"],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout.strip()


def test_hub_pure_python_runs_the_sources_beside_a_current_build():
    _require_build()
    environment = {key: value for key, value in os.environ.items()
                   if key != compiled.PURE_PYTHON_ENV}
    assert _module_file(environment).endswith(compiled.fingerprint()["ext_suffix"])
    assert _module_file({**environment, compiled.PURE_PYTHON_ENV: "1"}) == str(
        compiled.SOURCE_DIR / "engine_socket.py")


def test_a_hub_running_the_sources_as_python_serves_and_refuses_alike(hub_factory):
    """The sources are the reference: a hub on them acks, and closes on an oversized frame."""
    server = hub_factory({compiled.PURE_PYTHON_ENV: "1"}, name="pure-python")
    assert "transport modules: Python (HUB_PURE_PYTHON=1)" in server.log_path.read_text()
    user = register_user(server)
    client = RecordingClient(server.url)
    client.connect(token=user.token)
    assert client.call("get_rooms") == [f"user:{user.id}"]
    client.close()
    ws, kind, _ = raw_socketio_connect(server.url, user.token)
    assert kind == "40"
    ws.send_frame(websocket.ABNF.create_frame("4" + "x" * 20_000, websocket.ABNF.OPCODE_TEXT))
    closing = ws.recv_frame()
    while closing.opcode != websocket.ABNF.OPCODE_CLOSE:
        closing = ws.recv_frame()
    assert struct.unpack("!H", closing.data[:2])[0] == CLOSE_MESSAGE_TOO_BIG
