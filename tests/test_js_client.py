"""The contract as a browser app sees it: the official socket.io-client against the hub."""

import json
import subprocess

import pytest


@pytest.fixture(scope="session")
def node_client(js_modules):
    return js_modules.parent / "contract.mjs"


def test_official_js_client_follows_the_contract(node_client, hub, user, admin):
    run = subprocess.run(["node", str(node_client), hub.url, user.token, str(user.id),
                          admin.token], capture_output=True, text=True, timeout=60)
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert run.returncode == 0, seen
    assert seen["noToken"] == {"message": "Authentication required", "code": "auth_required"}
    assert seen["badToken"] == {"message": "Invalid token", "code": "invalid_token"}
    assert seen["session"]["userId"] == str(user.id) and seen["session"]["role"] == "user"
    assert seen["rooms"] == [f"user:{user.id}"]
    assert seen["join"] == {"ok": True, "room": "room:js"}
    assert seen["forbidden"]["error"]["code"] == "forbidden"
    assert seen["errorEvent"]["event"] == "leave_room"
    assert seen["errorEvent"]["code"] == "forbidden"
    assert seen["notifyStatus"] == 201
    assert seen["notification"]["title"] == "from js"
    assert seen["markRead"] == {"ok": True, "id": seen["notification"]["id"], "unreadCount": 0}
    assert seen["pong"]["ok"] is True and seen["pong"]["rttMs"] is not None
