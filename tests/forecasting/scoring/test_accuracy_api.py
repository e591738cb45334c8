"""Live accuracy in /predictions/<server>, /status and /metrics, validated against the schema."""

from datetime import UTC, datetime, timedelta

import pytest

from forecasting.models import ForecastScore, ModelVersion
from forecasting.runs.chunks import fleet_predict
from forecasting.scoring.services import forecasts_score
from ingest.models import Server
from tests.conftest import ingest_fleet
from tests.integrations.test_schema_conformance import conforms, schema  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db


@pytest.fixture
def scored_fleet(no_models):
    """A forecast made 1 h ago, the hour since observed, scored; then a current run."""
    end = datetime.now(UTC) - timedelta(hours=1)
    ingest_fleet({"ppdb001": {"cpu_pct": lambda i: 40.0 + i % 3}}, buckets=160, end=end)  # MASE scale 1.5
    fleet_predict(now=end)
    ingest_fleet({"ppdb001": {"cpu_pct": 45.0}}, buckets=12)
    forecasts_score()
    return fleet_predict()


def test_server_prediction_has_accuracy_per_metric_and_window(client, scored_fleet):
    body = client.get("/predictions/ppdb001").json()

    cpu = body["accuracy"]["cpu_pct"]["24h"]
    assert cpu["n"] > 0 and cpu["bands"]["0-30m"]["n"] > 0 and cpu["mase"] is not None
    assert set(body["accuracy"]["cpu_pct"]) == {"24h", "7d"}


def test_server_prediction_with_accuracy_conforms(schema, client, scored_fleet):  # noqa: F811
    conforms(schema, "/predictions/{server}", "get", client.get("/predictions/ppdb001"))


def test_status_has_the_fleet_accuracy_block(client, scored_fleet):
    block = client.get("/status").json()["accuracy"]["24h"]

    assert block["n"] > 0 and block["coverage_80"] is not None and block["metrics"]["cpu_pct"]["n"] > 0


def test_status_with_accuracy_conforms(schema, client, scored_fleet):  # noqa: F811
    conforms(schema, "/status", "get", client.get("/status"))


def test_metrics_export_accuracy_gauges_per_server_metric_and_band(client, scored_fleet):
    text = client.get("/metrics").content.decode()

    assert 'tft_forecast_mase{server="ppdb001",metric="cpu_pct",band="0-30m"}' in text
    assert 'tft_forecast_coverage{server="ppdb001",metric="cpu_pct",band="0-30m"}' in text



def _cpu_scores(kind: str, abs_err: float, model: str = "") -> None:
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    ForecastScore.objects.create(server=Server.objects.get(name="ppdb001"), metric="cpu_pct", band="0-30m", hour=hour,
                                 n=60, abs_err=abs_err, naive_abs_err=60.0, scale=30.0, kind=kind,
                                 model_name=model)  # fmt: skip


@pytest.fixture
def raw_and_served(no_models):
    """A current (heuristic) run, then model tft_model_a active, its cpu 0-30m forecasts scored: served
    0.9 × naive, raw 1.3 × naive, and a replaced model's raw scores (0.5 ×) beside them."""
    ingest_fleet(["ppdb001"])
    fleet_predict()
    ModelVersion.objects.create(name="tft_model_a", path="/nowhere/tft_model_a", created_at=datetime.now(UTC),
                                is_active=True)  # fmt: skip
    _cpu_scores("served", 54.0, "tft_model_a")
    _cpu_scores("raw", 78.0, "tft_model_a")
    _cpu_scores("raw", 30.0, "tft_model_old")


def test_metrics_export_the_raw_tfts_ratio_to_naive_with_kind_raw(client, raw_and_served):
    text = client.get("/metrics").content.decode()

    assert 'tft_forecast_mase_vs_naive{server="ppdb001",metric="cpu_pct",band="0-30m",kind="raw"} 1.3' in text


def test_metrics_keep_the_served_series_as_they_were(client, raw_and_served):
    text = client.get("/metrics").content.decode()

    assert 'tft_forecast_mase_vs_naive{server="ppdb001",metric="cpu_pct",band="0-30m"} 0.9' in text


def test_metrics_name_the_model_version_each_kind_describes(client, raw_and_served):
    lines = [line for line in client.get("/metrics").content.decode().splitlines()
             if line.startswith("tft_forecast_scored_targets{")]  # fmt: skip

    # the replaced model's raw scores are in no raw gauge, so they are not named either
    assert sorted(lines) == ['tft_forecast_scored_targets{kind="raw",version="tft_model_a"} 60',
                             'tft_forecast_scored_targets{kind="served",version="tft_model_a"} 60']


def test_status_has_the_raw_tfts_ratio_beside_the_served_per_band(client, raw_and_served):
    window = client.get("/status").json()["accuracy"]["24h"]

    band = window["bands"]["0-30m"]
    assert (band["mase_vs_naive"], band["raw"]["mase_vs_naive"]) == (pytest.approx(0.9), pytest.approx(1.3))
    assert window["raw_model_version"] == "tft_model_a"


def test_status_with_raw_accuracy_conforms(schema, client, raw_and_served):  # noqa: F811
    conforms(schema, "/status", "get", client.get("/status"))


def test_server_prediction_has_the_raw_tfts_accuracy_beside_the_served_per_band(client, no_models):
    ingest_fleet(["ppdb001"])
    fleet_predict()
    _cpu_scores("served", 54.0)
    _cpu_scores("raw", 78.0)

    band = client.get("/predictions/ppdb001").json()["accuracy"]["cpu_pct"]["24h"]["bands"]["0-30m"]

    assert (band["mase_vs_naive"], band["raw"]["mase_vs_naive"]) == (pytest.approx(0.9), pytest.approx(1.3))


def test_the_served_figures_leave_the_raw_scores_out(client, no_models):
    ingest_fleet(["ppdb001"])
    fleet_predict()
    _cpu_scores("served", 54.0)
    _cpu_scores("raw", 78.0)

    cpu = client.get("/predictions/ppdb001").json()["accuracy"]["cpu_pct"]["24h"]

    assert (cpu["n"], cpu["mase_vs_naive"]) == (60, pytest.approx(0.9))


def test_server_prediction_with_raw_accuracy_conforms(schema, client, no_models):  # noqa: F811
    ingest_fleet(["ppdb001"])
    fleet_predict()
    _cpu_scores("served", 54.0)
    _cpu_scores("raw", 78.0)

    conforms(schema, "/predictions/{server}", "get", client.get("/predictions/ppdb001"))
