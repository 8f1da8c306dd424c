"""A fake Twilio Programmable Messaging API on loopback, for the hub's provider tests.

It speaks the Messages API the way the official ``twilio`` SDK calls it, answers
with Twilio's JSON resources and error bodies, and posts status callbacks and
inbound messages signed by the SDK's own ``RequestValidator``: the hub's Twilio
code meets the wire protocol, not a mock of itself. Faults (throttling,
rejections, 5xx, a connection dropped after the request was read, an answer
slower than the client's timeout) are switched on per destination number or as
a scripted sequence through a control API under ``/_fake/``. That API is the
same whether the fake runs in a thread of the test process or as a process of
its own (``python -m tests.fakes.twilio_api``), which a test needs when it kills
the hub mid-send and still reads the fake's log afterwards.
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import heapq
import hmac
import itertools
import json
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from smpplib.gsm import make_parts
from twilio.request_validator import RequestValidator

from tests.fakes.eventlog import read_log
from tests.fakes.process import ControlApi, start_fake, stop_fake

ROOT = Path(__file__).resolve().parents[2]
API_VERSION = "2010-04-01"
SERVICE_SENDER = "+15017122661"
PRICE_PER_SEGMENT = "-0.00790"
ERROR_DOCS = "https://www.twilio.com/docs/errors/{code}"

# kind -> (HTTP status, Twilio error code, message); {to} is the destination.
ERRORS: dict[str, tuple[int, int, str]] = {
    "429": (429, 20429, "Too Many Requests"),
    "500": (500, 20500, "An internal server error has occurred"),
    "503": (503, 20503, "Service unavailable"),
    "21211": (400, 21211, "The 'To' number {to} is not a valid phone number."),
    "21408": (400, 21408, "Permission to send an SMS has not been enabled for the region "
                          "indicated by the 'To' number: {to}."),
    "21610": (400, 21610, "Attempt to send to unsubscribed recipient"),
    "21614": (400, 21614, "'To' number {to} is not a valid mobile number"),
}
ACCEPTING_KINDS = {"ok", "drop", "slow"}
FAULT_KINDS = set(ERRORS) | ACCEPTING_KINDS
FINAL_STATUSES = {"delivered", "undelivered", "failed"}
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
MESSAGES_PATH = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages\.json$")
MESSAGE_PATH = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages/([^/]+)\.json$")


def new_sid(prefix: str) -> str:
    """A Twilio-shaped sid: two letters and 32 hex digits."""
    return prefix + uuid.uuid4().hex


def rfc2822_now() -> str:
    return format_datetime(datetime.now(UTC).replace(microsecond=0))


def segment_count(body: str) -> int:
    """Segments as a GSM-7 / UCS-2 network counts them, from smpplib's splitter."""
    return len(make_parts(body)[0])


@dataclass
class Fault:
    """What the fake does with one submission: accept it, or one of the faults."""

    kind: str = "ok"
    retry_after: int = 1
    delay: float = 5.0

    @classmethod
    def parse(cls, spec: str | dict) -> Fault:
        spec = {"kind": spec} if isinstance(spec, str) else dict(spec)
        fault = cls(kind=str(spec.pop("kind")), **spec)
        if fault.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {fault.kind!r}; one of {sorted(FAULT_KINDS)}")
        return fault


