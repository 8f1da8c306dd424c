"""Every code sample in README.md and docs/*.md runs as printed, against a live hub.

A document's samples run in order, as a reader pasting them would:

- shell samples in one bash session from the checkout: variables carry over
  (and are exported, so programs started later see them), the project's venv
  is on ``PATH`` as an activated one puts it;
- the document's JavaScript samples as one ES module under Node, with the
  pinned socket.io-client of tests/js, started where the first one appears and
  left running while the later samples run (a reader's ``node watch.mjs &``):
  the samples after it wait for its first line of output, and it must end by
  itself with status 0 and nothing on stderr;
- Python samples with the project's venv, from the checkout.

The session starts with what the README asks a reader to set: ``HUB``,
``EMAIL`` and ``PASSWORD``, here the test hub's address and its admin (user 1,
as the demo admin is on a fresh install), and ``HUB_ENV``/``DATABASE_URL``,
which docs/deployment.md's node exports, here the test hub's. The test is
stricter than a terminal: bash runs with ``-euo pipefail`` and ``curl`` fails
on an HTTP error status.

A sample that cannot run here says so in its fence (```` ```LANG skip: why ````);
each is listed as a skipped test with that reason.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import (
    ADMIN_PASSWORD,
    ROOT,
)

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL, JAVASCRIPT, PYTHON = "shell", "javascript", "python"
LANGUAGES = {"sh": SHELL, "bash": SHELL, "javascript": JAVASCRIPT, "js": JAVASCRIPT,
             "python": PYTHON}
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
# Before each shell sample: strict mode, every assignment exported, curl failing on 4xx/5xx.
SHELL_PRELUDE = 'set -euo pipefail -a\ncurl() { command curl --fail-with-body "$@"; }\n'
STARTED_TIMEOUT = 15
FINISHED_TIMEOUT = 30


@dataclass(frozen=True)
class Sample:
    document: str
    line: int
    language: str
    skip: str | None
    code: str

    @property
    def name(self) -> str:
        return f"{self.document}:{self.line}"


def _samples(path: Path) -> list[Sample]:
    text = path.read_text()
    samples = []
    for match in FENCE.finditer(text):
        language, _, marker = match.group(1).strip().partition(" ")
        marker = marker.strip()
        skip = marker.removeprefix("skip:").strip() if marker.startswith("skip:") else None
        samples.append(Sample(str(path.relative_to(ROOT)), text.count("\n", 0, match.start()) + 1,
                              language, skip, match.group(2)))
    return samples


ALL_SAMPLES = [sample for path in DOCUMENTS for sample in _samples(path)]


@pytest.mark.parametrize("sample", [s for s in ALL_SAMPLES if s.skip is not None],
                         ids=lambda sample: sample.name)
def test_sample_marked_not_to_run(sample):
    """The list of samples not run, each with the reason its fence gives."""
    assert sample.skip, f"{sample.name}: say why after 'skip:'"
    pytest.skip(f"{sample.name} ({sample.language}): {sample.skip}")


def test_every_sample_runs_or_says_why_not():
    unmarked = [f"{sample.name} (```{sample.language})" for sample in ALL_SAMPLES
                if sample.skip is None and sample.language not in LANGUAGES]
    assert unmarked == [], "runnable only as sh, javascript or python; else mark the fence " \
                           f"```LANG skip: why: {unmarked}"


@pytest.fixture(scope="module")
def docs_hub(module_hub_factory):
    """A fresh hub: its admin is user 1, as the demo admin of a fresh install is."""
    return module_hub_factory(name="docs")


class Reader:
    """Runs one document's samples in order, keeping what a reader's terminal keeps."""

    def __init__(self, env: dict[str, str], workdir: Path, js_modules: Path) -> None:
        self.env = env
        self.workdir = workdir
        self.js_modules = js_modules
        self.node: subprocess.Popen | None = None
        self.node_output: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self.node_spoke = threading.Event()

    def shell(self, sample: Sample) -> None:
        state = self.workdir / "environment"
        script = self.workdir / "sample.sh"
        script.write_text(f"{SHELL_PRELUDE}{sample.code}\nenv -0 > {state}\n")
        run = subprocess.run(["bash", str(script)], cwd=ROOT, env=self.env, capture_output=True,
                             text=True, timeout=60)
        assert run.returncode == 0, \
            f"{sample.name} exited {run.returncode}:\n{run.stdout}\n{run.stderr}"
        self.env = dict(entry.split("=", 1) for entry in
                        state.read_text().split("\0") if "=" in entry)

    def python(self, sample: Sample) -> None:
        run = subprocess.run([sys.executable, "-"], input=sample.code, cwd=ROOT, env=self.env,
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, f"{sample.name}:\n{run.stdout}\n{run.stderr}"

    def start_javascript(self, samples: list[Sample]) -> None:
        """The document's JavaScript as one module, running beside the later samples."""
        module = self.workdir / "samples.mjs"
        module.write_text("\n".join(sample.code for sample in samples))
        (self.workdir / "node_modules").symlink_to(self.js_modules)
        self.node = subprocess.Popen(["node", str(module)], cwd=self.workdir, env=self.env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for stream in ("stdout", "stderr"):
            threading.Thread(target=self._collect, args=(stream,), daemon=True).start()
        self.node_spoke.wait(STARTED_TIMEOUT)

    def _collect(self, stream: str) -> None:
        for line in getattr(self.node, stream):
            self.node_output[stream].append(line)
            self.node_spoke.set()
        self.node_spoke.set()

    def finish_javascript(self, first: Sample) -> None:
        try:
            code = self.node.wait(timeout=FINISHED_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.node.kill()
            code = self.node.wait()
        output = "".join(self.node_output["stdout"])
        errors = "".join(self.node_output["stderr"])
        assert code == 0 and errors == "", \
            f"the JavaScript from {first.name} on exited {code}:\n{output}\n{errors}"


def _documents_with_samples() -> list[str]:
    return sorted({sample.document for sample in ALL_SAMPLES if sample.skip is None})


@pytest.mark.parametrize("document", _documents_with_samples())
def test_document_samples_run_as_printed(document, docs_hub, js_modules, tmp_path):
    samples = [sample for sample in ALL_SAMPLES
               if sample.document == document and sample.skip is None]
    env = {**os.environ,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "HUB": docs_hub.url, "EMAIL": docs_hub.admin_email, "PASSWORD": ADMIN_PASSWORD,
           "HUB_ENV": "testing", "DATABASE_URL": docs_hub.database_url}
    env.pop("SOCKETIO_MESSAGE_QUEUE", None)
    reader = Reader(env, tmp_path, js_modules)
    scripts = [sample for sample in samples if LANGUAGES[sample.language] == JAVASCRIPT]
    for sample in samples:
        kind = LANGUAGES[sample.language]
        if kind == SHELL:
            reader.shell(sample)
        elif kind == PYTHON:
            reader.python(sample)
        elif sample is scripts[0]:
            reader.start_javascript(scripts)
    if scripts:
        reader.finish_javascript(scripts[0])
