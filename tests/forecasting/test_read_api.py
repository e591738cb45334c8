"""The read API's additions to the contract: guide names, forecast origin and staleness, 503 logging."""

import logging
from datetime import UTC, datetime, timedelta

import pytest

from forecasting.api import GUIDE_METRIC_NAMES
from forecasting.engine.alert_rules import INCIDENT_METRIC, TREND_METRIC
from forecasting.runs.chunks import fleet_predict
from tests.conftest import ingest_fleet

pytestmark = pytest.mark.django_db
METRICS = ("cpu_pct", "mem_pct", "disk_io_mb_s", "latency_ms")


@pytest.fixture
def run_with_an_alert(no_models):
    ingest_fleet({"ppdb001": {"cpu_pct": 97.0}, "ppweb001": {}})
    return fleet_predict()


def test_a_client_written_from_the_guide_reads_its_keys(client, run_with_an_alert):
    data = client.get("/predictions/current?names=guide").json()

    # What a client of the original daemon does with the guide's response.
    for server in ("ppdb001", "ppweb001"):
        forecast = data["predictions"][server]
        assert len(forecast["cpu_percent"]["p50"]) == 96
        assert len(forecast["memory_percent"]["p10"]) == 96
        assert len(forecast["disk_percent"]["p90"]) == 96
        assert isinstance(forecast["load_average"]["current"], float)
        assert isinstance(forecast["load_average"]["trend"], float)
    assert data["environment"]["total_servers"] == 2
    assert data["metadata"]["horizon_steps"] == 96


def test_guide_names_carry_the_same_forecasts(client, run_with_an_alert):
    ours = client.get("/predictions/current").json()["predictions"]
    guide = client.get("/predictions/current?names=guide").json()["predictions"]

    for server, forecasts in ours.items():
        assert {GUIDE_METRIC_NAMES[metric]: value for metric, value in forecasts.items()} == guide[server]


def test_guide_names_rename_the_alerts_metric(client, run_with_an_alert):
    alerts = client.get("/predictions/current?names=guide").json()["alerts"]

    metrics = {alert["metric"] for alert in alerts} - {TREND_METRIC, INCIDENT_METRIC}  # the server's own alerts
    assert metrics and metrics <= set(GUIDE_METRIC_NAMES.values())


def test_an_unknown_names_value_is_rejected(client, run_with_an_alert):
    response = client.get("/predictions/current?names=klingon")

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_every_forecast_carries_its_origin(client, run_with_an_alert):
    body = client.get("/predictions/current").json()

    for forecasts in body["predictions"].values():
        for metric in METRICS:
            origin = datetime.fromisoformat(forecasts[metric]["origin"])
            assert origin.tzinfo is not None
            assert forecasts[metric]["stale"] is False


def test_a_server_whose_data_stopped_is_forecast_as_stale(client, no_models, settings):
    settings.TFT_STALE_AFTER_MINUTES = 15
    ingest_fleet(["ppdb001"])
    ingest_fleet(["ppdb002"], end=datetime.now(UTC) - timedelta(hours=1))
    fleet_predict()

    predictions = client.get("/predictions/current").json()["predictions"]

    assert predictions["ppdb001"]["cpu_pct"]["stale"] is False
    assert predictions["ppdb002"]["cpu_pct"]["stale"] is True


def test_one_server_forecast_carries_origin_and_stale(client, no_models):
    ingest_fleet(["ppdb002"], end=datetime.now(UTC) - timedelta(hours=1))
    fleet_predict()

    body = client.get("/predictions/ppdb002").json()

    assert body["metadata"]["stale"] is True
    assert body["prediction"]["mem_pct"]["stale"] is True
    assert body["prediction"]["mem_pct"]["origin"] == body["metadata"]["origin"]


def test_insufficient_data_is_logged_at_info_not_error(client, caplog):
    # Django logs 5xx responses on "django.request", which does not propagate to the root logger.
    request_logger = logging.getLogger("django.request")
    request_logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO):
            response = client.get("/predictions/current")
    finally:
        request_logger.removeHandler(caplog.handler)

    assert response.status_code == 503
    assert [r.levelname for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert any(r.levelname == "INFO" and r.name == "forecasting.api" for r in caplog.records)
