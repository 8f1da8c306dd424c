"""Slowloris: connections that never finish a request head are closed, nothing else is.

gevent's server waited for a request head as long as the client took: a
thousand connections each sending half a header stayed open for good. The
hub here gives a connection ``HTTP_HEADER_TIMEOUT`` (2 s in these tests) to
send a whole head, from its accept or from its previous response.
"""

import resource
import socket
import threading
import time

import pytest

from tests.support import (
    AckProbe,
    PollingClient,
    RecordingClient,
    assert_acks_stay_flat,
    register_user,
    rss_kb,
)

HEADER_TIMEOUT = 2.0
ATTACKERS = 1000
# Halves of a request: within the request line, and after it with one header line.
HALF_HEADS = [b"GET /api/socket/online-co", b"GET /api/socket/online-count HTTP/1.1\r\nHost: x\r\n"]


@pytest.fixture(scope="module")
def impatient_hub(module_hub_factory):
    return module_hub_factory({"HTTP_HEADER_TIMEOUT": str(HEADER_TIMEOUT)}, name="impatient")


@pytest.fixture
def many_descriptors():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2 * ATTACKERS + 200:
        pytest.skip(f"the descriptor limit ({hard}) is below {2 * ATTACKERS + 200}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _answered_or_closed(sock: socket.socket) -> bytes | None:
    """What the server sent before closing (b"" for nothing), or None while it is open."""
    try:
        data = sock.recv(4096)
    except BlockingIOError:
        return None
    except OSError:
        return b""
    if data:
        sock.setblocking(True)
        sock.settimeout(1)
        try:
            while sock.recv(4096):
                pass
        except OSError:
            pass
    return data


def test_a_thousand_half_sent_heads_are_closed_after_the_header_timeout(impatient_hub,
                                                                        many_descriptors):
    user = register_user(impatient_hub)
    calm = RecordingClient(impatient_hub.url)
    calm.connect(token=user.token)
    baseline = AckProbe.baseline(calm)
    rss_before = rss_kb(impatient_hub.process.pid)
    attackers: list[socket.socket] = []
    answers: dict[int, bytes] = {}
    try:
        with AckProbe(calm) as during:
            started = time.monotonic()
            for number in range(ATTACKERS):
                sock = socket.create_connection(("127.0.0.1", impatient_hub.port), timeout=10)
                sock.sendall(HALF_HEADS[number % 2])
                sock.setblocking(False)
                attackers.append(sock)
            deadline = started + HEADER_TIMEOUT + 15
            while len(answers) < ATTACKERS and time.monotonic() < deadline:
                for number, sock in enumerate(attackers):
                    if number in answers:
                        continue
                    answer = _answered_or_closed(sock)
                    if answer is None:
                        # One more byte now and then: the deadline is for the whole head,
                        # not for each read.
                        try:
                            sock.send(b"x")
                        except OSError:
                            answers[number] = b""
                    else:
                        answers[number] = answer
                time.sleep(0.5)
            elapsed = time.monotonic() - started
            peak_mb = (rss_kb(impatient_hub.process.pid) - rss_before) / 1024
    finally:
        for sock in attackers:
            sock.close()
    assert len(answers) == ATTACKERS, f"{ATTACKERS - len(answers)} half-sent heads still open"
    assert elapsed < HEADER_TIMEOUT + 15
    begun = [answers[n] for n in range(1, ATTACKERS, 2)]
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in begun), set(begun)
    assert peak_mb < 64, f"the server grew by {peak_mb:.0f} MB"
    assert rss_kb(impatient_hub.process.pid) - rss_before < 20 * 1024
    assert_acks_stay_flat(baseline, during)
    assert calm.call("get_rooms") == [f"user:{user.id}"]
    calm.close()


def test_an_idle_keep_alive_connection_is_told_its_timeout_and_closed(impatient_hub):
    with socket.create_connection(("127.0.0.1", impatient_hub.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        response = b""
        while b"\r\n\r\n" not in response:
            response += sock.recv(4096)
        assert f"keep-alive: timeout={int(HEADER_TIMEOUT)}".encode() in response.lower()
        started = time.monotonic()
        while sock.recv(4096):
            pass
        assert time.monotonic() - started < HEADER_TIMEOUT + 3


def test_long_polls_and_websockets_outlast_the_header_timeout(impatient_hub):
    user = register_user(impatient_hub)
    client = RecordingClient(impatient_hub.url)
    client.connect(token=user.token)
    polling = PollingClient(impatient_hub, timeout=30)
    assert polling.open().status == 200
    polling.connect(user.token)
    held: list = []
    poll = threading.Thread(target=lambda: held.append(polling.poll()))
    poll.start()
    time.sleep(HEADER_TIMEOUT + 1)
    assert polling.send('421["get_rooms"]').status == 200
    poll.join(timeout=10)
    assert held and held[0].status == 200, held
    assert f'431[["user:{user.id}"]]' in polling.packets(held[0])
    assert client.call("get_rooms") == [f"user:{user.id}"]
    client.close()
