"""Connection churn against a live hub: the short soak in the tests and ``make soak``.

Each round connects clients (authenticated), joins rooms, tracks a message,
subscribes to analytics, receives a few events, then disconnects, half of
them abruptly (a TCP reset, no close frame).
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

import requests

from tests.support import LiveServer, RecordingClient, TestUser


@dataclass
class ChurnReport:
    rounds: int = 0
    connects: int = 0
    disconnects: int = 0
    client_errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    rss_after_first_kb: int = 0

    @property
    def churn_per_second(self) -> float:
        return (self.connects + self.disconnects) / self.seconds if self.seconds else 0.0


def reset_connection(client: RecordingClient) -> None:
    """Vanish without a close frame: SO_LINGER 0 makes close() send a TCP reset."""
    ws = client.sio.eio.ws
    raw = ws.sock if ws is not None else None
    if raw is None:
        client.close()
        return
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    raw.close()


def internals(server: LiveServer, admin: TestUser) -> dict:
    return requests.get(f"{server.url}/api/socket/debug/internals",
                        headers={"Authorization": f"Bearer {admin.token}"}, timeout=10).json()


def churn(server: LiveServer, users: list[TestUser], admin: TestUser, message_ids: list[str],
          rounds: int, clients_per_round: int, seconds: float | None = None) -> ChurnReport:
    report = ChurnReport()
    started = time.monotonic()
    while True:
        open_clients = []
        for index in range(clients_per_round):
            user = users[index % len(users)]
            client = RecordingClient(server.url)
            try:
                client.connect(token=user.token)
            except Exception as exc:
                report.client_errors.append(f"connect: {exc} {client.connect_error!r}")
                continue
            report.connects += 1
            open_clients.append((index, client))
        for index, client in open_clients:
            try:
                client.call("join_room", f"room:churn-{index % 5}")
                client.call("subscribe_analytics")
                message_id = message_ids[index % len(message_ids)]
                if users[index % len(users)].id == int(message_id.split(":")[0]):
                    client.call("track_message", message_id.split(":")[1])
                client.wait_for("session", timeout=5)
            except Exception as exc:
                report.client_errors.append(f"events: {exc}")
        for index, client in open_clients:
            if index % 2:
                reset_connection(client)
            else:
                client.close()
            report.disconnects += 1
        report.rounds += 1
        if report.rounds == 1:
            time.sleep(0.5)
            report.rss_after_first_kb = internals(server, admin)["rssKb"]
        elapsed = time.monotonic() - started
        if (seconds is not None and elapsed >= seconds) or (
                seconds is None and report.rounds >= rounds):
            break
    report.seconds = time.monotonic() - started
    return report