class TwilioState:
    """Everything the fake knows: messages, switches, and the event log."""

    def __init__(self, account_sid: str, auth_token: str, log_path: Path | None) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.validator = RequestValidator(auth_token)
        self.lock = threading.Lock()
        self.log_path = log_path
        self.events: list[dict] = []
        self.messages: dict[str, dict] = {}
        self.script: collections.deque[Fault] = collections.deque()
        self.by_destination: dict[str, list] = {}  # to -> [Fault, remaining or None]
        self.outcomes: dict[str, tuple[str, int | None]] = {}
        self.per_second: int | None = None
        self.recent: collections.deque[float] = collections.deque()
        self.auto_callbacks = True
        self.callback_delay = 0.02
        self.routes: list[tuple[str, str]] = []
        self.callbacks = CallbackQueue(self)

    def record(self, event: dict) -> None:
        event = {"ts": time.time(), **event}
        with self.lock:
            self.events.append(event)
            if self.log_path is not None:
                with self.log_path.open("a") as log:
                    log.write(json.dumps(event) + "\n")

    def next_fault(self, to: str) -> Fault:
        """The scripted sequence first, then the destination's fault, then the rate limit."""
        with self.lock:
            if self.script:
                return self.script.popleft()
            entry = self.by_destination.get(to)
            if entry is not None:
                fault, remaining = entry
                if remaining is not None:
                    entry[1] -= 1
                    if entry[1] <= 0:
                        del self.by_destination[to]
                return fault
            if self.per_second is not None:
                now = time.monotonic()
                while self.recent and now - self.recent[0] >= 1.0:
                    self.recent.popleft()
                if len(self.recent) >= self.per_second:
                    return Fault("429")
                self.recent.append(now)
        return Fault("ok")

    def deliver_url(self, url: str) -> str:
        """Where a callback for ``url`` really goes (signed over ``url`` all the same)."""
        for public, actual in self.routes:
            if url.startswith(public):
                return actual + url[len(public):]
        return url

    def post_signed(self, url: str, params: dict[str, str], signature: str) -> dict:
        headers = {"I-Twilio-Idempotency-Token": uuid.uuid4().hex,
                   "User-Agent": "TwilioProxy/1.1"}
        if signature == "valid":
            headers["X-Twilio-Signature"] = self.validator.compute_signature(url, params)
        elif signature == "forged":
            forger = RequestValidator(self.auth_token + "-forged")
            headers["X-Twilio-Signature"] = forger.compute_signature(url, params)
        elif signature != "missing":
            raise ValueError("signature is one of valid, forged, missing")
        try:
            answer = requests.post(self.deliver_url(url), data=params, headers=headers,
                                   timeout=10)
        except requests.RequestException as error:
            return {"http_status": None, "error": repr(error)}
        return {"http_status": answer.status_code, "body": answer.text,
                "content_type": answer.headers.get("Content-Type")}

    def status_params(self, message: dict, status: str, error_code: int | None) -> dict:
        params = {
            "SmsSid": message["sid"], "SmsStatus": status, "MessageStatus": status,
            "MessageSid": message["sid"], "AccountSid": self.account_sid,
            "To": message["to"], "From": message["from"] or SERVICE_SENDER,
            "ApiVersion": API_VERSION,
        }
        if message["messaging_service_sid"]:
            params["MessagingServiceSid"] = message["messaging_service_sid"]
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        if status == "delivered":
            params["RawDlrDoneDate"] = datetime.now(UTC).strftime("%y%m%d%H%M")
        return params

    def send_status(self, sid: str, status: str, *, error_code: int | None = None,
                    url: str | None = None, signature: str = "valid") -> dict:
        with self.lock:
            message = self.messages[sid]
            message["status"] = status
            message["date_updated"] = rfc2822_now()
            if status in {"sent", "delivered", "undelivered"}:
                message["date_sent"] = message["date_sent"] or message["date_updated"]
                segments = int(message["num_segments"])
                message["price"] = f"{float(PRICE_PER_SEGMENT) * segments:.5f}"
            if error_code is not None:
                message["error_code"] = error_code
        target = url or message["status_callback"]
        if not target:
            return {"http_status": None, "error": "no StatusCallback"}
        answer = self.post_signed(target, self.status_params(message, status, error_code),
                                  signature)
        self.record({"event": "callback", "kind": "status", "sid": sid, "status": status,
                     "error_code": error_code, "url": target, "signature": signature,
                     **answer})
        return answer

    def send_inbound(self, url: str, *, from_: str, to: str, body: str,
                     signature: str = "valid", messaging_service_sid: str | None = None) -> dict:
        sid = new_sid("SM")
        params = {
            "ToCountry": "", "ToState": "", "SmsMessageSid": sid, "NumMedia": "0",
            "ToCity": "", "FromZip": "", "SmsSid": sid, "FromState": "",
            "SmsStatus": "received", "FromCity": "", "Body": body, "FromCountry": "",
            "To": to, "ToZip": "", "NumSegments": str(segment_count(body)),
            "MessageSid": sid, "AccountSid": self.account_sid, "From": from_,
            "ApiVersion": API_VERSION,
        }
        if messaging_service_sid:  # Twilio adds it for a number in a service's pool
            params["MessagingServiceSid"] = messaging_service_sid
        answer = self.post_signed(url, params, signature)
        self.record({"event": "callback", "kind": "inbound", "sid": sid, "from": from_,
                     "to": to, "body": body, "url": url, "signature": signature, **answer})
        return {"sid": sid, **answer}

    def control(self, action: str, body: dict) -> dict:
        """One ``POST /_fake/<action>`` of the control API."""
        if action == "faults":
            fault = Fault.parse({key: body[key] for key in body if key not in {"to", "times"}})
            with self.lock:
                self.by_destination[body["to"]] = [fault, body.get("times")]
        elif action == "script":
            faults = [Fault.parse(spec) for spec in body["faults"]]
            with self.lock:
                self.script.extend(faults)
        elif action == "rate_limit":
            with self.lock:
                self.per_second = body.get("per_second")
                self.recent.clear()
        elif action == "outcome":
            if body["status"] not in FINAL_STATUSES:
                raise ValueError(f"a final status is one of {sorted(FINAL_STATUSES)}")
            with self.lock:
                self.outcomes[body["to"]] = (body["status"], body.get("error_code"))
        elif action == "settings":
            with self.lock:
                self.auto_callbacks = bool(body.get("auto_callbacks", self.auto_callbacks))
                self.callback_delay = float(body.get("callback_delay", self.callback_delay))
        elif action == "route":
            with self.lock:
                self.routes.append((body["public"], body["actual"]))
        elif action == "status":
            return self.send_status(body["sid"], body["status"],
                                    error_code=body.get("error_code"), url=body.get("url"),
                                    signature=body.get("signature", "valid"))
        elif action == "inbound":
            return self.send_inbound(body["url"], from_=body["from"], to=body["to"],
                                     body=body["body"], signature=body.get("signature", "valid"),
                                     messaging_service_sid=body.get("messaging_service_sid"))
        else:
            raise KeyError(f"no control action {action}")
        return {"ok": True}


