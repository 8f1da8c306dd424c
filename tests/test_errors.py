"""Every REST error is JSON, ``{error: {code, message, details?}}``: no HTML, no stack trace."""

import pytest

from tests.support import make_app


def _assert_api_error(response_json: dict) -> dict:
    assert set(response_json) == {"error"}
    error = response_json["error"]
    assert {"code", "message"} <= set(error) <= {"code", "message", "details"}
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    return error


@pytest.mark.parametrize(("method", "path"), [("GET", "/api/socket/ping"),
                                              ("DELETE", "/api/messages"),
                                              ("PUT", "/api/auth/login")])
def test_wrong_method_is_405_json(sqlite_hub, method, path):
    response = sqlite_hub.api.request(method, path)
    assert response.status_code == 405
    assert response.headers["Content-Type"] == "application/json"
    error = _assert_api_error(response.json())
    assert "<" not in error["message"]


def test_unexpected_failure_is_500_json_without_a_trace(tmp_path):
    app = make_app(f"sqlite:///{tmp_path / 'hub.db'}")

    @app.get("/api/test-only/fails")
    def fails():
        raise RuntimeError("secret detail of the failure")

    response = app.test_client().get("/api/test-only/fails")
    assert response.status_code == 500
    assert response.headers["Content-Type"] == "application/json"
    error = _assert_api_error(response.get_json())
    assert "secret detail" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
    assert error["code"] == "internal_error"
