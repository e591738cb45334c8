"""A server whose newest bucket is older than TFT_STALE_AFTER_MINUTES at the run's start raises no
alerts, and its open alerts are left as they are."""

from datetime import UTC, datetime, timedelta

import pytest

from forecasting.models import Alert
from forecasting.runs.chunks import fleet_predict
from forecasting.runs.selectors import stale_forecast_count
from tests.conftest import ingest_fleet

pytestmark = pytest.mark.django_db

HOT = {"cpu_pct": 97.0}  # at the critical threshold: the heuristic's forecast calls for a critical alert


def test_a_stale_server_raises_no_alert(no_models):
    ingest_fleet({"ppdb001": HOT}, end=datetime.now(UTC) - timedelta(hours=1))

    run = fleet_predict()

    assert not Alert.objects.exists() and stale_forecast_count(run) == 1


def test_a_fresh_server_with_the_same_forecast_raises_its_alert(no_models):
    ingest_fleet({"ppdb001": HOT}, end=datetime.now(UTC) - timedelta(hours=1))
    ingest_fleet({"ppdb002": HOT})

    fleet_predict()

    assert set(Alert.objects.values_list("server__name", flat=True)) == {"ppdb002"}


def test_an_open_alert_is_neither_resolved_nor_refreshed_while_its_server_is_stale(no_models):
    ingest_fleet({"ppdb001": HOT})
    first = fleet_predict()
    before = list(Alert.objects.values_list("pk", "state", "updated_at", "last_run_id"))

    fleet_predict(now=datetime.now(UTC) + timedelta(hours=1))  # the same data, an hour later: stale

    assert before and list(Alert.objects.values_list("pk", "state", "updated_at", "last_run_id")) == before
    assert before[0][3] == first.pk
