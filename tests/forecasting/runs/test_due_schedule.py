"""Scheduled runs forecast each server once per closed 5-minute bucket, staggered over the bucket's
runs (forecasting.runs.selectors.due_server_ids); every reader keeps serving each server's current
forecast, whichever run made it."""

from datetime import UTC, datetime, timedelta

import pytest

from forecasting.models import Alert, ModelVersion, PredictionRun, ServerForecast
from forecasting.runs.chunks import fleet_predict
from forecasting.runs.selectors import server_slot
from forecasting.runs.services import prediction_runs_prune
from forecasting.windows import bucket_floor
from ingest.models import Server
from tests.conftest import ingest_fleet, make_record

pytestmark = pytest.mark.django_db
NAMES = [f"ppdb{i:03d}" for i in range(10)]


def _bucket_start() -> datetime:
    """A bucket boundary some minutes back, so that the runs below are never in the future."""
    return bucket_floor(datetime.now(UTC)) - timedelta(minutes=30)


def _feed_new_bucket(names: list[str], at: datetime, **values) -> None:
    """One record per server at `at` (a bucket that closes at the next boundary)."""
    from ingest.services import records_ingest
    from ingest.validation import validate_records

    clean, problems = validate_records([make_record(n, at, **values) for n in names])
    assert not problems
    records_ingest(records=clean)


def _forecast_names(run: PredictionRun) -> set[str]:
    return set(ServerForecast.objects.filter(run=run).values_list("server__name", flat=True))


def test_a_server_is_not_forecast_again_within_its_bucket(no_models):
    t = _bucket_start()
    ingest_fleet(NAMES, end=t)  # the newest bucket, [t - 5 min, t), is closed at t
    first = fleet_predict(now=t + timedelta(seconds=10), due_only=True)

    later = [fleet_predict(now=t + timedelta(seconds=10 + 60 * k), due_only=True) for k in range(1, 5)]

    assert first.forecasted == len(NAMES)
    assert [run.forecasted for run in later] == [0, 0, 0, 0]
    assert all(run.servers == len(NAMES) for run in later)  # still serving every server


def test_data_in_the_open_bucket_makes_no_server_due_until_it_closes(no_models, settings):
    settings.TFT_PREDICTION_STAGGER_RUNS = 1
    t = _bucket_start()
    ingest_fleet(NAMES, end=t)
    fleet_predict(now=t + timedelta(seconds=10), due_only=True)
    _feed_new_bucket(NAMES, t + timedelta(minutes=1))

    open_bucket = fleet_predict(now=t + timedelta(minutes=2), due_only=True)
    closed = fleet_predict(now=t + timedelta(minutes=5, seconds=10), due_only=True)

    assert open_bucket.forecasted == 0
    assert closed.forecasted == len(NAMES)
    origins = set(ServerForecast.objects.filter(run=closed).values_list("origin", flat=True))
    assert origins == {t + timedelta(minutes=5)}  # the window ends with the bucket that closed


