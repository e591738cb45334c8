"""Live scoring: the archive written by the store step, the scoring pass, its idempotency and retention."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from forecasting.engine.spec import HORIZON, METRICS, QUANTILES
from forecasting.models import ArchivedForecast, ForecastScore
from forecasting.runs.chunks import fleet_predict
from forecasting.scoring.services import forecast_scores_prune, forecasts_archive, forecasts_score
from forecasting.windows import server_windows
from ingest.models import Server
from tests.conftest import ingest_fleet

pytestmark = pytest.mark.django_db

STEP = timedelta(minutes=5)


def _archive_flat_forecast(name="ppdb001", *, cpu=40.0, method="heuristic", model=""):
    """History ending 10 h ago, then an archived forecast from its origin (the heuristic's unless
    `method` and `model` say otherwise): every quantile = `cpu` for cpu_pct (the history's own level),
    so the errors are known exactly. Returns the origin."""
    ingest_fleet([name], buckets=160, end=datetime.now(UTC) - timedelta(hours=10))
    server = Server.objects.get(name=name)
    windows = server_windows(server_ids=[server.pk])
    quantiles = np.full((1, HORIZON, len(METRICS), len(QUANTILES)), cpu)
    forecasts_archive(windows=windows, quantiles=quantiles, methods=[method], model_name=model)
    return windows[0].window.end


def _observe(name: str, origin: datetime, steps: int, *, cpu=43.0):
    """Buckets for the first `steps` forecast steps, plus the next one (which completes the last)."""
    ingest_fleet({name: {"cpu_pct": cpu}}, buckets=steps + 1, end=origin + (steps + 1) * STEP)


def _rows():
    return sorted(ForecastScore.objects.values_list("server_id", "metric", "band", "hour", "n", "abs_err", "inside"))


def test_the_store_step_archives_one_forecast_per_server_and_origin(no_models):
    ingest_fleet(["ppdb001", "ppweb001"])
    fleet_predict()
    fleet_predict()  # the same origins again

    assert ArchivedForecast.objects.count() == 2


def test_a_band_is_scored_once_its_targets_are_observed():
    origin = _archive_flat_forecast()
    _observe("ppdb001", origin, 6)  # 0–30 min observed, nothing later

    forecasts_score()

    assert set(ForecastScore.objects.values_list("band", flat=True)) == {"0-30m"}
    assert ArchivedForecast.objects.get().bands_scored == 1


def test_the_next_band_is_scored_when_its_targets_arrive():
    origin = _archive_flat_forecast()
    _observe("ppdb001", origin, 6)
    forecasts_score()
    _observe("ppdb001", origin, 24)

    forecasts_score()

    cpu = dict(ForecastScore.objects.filter(metric="cpu_pct").values_list("band", "n"))
    assert cpu == {"0-30m": 6, "30m-2h": 18}


def test_scores_are_the_errors_of_the_observed_targets():
    origin = _archive_flat_forecast(cpu=40.0)
    _observe("ppdb001", origin, 6, cpu=43.0)  # every target 3 above the forecast, outside [40, 40]

    forecasts_score()

    row = ForecastScore.objects.get(metric="cpu_pct", band="0-30m")
    assert (row.n, row.abs_err, row.inside, row.above) == (6, pytest.approx(18.0), 0, 6)


def test_scoring_twice_gives_the_same_rows():
    origin = _archive_flat_forecast()
    _observe("ppdb001", origin, 24)
    forecasts_score()
    first = _rows()

    forecasts_score()

    assert first and _rows() == first


def test_a_fully_scored_forecast_leaves_the_archive():
    origin = _archive_flat_forecast()
    _observe("ppdb001", origin, HORIZON)

    result = forecasts_score()

    assert result.completed == 1 and not ArchivedForecast.objects.exists()


def test_a_pass_scores_at_most_its_limit_oldest_first():
    first = _archive_flat_forecast("ppdb001")
    _archive_flat_forecast("ppdb002")
    _observe("ppdb001", first, 6)
    _observe("ppdb002", first, 6)

    result = forecasts_score(limit=1)

    assert result.forecasts == 1 and ArchivedForecast.objects.filter(bands_scored=0).count() == 1


def test_retention_prunes_old_aggregates(settings):
    origin = _archive_flat_forecast()
    _observe("ppdb001", origin, 6)
    forecasts_score()
    settings.TFT_SCORE_RETENTION_DAYS = 1

    forecast_scores_prune(now=datetime.now(UTC) + timedelta(days=2))

    assert not ForecastScore.objects.exists()


def test_retention_keeps_recent_aggregates():
    origin = _archive_flat_forecast()
    _observe("ppdb001", origin, 6)
    forecasts_score()

    forecast_scores_prune()

    assert ForecastScore.objects.exists()
