"""Every socket event fed arbitrary JSON answers an ack and never drops the client."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blueprints.socket_events import EVENT_PAYLOADS
from tests.support import RecordingClient

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=300),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=20), children, max_size=5),
    max_leaves=20,
)
EVENTS = sorted(set(EVENT_PAYLOADS) - {"authenticate"}) + ["authenticate", "no_such_event"]


@pytest.fixture(scope="module")
def fuzz_client(sqlite_hub):
    from tests.support import register_user

    client = RecordingClient(sqlite_hub.url)
    client.connect(token=register_user(sqlite_hub).token)
    yield client
    client.close()


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(event=st.sampled_from(EVENTS), args=st.lists(json_values, max_size=3))
def test_any_payload_gets_a_well_formed_answer(fuzz_client, event, args):
    answer = fuzz_client.sio.call(event, tuple(args) if len(args) != 1 else args[0],
                                  timeout=10) if args else fuzz_client.sio.call(event,
                                                                                timeout=10)
    if isinstance(answer, list):
        assert event == "get_rooms" and all(isinstance(room, str) for room in answer)
    else:
        assert isinstance(answer, dict) and isinstance(answer.get("ok"), bool)
        if not answer["ok"]:
            assert set(answer["error"]) == {"code", "message"}
            assert answer["error"]["code"] != "internal_error", answer
    assert fuzz_client.sio.connected
