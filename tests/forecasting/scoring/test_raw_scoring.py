"""Live scoring of the TFT's raw quantiles beside the served forecast, split by model version
(forecasting.scoring.services: forecasts_archive, forecasts_score), and the interval calibration's
share of those rows."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from forecasting.engine.spec import HORIZON, METRICS, QUANTILES
from forecasting.models import ArchivedForecast, CalibrationState, ForecastScore, ModelVersion
from forecasting.scoring.services import forecasts_archive, forecasts_score
from forecasting.windows import server_windows
from ingest.models import Server
from tests.conftest import ingest_fleet
from tests.forecasting.scoring.test_live_scoring import STEP, _observe

pytestmark = pytest.mark.django_db

CPU = METRICS.index("cpu_pct")


def _history(name="ppdb001"):
    """History ending about 10 h ago on the half hour (the forecast's origin: hh:30)."""
    end = (datetime.now(UTC) - timedelta(hours=10)).replace(minute=30, second=0, microsecond=0)
    ingest_fleet([name], buckets=160, end=end)
    return server_windows(server_ids=[Server.objects.get(name=name).pk])


def _archive(windows, *, served_cpu=40.0, raw_cpu=43.0, method="tft", model="tft_model_a"):
    """One forecast per window: every served quantile of cpu_pct `served_cpu`, every raw one `raw_cpu`
    (the other metrics equal in both). Returns the first origin."""
    served = np.full((len(windows), HORIZON, len(METRICS), len(QUANTILES)), 50.0)
    served[:, :, CPU] = served_cpu
    raw = np.full((len(windows), HORIZON, len(METRICS), 3), 50.0)
    raw[:, :, CPU] = raw_cpu
    forecasts_archive(windows=windows, quantiles=served, methods=[method] * len(windows), model_name=model,
                      raw_quantiles=raw)
    return windows[0].window.end


def _cpu(kind):
    return ForecastScore.objects.get(metric="cpu_pct", band="0-30m", kind=kind)


def test_the_raw_and_the_served_forecast_are_scored_apart_on_the_same_targets():
    origin = _archive(_history(), served_cpu=40.0, raw_cpu=43.0)
    _observe("ppdb001", origin, 6, cpu=43.0)  # the raw forecast hit every target, the served one missed by 3

    forecasts_score()

    served, raw = _cpu("served"), _cpu("raw")
    assert (served.n, raw.n) == (6, 6)
    assert (served.abs_err, raw.abs_err) == (pytest.approx(18.0), pytest.approx(0.0, abs=1e-3))
    assert served.naive_abs_err == pytest.approx(raw.naive_abs_err)  # the same targets, the same naive


def test_a_heuristic_forecast_is_scored_as_served_only():
    origin = _archive(_history(), method="heuristic", model="")
    _observe("ppdb001", origin, 6)

    forecasts_score()

    assert set(ForecastScore.objects.values_list("kind", flat=True)) == {"served"}


def test_the_score_rows_carry_the_model_version_that_made_the_forecast():
    origin = _archive(_history(), model="tft_model_a")
    _observe("ppdb001", origin, 6)

    forecasts_score()

    assert set(ForecastScore.objects.values_list("kind", "model_name").distinct()) == {
        ("served", "tft_model_a"), ("raw", "tft_model_a")}


def test_a_heuristic_forecast_is_scored_under_no_model_even_when_a_model_was_loaded():
    origin = _archive(_history(), method="heuristic", model="tft_model_a")  # this server fell back
    _observe("ppdb001", origin, 6)

    forecasts_score()

    assert set(ForecastScore.objects.values_list("model_name", flat=True)) == {""}


def test_forecasts_of_two_model_versions_in_the_same_hour_are_scored_in_separate_rows():
    windows = _history()
    first = windows[0].window.end  # hh:30: the next origin, hh:35, is in the same hour
    _archive(windows, model="tft_model_a")
    ingest_fleet(["ppdb001"], buckets=1, end=first + STEP)  # one more bucket: the next origin, 5 min later
    _archive(server_windows(server_ids=[windows[0].server_id]), model="tft_model_b")
    _observe("ppdb001", first, 8)

    forecasts_score()

    rows = dict(ForecastScore.objects.filter(metric="cpu_pct", band="0-30m", kind="served")
                .values_list("model_name", "n"))  # fmt: skip
    assert rows == {"tft_model_a": 6, "tft_model_b": 6}


def _activate(name):
    now = datetime.now(UTC)
    ModelVersion.objects.create(name=name, path=f"/nowhere/{name}", created_at=now, is_active=True)


def test_the_interval_calibration_takes_the_served_counts_of_the_active_model_only_once():
    _activate("tft_model_a")
    origin = _archive(_history(), model="tft_model_a")
    _observe("ppdb001", origin, 6)

    forecasts_score()

    assert CalibrationState.objects.get(metric="cpu_pct", band="0-30m").n == 6  # not 12: the raw rows are not served


def test_a_replaced_models_forecasts_do_not_move_the_interval_calibration():
    _activate("tft_model_b")
    origin = _archive(_history(), model="tft_model_a")  # made before the switch, scored after it
    _observe("ppdb001", origin, 6)

    forecasts_score()

    assert ForecastScore.objects.filter(model_name="tft_model_a").exists()
    assert not CalibrationState.objects.exists()


def test_the_heuristics_counts_do_not_move_the_interval_calibration():
    _activate("tft_model_a")  # the calibration is applied to this model's forecasts only
    origin = _archive(_history(), method="heuristic", model="")  # this server fell back
    _observe("ppdb001", origin, 6)

    forecasts_score()

    assert ForecastScore.objects.filter(model_name="").exists()
    assert not CalibrationState.objects.exists()


def test_the_first_scoring_pass_after_a_model_switch_resets_the_old_models_calibration():
    _activate("tft_model_b")
    windows = _history()
    CalibrationState.objects.create(server_id=windows[0].server_id, metric="cpu_pct", band="2-8h", log_lower=0.5,
                                    log_upper=0.5, n=900, model_name="tft_model_a", updated_at=datetime.now(UTC))
    origin = _archive(windows, model="tft_model_a")  # made before the switch: its counts are left out
    _observe("ppdb001", origin, 6)

    forecasts_score()

    state = CalibrationState.objects.get()
    assert (state.log_lower, state.n, state.model_name) == (0.0, 0, "tft_model_b")


def test_the_archive_keeps_raw_quantiles_of_tft_forecasts_only():
    windows = _history("ppdb001") + _history("ppweb001")
    served = np.full((2, HORIZON, len(METRICS), len(QUANTILES)), 50.0)
    forecasts_archive(windows=windows, quantiles=served, methods=["tft", "heuristic"], model_name="tft_model_a",
                      raw_quantiles=np.full((2, HORIZON, len(METRICS), 3), 44.0))

    kept = dict(ArchivedForecast.objects.values_list("server__name", "raw_quantiles"))
    assert kept["ppweb001"] is None and len(kept["ppdb001"]) == 2336
