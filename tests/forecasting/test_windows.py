"""forecasting.windows: the silenced spans every consumer leaves out, here the buckets where a
server reported state `maintenance` (maintenance windows: tests/forecasting/alerts)."""

from datetime import timedelta

import numpy as np
import pytest

from forecasting.windows import bucket_floor, server_histories, silenced_spans
from ingest.models import Server
from tests.conftest import ingest_fleet

pytestmark = pytest.mark.django_db

STEP = timedelta(minutes=5)


def _fleet():
    """ppdb001 reports `maintenance` in buckets 10-12 of 36, ppweb002 never; returns the first bucket."""
    shape = {"state": lambda i: "maintenance" if 10 <= i <= 12 else "healthy"}
    end = ingest_fleet({"ppdb001": shape, "ppweb002": {}}, buckets=36)
    return end - 35 * STEP


def test_maintenance_state_buckets_are_one_silenced_span():
    start = _fleet()
    ids = dict(Server.objects.values_list("name", "id"))
    spans = silenced_spans(server_ids=list(ids.values()), start=start, end=start + 36 * STEP)
    first = bucket_floor(start + 10 * STEP)
    assert spans == {ids["ppdb001"]: [(first, first + 3 * STEP, None)]}


def test_no_span_when_the_setting_is_off(settings):
    settings.TFT_MAINTENANCE_STATE_SILENCES = False
    start = _fleet()
    assert silenced_spans(server_ids=list(Server.objects.values_list("id", flat=True)), start=start,
                          end=start + 36 * STEP) == {}  # fmt: skip


def test_maintenance_state_buckets_are_left_out_of_training_data():
    _fleet()
    by_name = {w.server: w for w in server_histories()}  # what retraining and train_tft read
    gone = np.isnan(by_name["ppdb001"].values).all(axis=1)
    assert np.flatnonzero(gone).tolist() == [10, 11, 12]
    assert not np.isnan(by_name["ppweb002"].values).any()
    assert not np.isnan(server_histories(keep_silenced=True)[0].values).any()