def test_staggering_spreads_the_due_servers_over_the_buckets_runs_and_covers_all(no_models, settings):
    settings.TFT_PREDICTION_INTERVAL_SECONDS = 60  # 5 runs a bucket
    t = _bucket_start()
    ingest_fleet(NAMES, end=t)
    fleet_predict(now=t + timedelta(seconds=10), due_only=True)
    _feed_new_bucket(NAMES, t + timedelta(minutes=1))
    bucket = t + timedelta(minutes=5)

    runs = [fleet_predict(now=bucket + timedelta(seconds=10 + 60 * k), due_only=True) for k in range(5)]

    per_run = [_forecast_names(run) for run in runs]
    ids = dict(Server.objects.values_list("name", "id"))
    for phase, names in enumerate(per_run):
        assert names == {n for n in NAMES if server_slot(ids[n]) == phase}
        assert len(names) <= -(-len(NAMES) // 5)
    assert sorted(n for names in per_run for n in names) == sorted(NAMES)  # each once, all within the bucket


def test_a_missed_run_is_caught_up_by_the_next(no_models, settings):
    settings.TFT_PREDICTION_INTERVAL_SECONDS = 60
    t = _bucket_start()
    ingest_fleet(NAMES, end=t)
    fleet_predict(now=t + timedelta(seconds=10), due_only=True)
    _feed_new_bucket(NAMES, t + timedelta(minutes=1))

    run = fleet_predict(now=t + timedelta(minutes=7, seconds=10), due_only=True)  # phase 2; 0 and 1 missed

    ids = dict(Server.objects.values_list("name", "id"))
    assert _forecast_names(run) == {n for n in NAMES if server_slot(ids[n]) <= 2}


def test_a_new_active_model_makes_every_server_due(no_models, settings, tmp_path):
    settings.TFT_PREDICTION_STAGGER_RUNS = 1
    t = _bucket_start()
    ingest_fleet(NAMES, end=t)
    fleet_predict(now=t + timedelta(seconds=10), due_only=True)
    folder = tmp_path / "tft_model_20260101T000000Z"
    folder.mkdir()
    ModelVersion.objects.create(name=folder.name, path=str(folder), created_at=datetime.now(UTC), is_active=True)

    changed = fleet_predict(now=t + timedelta(seconds=70), due_only=True)
    again = fleet_predict(now=t + timedelta(seconds=130), due_only=True)

    assert changed.forecasted == len(NAMES)
    assert again.forecasted == 0


def test_readers_serve_every_servers_current_forecast_after_a_partial_run(client, no_models, settings):
    settings.TFT_PREDICTION_STAGGER_RUNS = 1
    t = _bucket_start()
    ingest_fleet(NAMES, end=t)
    fleet_predict(now=t + timedelta(seconds=10), due_only=True)
    _feed_new_bucket(NAMES[:3], t + timedelta(minutes=1))  # only three servers report a new bucket

    partial = fleet_predict(now=t + timedelta(minutes=5, seconds=10), due_only=True)

    assert partial.forecasted == 3
    body = client.get("/predictions/current").json()
    assert set(body["predictions"]) == set(NAMES)
    assert body["metadata"]["run_id"] == partial.pk
    assert body["metadata"]["servers"] == len(NAMES)
    assert body["environment"]["total_servers"] == len(NAMES)
    assert body["predictions"][NAMES[0]]["cpu_pct"]["origin"].startswith((t + timedelta(minutes=5)).isoformat()[:16])
    assert body["predictions"][NAMES[9]]["cpu_pct"]["origin"].startswith(t.isoformat()[:16])
    assert client.get(f"/predictions/{NAMES[9]}").status_code == 200
    assert client.get("/status").json()["predictions"]["servers"] == len(NAMES)


def test_an_open_alert_stays_open_through_runs_that_do_not_forecast_its_server(no_models):
    t = _bucket_start()
    ingest_fleet({"ppdb001": {"cpu_pct": 97.0}, "ppdb002": {}}, end=t)
    fleet_predict(now=t + timedelta(seconds=10), due_only=True)
    opened = set(Alert.objects.filter(state=Alert.State.ACTIVE).values_list("pk", flat=True))

    quiet = fleet_predict(now=t + timedelta(seconds=70), due_only=True)

    assert opened and quiet.forecasted == 0
    assert set(Alert.objects.filter(state=Alert.State.ACTIVE).values_list("pk", flat=True)) == opened


def test_a_server_no_longer_ready_stops_being_served(no_models, settings):
    t = _bucket_start()
    ingest_fleet(NAMES, end=t)
    fleet_predict(now=t + timedelta(seconds=10), due_only=True)
    settings.TFT_SERVER_STALE_HOURS = 1

    later = fleet_predict(now=t + timedelta(hours=2), due_only=True)

    assert later.servers == 0
    assert not ServerForecast.objects.filter(current=True).exists()


def test_pruning_keeps_the_runs_whose_forecasts_are_still_served(no_models, settings):
    settings.TFT_PREDICTION_STAGGER_RUNS = 1
    t = _bucket_start()
    ingest_fleet(NAMES, end=t)
    first = fleet_predict(now=t + timedelta(seconds=10), due_only=True)
    for k in range(1, 4):
        fleet_predict(now=t + timedelta(seconds=10 + 60 * k), due_only=True)

    prediction_runs_prune(keep=2)

    assert PredictionRun.objects.filter(pk=first.pk).exists()
    assert ServerForecast.objects.filter(current=True).count() == len(NAMES)
    assert PredictionRun.objects.count() == 3  # the serving run and the two newest
