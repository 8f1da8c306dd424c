"""The fake SMSC as the tests see it: start ``smsc/smsc.mjs`` under Node, then drive it.

The SMPP side is the ``smpp`` npm package's server (its PDU codec, independent of the
Python client the hub uses), so a test proves the hub's SMPP code against a real
implementation of the protocol. This module only starts the server, installs its
locked npm packages on first use, and wraps its HTTP control API.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.fakes.eventlog import read_log
from tests.fakes.process import ControlApi, start_fake, stop_fake

SMSC_DIR = Path(__file__).resolve().parent / "smsc"
THROTTLED = 0x58
MESSAGE_QUEUE_FULL = 0x14
INVALID_DESTINATION = 0x0B


def node_available() -> bool:
    return shutil.which("node") is not None and shutil.which("npm") is not None


def install_smsc_packages() -> None:
    """``npm ci`` from the lockfile, once per checkout, as tests/js does for its client."""
    if not (SMSC_DIR / "node_modules" / "smpp").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=SMSC_DIR, check=True,
                       capture_output=True, timeout=300)


class FakeSmsc:
    """A running fake SMSC: an SMPP port for the client, an HTTP port for the test."""

    host = "127.0.0.1"

    def __init__(self, process: subprocess.Popen, smpp_port: int, control_port: int,
                 system_id: str, password: str, log_path: Path) -> None:
        self.process = process
        self.port = smpp_port
        self.system_id = system_id
        self.password = password
        self.log_path = log_path
        self._control = ControlApi(f"http://127.0.0.1:{control_port}")

    @classmethod
    def start(cls, log_path: Path, *, system_id: str = "hub", password: str = "secret1",
              timeout: float = 15.0) -> FakeSmsc:
        """Start the server (``install_smsc_packages`` first); the log goes to ``log_path``."""
        process, ready = start_fake(
            ["node", "smsc.mjs", "--system-id", system_id, "--password", password,
             "--log", str(log_path)], cwd=SMSC_DIR, log_path=log_path, timeout=timeout)
        return cls(process, ready["smpp_port"], ready["control_port"], system_id, password,
                   log_path)

    def stop(self) -> None:
        stop_fake(self.process)
        self._control.close()

    def configure(self, **settings: Any) -> dict:
        """Change settings (``id_format``, ``receipt_form``, ``stats``...: see the README)."""
        return self._control.post("config", **settings)

    def fail(self, dest: str, kind: str, *, status: int | None = None,
             delay_ms: int | None = None, times: int | None = None) -> None:
        """Every submit_sm to ``dest`` (or the next ``times``) meets this fault."""
        self._control.post("fault", dest=dest, kind=kind, status=status, delay_ms=delay_ms,
                           times=times)

    def script(self, *faults: str | dict) -> None:
        """The next submit_sm PDUs, whatever their destination, meet these faults in turn."""
        self._control.post("script", faults=list(faults))

    def reset(self) -> None:
        """Default settings, no faults; the log and the binds stay."""
        self._control.post("reset")

    def send_receipt(self, message_id: str, stat: str = "DELIVRD", *, err: str | None = None,
                     form: str | None = None, receipt_id_format: str | None = None) -> None:
        """Queue one more receipt for an accepted message (delivered on a receiving bind)."""
        self._control.post("receipt", message_id=message_id, stat=stat, err=err, form=form,
                           receipt_id_format=receipt_id_format)

    def send_mo(self, source: str, dest: str, text: str) -> dict:
        """A mobile-originated deliver_sm; returns its log line with the ESME's resp status."""
        return self._control.post("mo", source=source, dest=dest, text=text)

    def send_pdu(self, command_id: int, body: bytes = b"", *, status: int = 0,
                 length: int | None = None) -> dict:
        """Raw bytes as one PDU to a bound receiver (``length`` overrides the header's
        command_length); returns its log line with the answer's command and status."""
        return self._control.post("pdu", command_id=command_id, command_status=status,
                                  body_hex=body.hex(), command_length=length)

    def unbind_all(self) -> None:
        """The SMSC unbinds every bound session now, and closes each soon after."""
        self._control.post("unbind")

    def drop_all(self) -> None:
        """Reset every TCP connection now, without a word."""
        self._control.post("drop")

    def events(self) -> list[dict]:
        """The event log, from the running server, or from its file once it has stopped."""
        if self.process.poll() is not None:
            return read_log(self.log_path)
        return self._control.get("state")["events"]

    def submissions(self) -> list[dict]:
        return [event for event in self.events() if event["event"] == "submit"]

    def receipts(self) -> list[dict]:
        return [event for event in self.events() if event["event"] == "receipt"]