class CallbackQueue:
    """Status callbacks due later: a few workers post them, each message's in order."""

    WORKERS = 4

    def __init__(self, state: TwilioState) -> None:
        self.state = state
        self.heap: list[tuple[float, int, str, list]] = []
        self.order = itertools.count()
        self.ready = threading.Condition()
        self.stopped = False

    def start(self) -> None:
        for _ in range(self.WORKERS):
            threading.Thread(target=self._work, daemon=True).start()

    def stop(self) -> None:
        with self.ready:
            self.stopped = True
            self.ready.notify_all()

    def schedule(self, sid: str, statuses: list[tuple[str, int | None]]) -> None:
        """Post ``statuses`` one after the other, ``callback_delay`` apart."""
        with self.ready:
            heapq.heappush(self.heap, (time.monotonic() + self.state.callback_delay,
                                       next(self.order), sid, statuses))
            self.ready.notify()

    def _work(self) -> None:
        while True:
            with self.ready:
                while not self.stopped and (not self.heap
                                            or self.heap[0][0] > time.monotonic()):
                    self.ready.wait(self.heap[0][0] - time.monotonic() if self.heap else None)
                if self.stopped:
                    return
                _, _, sid, statuses = heapq.heappop(self.heap)
            status, error_code = statuses[0]
            self.state.send_status(sid, status, error_code=error_code)
            if statuses[1:]:
                self.schedule(sid, statuses[1:])


