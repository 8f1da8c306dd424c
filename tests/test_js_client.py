"""The contract as a browser app sees it: the official socket.io-client against the hub."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

JS_DIR = Path(__file__).parent / "js"


@pytest.fixture(scope="session")
def node_client():
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js is not installed")
    if not (JS_DIR / "node_modules" / "socket.io-client").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True,
                       capture_output=True, timeout=300)
    return JS_DIR / "contract.mjs"


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
