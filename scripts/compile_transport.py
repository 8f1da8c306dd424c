"""Compile the transport's hot modules with Cython into ``build/compiled`` (``make`` runs it).

The sources are compiled as they are, so the build changes no behaviour: the suite runs
against it, and ``HUB_PURE_PYTHON=1`` runs the same files as Python. Nothing is done while
the build is current. A machine without a C compiler gets a warning and runs the sources as
Python; under ``REQUIRE_SERVICES=1`` (CI) a failed build fails instead.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from services.transport import compiled  # noqa: E402


def build(build_dir: Path) -> None:
    """Every module of ``compiled.MODULES`` as an extension, then the manifest, last."""
    from Cython.Build import cythonize
    from setuptools import Distribution, Extension

    shutil.rmtree(build_dir, ignore_errors=True)
    jobs = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="compile-transport-") as scratch:
        extensions = cythonize(
            [Extension(f"services.transport.{name}",
                       [str(compiled.SOURCE_DIR / f"{name}.py")]) for name in compiled.MODULES],
            build_dir=scratch, nthreads=jobs, quiet=True,
            # Annotations stay hints, as in Python: ``int`` is not made a C integer.
            compiler_directives={"language_level": 3, "annotation_typing": False})
        command = Distribution({"ext_modules": extensions}).get_command_obj("build_ext")
        command.build_lib = str(build_dir)
        command.build_temp = scratch
        command.parallel = jobs
        command.ensure_finalized()
        command.run()
    manifest = compiled.manifest_path(build_dir)
    manifest.write_text(json.dumps(compiled.fingerprint(), indent=2) + "\n")


def main() -> int:
    current = compiled.build_state()
    if current == "compiled":
        return 0
    print(f"compiling the transport's hot modules with Cython ({current})", flush=True)
    try:
        build(compiled.BUILD_DIR)
    except Exception as error:  # a missing compiler surfaces as one of several errors
        shutil.rmtree(compiled.BUILD_DIR, ignore_errors=True)
        print(f"the transport could not be compiled ({type(error).__name__}: {error}); "
              "it runs as Python", file=sys.stderr)
        return 1 if os.environ.get("REQUIRE_SERVICES") == "1" else 0
    if compiled.build_state() != "compiled":
        print("the build does not match the sources: were they edited meanwhile?",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