class TwilioHandler(BaseHTTPRequestHandler):
    """The Messages API, as the SDK calls it, and the ``/_fake/`` control API."""

    protocol_version = "HTTP/1.1"
    server: TwilioServer

    def log_message(self, *args: Any) -> None:
        """Quiet: the event log says what happened."""

    @property
    def state(self) -> TwilioState:
        return self.server.state

    def _send(self, status: int, payload: Any, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Twilio-Request-Id", new_sid("RQ"))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: int, message: str,
               headers: dict | None = None, **extra: Any) -> None:
        self._send(status, {"code": code, "message": message,
                            "more_info": ERROR_DOCS.format(code=code), "status": status,
                            **extra}, headers)

    def _not_found(self, path: str) -> None:
        self._error(404, 20404, f"The requested resource {path} was not found")

    def _authenticated(self) -> bool:
        scheme, _, encoded = (self.headers.get("Authorization") or "").partition(" ")
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            return False
        return (scheme.lower() == "basic"
                and hmac.compare_digest(user, self.state.account_sid)
                and hmac.compare_digest(password, self.state.auth_token))

    def _refuse_unauthenticated(self) -> bool:
        if self._authenticated():
            return False
        self._error(401, 20003, "Authenticate", {"WWW-Authenticate": 'Basic realm="Twilio API"'},
                    detail="Your AccountSid or AuthToken was incorrect.")
        return True

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/_fake/log":
            with self.state.lock:
                events = list(self.state.events)
            self._send(200, {"events": events})
            return
        match = MESSAGE_PATH.match(path)
        if match is None:
            self._not_found(path)
            return
        if self._refuse_unauthenticated():
            return
        with self.state.lock:
            message = self.state.messages.get(match.group(2))
            if match.group(1) != self.state.account_sid:
                message = None
            found = {key: value for key, value in (message or {}).items()
                     if key != "status_callback"}
        if found:
            self._send(200, found)
        else:
            self._not_found(path)

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if path.startswith("/_fake/"):
            try:
                answer = self.state.control(path.removeprefix("/_fake/"), json.loads(body or b"{}"))
            except (KeyError, TypeError, ValueError) as error:
                self._send(400, {"error": str(error)})
                return
            self._send(200, answer)
            return
        match = MESSAGES_PATH.match(path)
        if match is None:
            self._not_found(path)
            return
        if self._refuse_unauthenticated():
            return
        if match.group(1) != self.state.account_sid:
            self._not_found(path)
            return
        form = {name: values[0] for name, values in
                parse_qs(body.decode(), keep_blank_values=True).items()}
        self._create_message(form)

    def _create_message(self, form: dict[str, str]) -> None:
        to, sender = form.get("To", ""), form.get("From") or None
        service = form.get("MessagingServiceSid") or None
        text = form.get("Body", "")
        if not to:
            self._error(400, 21604, "A 'To' phone number is required.")
            return
        if not sender and not service:
            self._error(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required "
                                    "to send a message.")
            return
        if not text:
            self._error(400, 21602, "Message body is required.")
            return
        if len(text) > 1600:
            self._error(400, 21617, "The concatenated message body exceeds the 1600 character "
                                    "limit.")
            return
        fault = self.state.next_fault(to) if E164.match(to) else Fault("21211")
        submission = {"event": "submit", "to": to, "from": sender,
                      "messaging_service_sid": service, "body": text,
                      "status_callback": form.get("StatusCallback") or None,
                      "outcome": fault.kind, "accepted": fault.kind in ACCEPTING_KINDS}
        if fault.kind in ERRORS:
            status, code, message = ERRORS[fault.kind]
            self.state.record({**submission, "sid": None, "http_status": status})
            headers = {"Retry-After": str(fault.retry_after)} if status == 429 else None
            self._error(status, code, message.format(to=to), headers)
            return
        message = self._store(submission)
        self.state.record({**submission, "sid": message["sid"], "http_status": 201,
                           "num_segments": int(message["num_segments"])})
        self._schedule_callbacks(message, submission["status_callback"])
        if fault.kind == "drop":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault.kind == "slow":
            time.sleep(fault.delay)
        self._send(201, message)

    def _store(self, submission: dict) -> dict:
        """Keep the new message; answer with its resource, as Twilio's 201 does."""
        sid, now = new_sid("SM"), rfc2822_now()
        uri = f"/{API_VERSION}/Accounts/{self.state.account_sid}/Messages/{sid}"
        message = {
            "account_sid": self.state.account_sid, "api_version": API_VERSION,
            "body": submission["body"], "date_created": now, "date_sent": None,
            "date_updated": now, "direction": "outbound-api", "error_code": None,
            "error_message": None, "from": submission["from"],
            "messaging_service_sid": submission["messaging_service_sid"], "num_media": "0",
            "num_segments": str(segment_count(submission["body"])), "price": None,
            "price_unit": "USD", "sid": sid,
            "status": "queued" if submission["from"] else "accepted",
            "subresource_uris": {"media": f"{uri}/Media.json",
                                 "feedback": f"{uri}/Feedback.json"},
            "to": submission["to"], "uri": f"{uri}.json",
        }
        with self.state.lock:
            self.state.messages[sid] = {**message,
                                        "status_callback": submission["status_callback"]}
        return message

    def _schedule_callbacks(self, message: dict, status_callback: str | None) -> None:
        if not self.state.auto_callbacks or not status_callback:
            return
        final, error_code = self.state.outcomes.get(message["to"], ("delivered", None))
        steps = [(final, error_code)] if final == "failed" else [("sent", None),
                                                                   (final, error_code)]
        self.state.callbacks.schedule(message["sid"], steps)


class TwilioServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, state: TwilioState, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), TwilioHandler)
        self.state = state


