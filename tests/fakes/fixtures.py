"""Pytest fixtures for the fakes of outside systems, loaded by ``tests/conftest.py``.

A provider test asks for ``fake_twilio`` (in this process), ``fake_twilio_process``
(a process of its own, for tests that kill the hub) or ``fake_smsc``; each is new
per test, logs to the test's ``tmp_path`` and is stopped after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.smsc import FakeSmsc, install_smsc_packages, node_available
from tests.fakes.twilio_api import FakeTwilio
from tests.support import require_service


@pytest.fixture
def fake_twilio(tmp_path: Path) -> Iterator[FakeTwilio]:
    fake = FakeTwilio.start_thread(tmp_path / "fake-twilio.jsonl")
    yield fake
    fake.stop()


@pytest.fixture
def fake_twilio_process(tmp_path: Path) -> Iterator[FakeTwilio]:
    fake = FakeTwilio.start_process(tmp_path / "fake-twilio.jsonl")
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def smsc_packages() -> None:
    """The fake SMSC's npm packages: skipped without Node, failed under REQUIRE_SERVICES=1."""
    require_service("Node.js and npm", node_available(),
                    "the fake SMSC is the smpp npm package's server")
    install_smsc_packages()


@pytest.fixture
def fake_smsc(smsc_packages: None, tmp_path: Path) -> Iterator[FakeSmsc]:
    fake = FakeSmsc.start(tmp_path / "fake-smsc.jsonl")
    yield fake
    fake.stop()
