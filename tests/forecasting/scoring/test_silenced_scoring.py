"""Maintenance windows, and buckets where the server reported state `maintenance`, are left out of
live scoring and of the interval calibration (which takes the same pass's counts)."""

from datetime import UTC, datetime, timedelta

import pytest

from forecasting.models import CalibrationState, ForecastScore, MaintenanceWindow, ModelVersion
from forecasting.scoring.services import forecasts_score
from tests.conftest import ingest_fleet
from tests.forecasting.scoring.test_live_scoring import STEP, _archive_flat_forecast, _observe

pytestmark = pytest.mark.django_db


def _window(servers, start, end, metric=""):
    now = datetime.now(UTC)
    MaintenanceWindow.objects.create(
        servers=servers,
        metric=metric,
        starts_at=start,
        ends_at=end,
        reason="patching",
        created_by="test",
        created_at=now,
    )


def test_targets_inside_a_window_are_not_scored():
    origin = _archive_flat_forecast()
    _observe("ppdb001", origin, 6)
    _window("ppdb*", origin + 2 * STEP, origin + 4 * STEP)  # the 3rd and 4th targets

    forecasts_score()

    n = dict(ForecastScore.objects.filter(band="0-30m").values_list("metric", "n"))
    assert n == {"cpu_pct": 4, "mem_pct": 4, "disk_io_mb_s": 4, "latency_ms": 4}


def test_a_window_on_one_metric_or_another_server_leaves_the_rest_scored():
    origin = _archive_flat_forecast()
    _observe("ppdb001", origin, 6)
    _window("ppdb001", origin, origin + timedelta(hours=1), metric="mem_pct")
    _window("ppweb*", origin, origin + timedelta(hours=1))

    forecasts_score()

    n = dict(ForecastScore.objects.filter(band="0-30m").values_list("metric", "n"))
    assert n == {"cpu_pct": 6, "disk_io_mb_s": 6, "latency_ms": 6}


def _observe_with_maintenance(origin, steps=6, maintenance=(2, 3)):
    """As _observe, the server reporting state `maintenance` in the given forecast steps."""
    state = {"cpu_pct": 43.0, "state": lambda i: "maintenance" if i in maintenance else "healthy"}
    ingest_fleet({"ppdb001": state}, buckets=steps + 1, end=origin + (steps + 1) * STEP)


def test_targets_in_maintenance_state_buckets_are_not_scored():
    origin = _archive_flat_forecast()
    _observe_with_maintenance(origin)

    forecasts_score()

    assert ForecastScore.objects.get(metric="cpu_pct", band="0-30m").n == 4


def test_maintenance_state_buckets_are_scored_when_the_setting_is_off(settings):
    settings.TFT_MAINTENANCE_STATE_SILENCES = False
    origin = _archive_flat_forecast()
    _observe_with_maintenance(origin)

    forecasts_score()

    assert ForecastScore.objects.get(metric="cpu_pct", band="0-30m").n == 6


def test_maintenance_state_buckets_are_left_out_of_the_interval_calibration():
    # A TFT forecast of the active model: the calibration takes that model's served counts only (issue
    # 24; it used to take the heuristic's as well, which this test then archived).
    now = datetime.now(UTC)
    ModelVersion.objects.create(name="tft_model_a", path="/nowhere/tft_model_a", created_at=now, is_active=True)
    origin = _archive_flat_forecast(method="tft", model="tft_model_a")
    _observe_with_maintenance(origin)

    forecasts_score()

    assert CalibrationState.objects.get(metric="cpu_pct", band="0-30m").n == 4