class FakeTwilio:
    """A running fake, driven through its control API, whichever way it was started."""

    def __init__(self, port: int, account_sid: str, auth_token: str, log_path: Path | None,
                 *, server: TwilioServer | None = None,
                 process: subprocess.Popen | None = None) -> None:
        self.port = port
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.log_path = log_path
        self._server = server
        self.process = process
        self._control = ControlApi(f"http://127.0.0.1:{port}/_fake")

    @property
    def api_base(self) -> str:
        """What ``TWILIO_API_BASE`` points at: this fake instead of https://api.twilio.com."""
        return f"http://127.0.0.1:{self.port}"

    @staticmethod
    def _credentials(account_sid: str | None, auth_token: str | None) -> tuple[str, str]:
        return account_sid or new_sid("AC"), auth_token or uuid.uuid4().hex

    @classmethod
    def start_thread(cls, log_path: Path | None = None, *, account_sid: str | None = None,
                     auth_token: str | None = None) -> FakeTwilio:
        """In this process: cheapest, for tests that do not kill anything."""
        account_sid, auth_token = cls._credentials(account_sid, auth_token)
        state = TwilioState(account_sid, auth_token, log_path)
        server = TwilioServer(state)
        state.callbacks.start()
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return cls(server.server_address[1], account_sid, auth_token, log_path, server=server)

    @classmethod
    def start_process(cls, log_path: Path, *, account_sid: str | None = None,
                      auth_token: str | None = None, timeout: float = 15.0) -> FakeTwilio:
        """A process of its own that outlives whatever the test kills; logs to ``log_path``."""
        account_sid, auth_token = cls._credentials(account_sid, auth_token)
        process, ready = start_fake(
            [sys.executable, "-m", "tests.fakes.twilio_api", "--account-sid", account_sid,
             "--auth-token", auth_token, "--log", str(log_path)],
            cwd=ROOT, log_path=log_path, timeout=timeout)
        return cls(ready["port"], account_sid, auth_token, log_path, process=process)

    def stop(self) -> None:
        if self._server is not None:
            self._server.state.callbacks.stop()
            self._server.shutdown()
            self._server.server_close()
        if self.process is not None:
            stop_fake(self.process)
        self._control.close()

    def fail(self, to: str, kind: str, *, times: int | None = None, retry_after: int = 1,
             delay: float = 5.0) -> None:
        """Every submission to ``to`` (or the next ``times``) meets this fault."""
        self._control.post("faults", to=to, kind=kind, times=times, retry_after=retry_after,
                           delay=delay)

    def script(self, *faults: str | dict) -> None:
        """The next submissions, whatever their destination, meet these faults in turn."""
        self._control.post("script", faults=list(faults))

    def rate_limit(self, per_second: int | None) -> None:
        """Answer 429 past ``per_second`` accepted submissions in any one second."""
        self._control.post("rate_limit", per_second=per_second)

    def finish_with(self, to: str, status: str, error_code: int | None = None) -> None:
        """The final status callback for messages to ``to`` (default ``delivered``)."""
        self._control.post("outcome", to=to, status=status, error_code=error_code)

    def settings(self, *, auto_callbacks: bool | None = None,
                 callback_delay: float | None = None) -> None:
        self._control.post("settings", auto_callbacks=auto_callbacks,
                           callback_delay=callback_delay)

    def route(self, public: str, actual: str) -> None:
        """Post callbacks for URLs under ``public`` to ``actual``, still signed over ``public``."""
        self._control.post("route", public=public, actual=actual)

    def send_status(self, sid: str, status: str, *, error_code: int | None = None,
                    url: str | None = None, signature: str = "valid") -> dict:
        """Post one status callback now; ``signature`` is valid, forged or missing."""
        return self._control.post("status", sid=sid, status=status, error_code=error_code,
                                  url=url, signature=signature)

    def send_inbound(self, url: str, *, from_: str, to: str, body: str,
                     signature: str = "valid", messaging_service_sid: str | None = None) -> dict:
        """Post an inbound SMS as Twilio's messaging webhook does; returns the hub's answer."""
        return self._control.post("inbound", url=url, to=to, body=body, signature=signature,
                                  messaging_service_sid=messaging_service_sid,
                                  **{"from": from_})

    def events(self) -> list[dict]:
        """The event log, from the running fake, or from its file once it has stopped."""
        if self.process is not None and self.process.poll() is not None:
            return read_log(self.log_path)
        return self._control.get("log")["events"]

    def submissions(self, *, accepted: bool | None = None) -> list[dict]:
        return [event for event in self.events() if event["event"] == "submit"
                and (accepted is None or event["accepted"] is accepted)]

    def callbacks(self) -> list[dict]:
        return [event for event in self.events() if event["event"] == "callback"]


def _shutdown_when_stdin_closes(server: TwilioServer) -> None:
    """The test process holds our stdin: when it closes it, or dies, this fake ends."""
    sys.stdin.read()
    server.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--account-sid", required=True)
    parser.add_argument("--auth-token", required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    state = TwilioState(args.account_sid, args.auth_token, args.log)
    server = TwilioServer(state, args.port)
    state.callbacks.start()
    threading.Thread(target=_shutdown_when_stdin_closes, args=(server,), daemon=True).start()
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    server.serve_forever(poll_interval=0.05)
    state.callbacks.stop()


if __name__ == "__main__":
    main()
