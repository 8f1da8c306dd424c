"""Which provider sends: named by /readyz, and a production node on the simulator says so."""

from tests.support import eventually

PRODUCTION = {"HUB_ENV": "production", "JWT_SECRET_KEY": "p" * 40,
              "WEBHOOK_SECRET": "webhook-secret",
              "CORS_ALLOWED_ORIGINS": "https://app.example.com"}


def test_a_production_node_on_the_simulator_warns_and_readyz_names_it(hub_factory):
    server = hub_factory(PRODUCTION, name="production-simulator")
    ready = server.api.get("/readyz")
    assert ready.status_code == 200 and ready.json()["provider"] == "simulated"
    eventually(lambda: "SMS_PROVIDER is simulated: no SMS leaves this hub" in server.log_text(),
               timeout=10)


def test_a_development_node_on_the_simulator_does_not_warn(hub_factory):
    server = hub_factory({}, name="testing-simulator")
    assert server.api.get("/readyz").json()["provider"] == "simulated"
    assert "no SMS leaves this hub" not in server.log_text()
