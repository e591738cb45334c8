"""Prediction runs explain their forecasts (forecasting.runs.chunks, the committed default model): stored
per server, served by /predictions/<server> as declared in the schema, and named in alert messages."""

import math

import pytest

from forecasting.engine.explanation import GROUPS, HEURISTIC_TEXT, STEADY_TEXT
from forecasting.models import Alert, ServerForecast
from forecasting.runs.chunks import fleet_predict
from tests.conftest import ingest_fleet
from tests.integrations.test_schema_conformance import conforms

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema(anon_client) -> dict:
    response = anon_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


def _hot_and_flat():
    # ppdb001 runs hot (its forecast calls for alerts); ppweb001 is flat and far from any limit
    ingest_fleet({"ppdb001": {"cpu_pct": 97.0}, "ppweb001": {}}, buckets=200)


@pytest.fixture
def explained_run():
    _hot_and_flat()
    run = fleet_predict()
    assert run.tft_count == 2, run.fallback_reasons  # the committed model forecast both servers
    return run


def _explanation(server: str) -> dict:
    return ServerForecast.objects.get(server__name=server).explanation


def test_a_forecast_calling_for_an_alert_is_explained_by_the_tft(explained_run):
    explanation = _explanation("ppdb001")

    assert explanation["method"] == "tft"
    assert set(explanation["variables"]) == set(GROUPS)
    assert explanation["text"].startswith("driven by ")


def test_stored_weights_sum_to_one_per_group_and_are_finite(explained_run):
    variables = _explanation("ppdb001")["variables"]

    for group in GROUPS:
        weights = [v["weight"] for v in variables[group]]
        assert all(math.isfinite(w) and w >= 0 for w in weights), group
        assert sum(weights) == pytest.approx(1.0, abs=2e-3), group


def test_stored_attention_shares_sum_to_one(explained_run):
    attention = _explanation("ppdb001")["attention"]

    assert attention["last_hour"] + attention["same_time_yesterday"] + attention["rest"] == pytest.approx(1.0, abs=2e-3)
    assert sum(attention["blocks"]) == pytest.approx(1.0, abs=5e-3)


def test_a_steady_forecast_is_not_explained_and_says_so(explained_run):
    assert _explanation("ppweb001") == {"method": "tft", "text": STEADY_TEXT}


def test_a_run_builds_only_the_explanations_it_stores(monkeypatch):
    from forecasting.engine import explanation as ex

    _hot_and_flat()
    built = []
    original = ex.explanation
    monkeypatch.setattr(ex, "explanation", lambda attr, i, states: built.append(i) or original(attr, i, states))

    fleet_predict()

    stored = ServerForecast.objects.filter(explanation__has_key="variables").count()
    assert stored == 1 and len(built) == 1  # ppdb001's, not the steady ppweb001's


def test_explain_all_explains_every_tft_forecast():
    _hot_and_flat()

    fleet_predict(explain="all")

    assert "variables" in _explanation("ppweb001")


def test_alert_message_keeps_its_rule_and_names_what_drove_the_forecast(explained_run):
    alert = Alert.objects.filter(server__name="ppdb001", metric="cpu_pct").first()
    explanation = _explanation("ppdb001")

    assert alert is not None
    assert "(critical: p50 ≥ critical 95.0)" in alert.message or "(warning: p50 ≥ warning" in alert.message
    assert alert.message.endswith("; " + explanation["text"])
    assert len(alert.message) <= 300


def test_predictions_server_serves_the_explanation(client, explained_run):
    body = client.get("/predictions/ppdb001").json()

    assert body["explanation"] == _explanation("ppdb001")


def test_predictions_server_with_an_explanation_conforms(schema, client, explained_run):
    conforms(schema, "/predictions/{server}", "get", client.get("/predictions/ppdb001"))


def test_a_heuristic_forecast_says_heuristic_no_model_explanation(client, no_models):
    _hot_and_flat()
    fleet_predict()

    body = client.get("/predictions/ppdb001").json()

    assert body["explanation"] == {"method": "heuristic", "text": HEURISTIC_TEXT}
    assert Alert.objects.filter(server__name="ppdb001").first().message.endswith("; " + HEURISTIC_TEXT)
