"""Connection churn leaves nothing behind: rooms, maps, rows, greenlets and memory."""

import pytest

from services.node.diagnostics import PER_CONNECTION
from tests.churn import churn, internals
from tests.support import eventually, register_user


@pytest.fixture(scope="module")
def churn_hub(module_hub_factory):
    # Abrupt clients are noticed by the ping timeout at worst, so keep it short; the
    # per-user cap is raised because rounds outpace that detection by design.
    return module_hub_factory({"SOCKETIO_PING_INTERVAL": "2", "SOCKETIO_PING_TIMEOUT": "2",
                               "MAX_CONNECTIONS_PER_USER": "1000"}, name="churn")


def test_churn_returns_every_structure_to_baseline(churn_hub):
    admin = register_user(churn_hub, admin=True)
    users = [register_user(churn_hub) for _ in range(5)]
    message_ids = []
    for user in users:
        response = churn_hub.api.post("/api/messages", user.token,
                                      json={"body": "churn", "recipients": ["+15551112222"]})
        message_ids.append(f"{user.id}:{response.json()['id']}")
    baseline = internals(churn_hub, admin)

    report = churn(churn_hub, users, admin, message_ids, rounds=10, clients_per_round=20)
    assert report.client_errors == []
    assert report.connects == report.disconnects == 200

    def settled():
        now = internals(churn_hub, admin)
        # The analytics scheduler forgets departed subscribers on its next round.
        released = now["analyticsSubscribers"] == 0
        return now if released and all(now[key] == baseline[key] for key in PER_CONNECTION) \
            else None
    final = eventually(settled, timeout=15, interval=0.5)
    assert final["greenlets"] <= baseline["greenlets"] + 10
    assert final["rssKb"] <= report.rss_after_first_kb * 1.10
    for user in users:
        online = churn_hub.api.get(f"/api/socket/user/{user.id}/online", admin.token).json()
        assert online == {"userId": str(user.id), "online": False, "connections": 0}
