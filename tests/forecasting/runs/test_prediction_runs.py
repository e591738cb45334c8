"""Prediction runs over stored rollups: contract shape, fallback, lifecycle, overlap, chunking."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from forecasting.alerts.services import alert_acknowledge
from forecasting.models import Alert, ModelVersion, PredictionRun, ServerForecast
from forecasting.registry import model_versions_sync
from forecasting.runs.chunks import fleet_predict
from forecasting.runs.selectors import current_run
from forecasting.runs.services import prediction_run_start
from tests.conftest import ingest_fleet

pytestmark = pytest.mark.django_db
METRICS = ("cpu_pct", "mem_pct", "disk_io_mb_s", "latency_ms")


def test_predictions_current_is_insufficient_data_before_warmup(client, settings):
    settings.TFT_WARMUP_RECORDS = 150
    ingest_fleet(["ppdb001"], buckets=149)

    response = client.get("/predictions/current")

    assert response.status_code == 503
    body = response.json()
    assert body["error"] == "insufficient_data"
    assert "0/1 ready" in body["message"]


def test_predictions_current_has_the_contract_shape(client, no_models):
    ingest_fleet(["ppdb001", "ppweb001"])
    fleet_predict()

    body = client.get("/predictions/current").json()

    assert set(body) == {"predictions", "alerts", "environment", "metadata"}
    assert set(body["predictions"]) == {"ppdb001", "ppweb001"}
    for metric in METRICS:
        forecast = body["predictions"]["ppdb001"][metric]
        assert {"p10", "p50", "p90", "current", "trend"} <= set(forecast)
        assert len(forecast["p10"]) == len(forecast["p50"]) == len(forecast["p90"]) == 96
        assert all(a <= b <= c for a, b, c in zip(forecast["p10"], forecast["p50"], forecast["p90"], strict=True))
    assert set(body["environment"]) == {"prob_30m", "prob_8h", "high_risk_servers", "total_servers", "fleet_health",
                                        "expected_incidents_30m", "expected_incidents_8h"}
    assert body["environment"]["total_servers"] == 2
    metadata = body["metadata"]
    for key in ("model_type", "prediction_time", "horizon_steps", "device", "model_version", "run_id",
                "step_minutes", "age_seconds", "methods"):
        assert key in metadata
    assert metadata["horizon_steps"] == 96
    assert metadata["step_minutes"] == 5


def test_alert_has_the_contract_fields(client, no_models):
    ingest_fleet({"ppdb001": {"cpu_pct": 97.0}})
    fleet_predict()

    alert = client.get("/predictions/current").json()["alerts"][0]

    for key in ("server", "metric", "severity", "predicted_value", "threshold", "steps_ahead", "minutes_ahead", "message"):
        assert key in alert
    assert alert["server"] == "ppdb001"
    assert alert["minutes_ahead"] == alert["steps_ahead"] * 5


def test_no_model_falls_back_to_the_heuristic_with_the_reason_per_server(client, no_models):
    ingest_fleet(["ppdb001"])
    run = fleet_predict()

    forecast = ServerForecast.objects.get(run=run)
    assert forecast.method == "heuristic"
    assert forecast.fallback_reason.startswith("no_model")
    assert run.fallback_count == 1 and run.tft_count == 0
    body = client.get("/predictions/current").json()
    assert body["metadata"]["methods"] == {"ppdb001": "heuristic"}
    assert body["metadata"]["fallback_reasons"]["ppdb001"].startswith("no_model")


def test_broken_model_folder_falls_back_with_the_reason_visible(client, settings, tmp_path):
    folder = tmp_path / "tft_model_20260101T000000Z"
    folder.mkdir()
    (folder / "spec.json").write_text("{}")
    (folder / "weights.safetensors").write_bytes(b"not safetensors")
    ModelVersion.objects.create(name=folder.name, path=str(folder), created_at=datetime.now(UTC), is_active=True)
    ingest_fleet(["ppdb001"])

    run = fleet_predict()

    forecast = ServerForecast.objects.get(run=run)
    assert forecast.method == "heuristic"
    assert forecast.fallback_reason.startswith("model_load_failed")
    status = client.get("/status").json()
    assert status["predictions"]["fallback_reasons"] == {"model_load_failed": 1}


def test_registry_marks_a_broken_folder_invalid(settings, tmp_path):
    folder = tmp_path / "tft_model_20260101T000000Z"
    folder.mkdir()
    (folder / "spec.json").write_text("not json")
    (folder / "weights.safetensors").write_bytes(b"x")
    settings.TFT_MODELS_DIR = tmp_path

    model_versions_sync()

    version = ModelVersion.objects.get()
    assert version.valid is False
    assert "spec.json" in version.error
    assert version.is_active is False


def _rising_mem(i):
    return 60.0 + i * 0.2  # reaches 92 at the end of 160 buckets


def test_alert_is_raised_then_updated_without_duplicates(no_models):
    ingest_fleet({"ppdb001": {"mem_pct": _rising_mem}})
    first = fleet_predict()
    alert = Alert.objects.get(server__name="ppdb001", metric="mem_pct")
    assert alert.state == "active" and alert.first_run_id == first.pk

    second = fleet_predict()

    assert Alert.objects.filter(server__name="ppdb001", metric="mem_pct").count() == 1
    alert.refresh_from_db()
    assert alert.last_run_id == second.pk
    assert alert.updated_at >= alert.opened_at


def test_acknowledged_alert_stays_acknowledged_across_runs(no_models):
    ingest_fleet({"ppdb001": {"mem_pct": _rising_mem}})
    fleet_predict()
    alert = Alert.objects.get(metric="mem_pct")

    assert alert_acknowledge(alert_id=alert.pk) is True
    assert alert_acknowledge(alert_id=alert.pk) is False  # already acknowledged
    fleet_predict()

    alert.refresh_from_db()
    assert alert.state == "acknowledged"
    assert Alert.objects.filter(metric="mem_pct").count() == 1


def test_alert_resolves_when_no_longer_predicted(no_models):
    end = ingest_fleet({"ppdb001": {"mem_pct": _rising_mem}}, end=datetime.now(UTC) - timedelta(hours=3))
    fleet_predict(now=end)  # a run at the time of that data: its forecast is current, not stale
    alert = Alert.objects.get(metric="mem_pct")
    # Memory drops back to normal for the next three hours.
    ingest_fleet({"ppdb001": {"mem_pct": 40.0}}, buckets=36)

    fleet_predict()

    alert.refresh_from_db()
    assert end < datetime.now(UTC)
    assert alert.state == "resolved"
    assert alert.resolved_at is not None


def test_overlapping_runs_do_not_both_run(no_models):
    ingest_fleet(["ppdb001"])
    run, _ = prediction_run_start()

    second, chunks = prediction_run_start()

    assert run is not None
    assert second is None and chunks == []
    assert PredictionRun.objects.filter(status="running").count() == 1


def test_a_stalled_run_is_expired_and_the_next_one_runs(no_models, settings):
    ingest_fleet(["ppdb001"])
    stuck, _ = prediction_run_start(now=datetime.now(UTC) - timedelta(seconds=settings.TFT_RUN_STALE_SECONDS + 5))

    run = fleet_predict()

    stuck.refresh_from_db()
    assert stuck.status == "expired"
    assert run.status == "complete"


def test_a_run_failing_midway_leaves_the_previous_run_current(client, no_models, monkeypatch):
    ingest_fleet(["ppdb001", "ppdb002", "ppdb003"])
    good = fleet_predict()
    calls = {"n": 0}
    from forecasting.runs import chunks

    real = chunks.serve_forecasts

    def fail_on_second_chunk(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(chunks, "serve_forecasts", fail_on_second_chunk)
    with pytest.raises(RuntimeError):
        fleet_predict(chunk_size=1)

    assert PredictionRun.objects.order_by("-pk").first().status == "failed"
    assert current_run().pk == good.pk
    assert client.get("/predictions/current").json()["metadata"]["run_id"] == good.pk


def test_chunked_fan_out_gives_the_same_results_as_one_chunk(no_models):
    ingest_fleet({f"ppweb{i:03d}": {"cpu_pct": (lambda k, i=i: 30 + (k * (i + 1)) % 50)} for i in range(5)})
    one = fleet_predict(chunk_size=512)
    many = fleet_predict(chunk_size=2)

    def results(run):
        return {f.server_id: (json.loads(f.payload), f.prob_8h) for f in ServerForecast.objects.filter(run=run)}

    assert many.chunks_total == 3 and one.chunks_total == 1
    assert results(one) == results(many)
    assert one.environment == many.environment


def test_status_reports_the_last_run(client, no_models):
    ingest_fleet(["ppdb001"])
    fleet_predict()

    predictions = client.get("/status").json()["predictions"]

    assert predictions["servers"] == 1
    assert predictions["fallback_rate"] == 1.0
    assert predictions["stale"] is False
    assert predictions["age_seconds"] >= 0


def test_predictions_for_one_server_and_active_alerts(client, no_models):
    ingest_fleet({"ppdb001": {"cpu_pct": 97.0}, "ppdb002": {}})
    fleet_predict()

    one = client.get("/predictions/ppdb001").json()
    missing = client.get("/predictions/nope")
    active = client.get("/alerts/active").json()

    assert one["server"] == "ppdb001"
    assert len(one["prediction"]["cpu_pct"]["p50"]) == 96
    assert one["metadata"]["method"] == "heuristic"
    assert missing.status_code == 404
    assert active["count"] >= 1
    assert {a["server"] for a in active["alerts"]} == {"ppdb001"}
