"""The transport's hot modules, compiled with Cython from these same sources.

An ack round trip runs about thirty Python functions of this package; compiled, they
execute 15 % fewer instructions (BENCHMARKS.md, "The transport compiled"). The build is
an option, never a second version of the code: ``scripts/compile_transport.py`` (run by
``make``) compiles the files listed here unchanged into ``build/compiled`` and writes a
manifest of their hashes. The package looks there first only while the manifest matches
the sources on disk and this interpreter's extension suffix, so an edited file is never
shadowed by a stale build: it runs as Python until the next build.
"""

from __future__ import annotations

import hashlib
import json
import os
import sysconfig
from pathlib import Path

# The modules an event passes through, from the frame to the written ack.
MODULES = ("frames", "packets", "json_input", "rate_limits", "client_manager",
           "engine_socket", "socket_server")
SOURCE_DIR = Path(__file__).resolve().parent
BUILD_DIR = SOURCE_DIR.parent.parent / "build" / "compiled"
# HUB_PURE_PYTHON=1 runs the sources even where a current build exists (a debugger, a
# profiler that follows Python frames, or a comparison).
PURE_PYTHON_ENV = "HUB_PURE_PYTHON"


def fingerprint(source_dir: Path = SOURCE_DIR) -> dict[str, object]:
    """What a build is valid for: this interpreter's extension ABI and each source's hash."""
    return {"ext_suffix": sysconfig.get_config_var("EXT_SUFFIX"),
            "sources": {name: hashlib.sha256((source_dir / f"{name}.py").read_bytes()).hexdigest()
                        for name in MODULES}}


def manifest_path(build_dir: Path = BUILD_DIR) -> Path:
    return build_dir / "manifest.json"


def package_dir(build_dir: Path = BUILD_DIR) -> Path:
    """Where the build puts this package's extension modules."""
    return build_dir / "services" / "transport"


def state() -> str:
    """``compiled``, or why the sources run as Python: ``off``, ``not built``, ``stale``."""
    return "off" if os.environ.get(PURE_PYTHON_ENV) == "1" else build_state()


def build_state(source_dir: Path = SOURCE_DIR, build_dir: Path = BUILD_DIR) -> str:
    """``compiled`` when the build in ``build_dir`` matches the sources, else ``not built``
    or ``stale``."""
    try:
        built = json.loads(manifest_path(build_dir).read_text())
    except (OSError, ValueError):
        return "not built"
    current = fingerprint(source_dir)
    if {key: built.get(key) for key in current} != current:
        return "stale"
    suffix = current["ext_suffix"]
    if not all((package_dir(build_dir) / f"{name}{suffix}").is_file() for name in MODULES):
        return "not built"
    return "compiled"



# What the start-up log says of each state.
EXPLAINED = {
    "compiled": "compiled (build/compiled)",
    "off": f"Python ({PURE_PYTHON_ENV}=1)",
    "not built": "Python (not compiled: `make compiled` builds it)",
    "stale": "Python (the build is older than the sources: `make compiled` rebuilds it)",
}
