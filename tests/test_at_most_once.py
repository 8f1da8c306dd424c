"""At most once with a provider that does not deduplicate, and the pace across nodes.

The simulator with ``SIMULATED_SMS_IDEMPOTENT=false`` forgets what it was
sent, as a real provider does, and its send log (written by the provider,
outliving a hub killed with ``kill -9``) says how often each phone was
submitted.
"""

from collections import Counter

from tests.fakes.eventlog import read_log
from tests.support import all_recipients, eventually, register_user, wait_until_final

NOT_IDEMPOTENT = {"SIMULATED_SMS_IDEMPOTENT": "false"}


def test_a_node_killed_mid_send_leaves_no_phone_submitted_twice(hub_factory, tmp_path):
    send_log = tmp_path / "sent.jsonl"
    first, second = hub_factory.nodes(2, {**NOT_IDEMPOTENT, "SIMULATED_SMS_LATENCY": "0.05",
                                          "DISPATCH_CONCURRENCY": "10",
                                          "DISPATCH_BATCH_SIZE": "200",
                                          "SIMULATED_SMS_SEND_LOG": str(send_log)})
    token = register_user(first, admin=True).token
    phones = [f"+1555444{i:04d}" for i in range(2000)]
    message_id = first.api.post("/api/messages", token, json={
        "body": "at most once", "recipients": phones}).json()["id"]
    eventually(lambda: len(read_log(send_log)) >= 400, timeout=60)
    first.kill()
    final = wait_until_final(second, token, message_id)
    submitted = Counter(entry["phone"] for entry in read_log(send_log))
    assert max(submitted.values()) == 1, [p for p, n in submitted.items() if n > 1][:5]
    recipients = all_recipients(second, token, message_id)
    by_status = Counter(r["status"] for r in recipients)
    assert set(by_status) <= {"SENT", "DELIVERED", "UNKNOWN"}, by_status
    unknown = [r for r in recipients if r["status"] == "UNKNOWN"]
    # Those the killed node had marked but whose outcomes it had not recorded: at most its
    # batch, all submitted but for those still waiting on the provider (its concurrency).
    # (None when the kill fell between two batches: a batch's sends take a second, its
    # claim and record a few milliseconds.)
    assert len(unknown) <= 200, by_status
    assert len({r["phone"] for r in unknown} & set(submitted)) >= len(unknown) - 10
    assert all(r["errorCode"] == "ambiguous_submit" for r in unknown), unknown[:3]
    assert all(r["cost"] == 0 for r in unknown)
    settled = {r["phone"] for r in recipients if r["status"] != "UNKNOWN"}
    assert settled <= set(submitted), "every recipient sent was submitted once"
    assert final["status"] == "SENT" and final["successCount"] == len(settled)
    assert final["statusCounts"].get("UNKNOWN", 0) == len(unknown)

    # The owner asks: only the unknown ones go out again, and once each.
    retried = second.api.post(f"/api/messages/{message_id}/retry", token)
    assert retried.status_code == 200 and retried.json()["queued"] == len(unknown)
    wait_until_final(second, token, message_id)
    again = Counter(entry["phone"] for entry in read_log(send_log))
    assert {phone for phone, n in again.items() if n > submitted[phone]} <= {
        r["phone"] for r in unknown}


def test_retry_is_the_owners_or_an_admins_and_requeues_only_what_may_be_sent(hub_factory):
    server = hub_factory({"SIMULATED_RECEIPT_DELAY": "0.1"}, name="retry")
    owner = register_user(server)
    other = register_user(server)
    phones = ["+15005550008", "+15005550005", "+15005550001", "+15551239001"]
    message_id = server.api.post("/api/messages", owner.token, json={
        "body": "retry", "recipients": phones}).json()["id"]
    wait_until_final(server, owner.token, message_id)
    before = {r["phone"]: r for r in all_recipients(server, owner.token, message_id)}
    assert {p: (before[p]["status"], before[p]["retryable"]) for p in phones[:3]} == {
        "+15005550008": ("UNKNOWN", False), "+15005550005": ("FAILED", True),
        "+15005550001": ("FAILED", False)}
    assert server.api.post(f"/api/messages/{message_id}/retry",
                           other.token).status_code == 404
    answer = server.api.post(f"/api/messages/{message_id}/retry", owner.token)
    assert answer.status_code == 200
    assert answer.json()["queued"] == 2 and answer.json()["message"]["status"] == "SENDING"
    wait_until_final(server, owner.token, message_id)
    after = {r["phone"]: r for r in all_recipients(server, owner.token, message_id)}
    for phone in phones[:2]:
        assert after[phone]["version"] > before[phone]["version"]
    assert after["+15005550001"]["version"] == before["+15005550001"]["version"]


def test_the_outcomes_reach_the_client_with_the_providers_words(hub_factory):
    server = hub_factory({"SIMULATED_RECEIPT_DELAY": "0.1"}, name="outcomes")
    user = register_user(server)
    phones = ["+15005550004", "+15005550007", "+15005550003", "+15551239002"]
    message_id = server.api.post("/api/messages", user.token, json={
        "body": "outcomes", "recipients": phones}).json()["id"]
    final = wait_until_final(server, user.token, message_id)

    def settled():
        found = {r["phone"]: r for r in all_recipients(server, user.token, message_id)}
        # The throttled one is sent a second after the others: its receipt comes last.
        return found if (found["+15005550003"]["status"], found["+15005550007"]["status"]) == (
            "FAILED", "DELIVERED") else None
    found = eventually(settled, timeout=10)
    assert (found["+15005550004"]["status"], found["+15005550004"]["errorCode"],
            found["+15005550004"]["providerErrorCode"]) == ("SUPPRESSED", "opted_out", "21610")
    assert found["+15005550007"]["status"] == "DELIVERED", "throttled, then sent"
    assert (found["+15005550003"]["providerStatus"],
            found["+15005550003"]["providerErrorCode"]) == ("undelivered", "30003")
    assert found["+15005550004"]["cost"] == 0 and found["+15005550003"]["cost"] > 0
    assert final["status"] == "SENT" and final["successCount"] == 3


def test_two_nodes_keep_to_the_pace_together(hub_factory, tmp_path):
    send_log = tmp_path / "sent.jsonl"
    # Unpaced, 50 sends in flight per node at 10 ms each would go several times faster.
    pace, per_node = 100, 300
    nodes = hub_factory.nodes(2, {"SMS_MAX_PER_SECOND": str(pace),
                                  "SIMULATED_SMS_LATENCY": "0.01",
                                  "SIMULATED_SMS_SEND_LOG": str(send_log)})
    token = register_user(nodes[0], admin=True).token
    ids = [node.api.post("/api/messages", token, json={
        "body": f"paced {n}", "recipients": [f"+155566{n}{i:04d}" for i in range(per_node)]}
    ).json()["id"] for n, node in enumerate(nodes)]
    for message_id in ids:
        wait_until_final(nodes[0], token, message_id, timeout=120)
    times = sorted(entry["at"] for entry in read_log(send_log))
    assert len(times) == 2 * per_node
    busiest, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= 1.0:
            start += 1
        busiest = max(busiest, end - start + 1)
    assert busiest <= pace * 1.1, busiest
    assert times[-1] - times[0] >= 2 * per_node / pace - 1
