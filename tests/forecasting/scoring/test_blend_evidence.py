"""The live scorer's sums that move the served blend (forecasting.scoring.selectors.blend_evidence)."""

from datetime import UTC, datetime, timedelta
from importlib import import_module

import numpy as np
import pytest
from django.apps import apps

from forecasting.engine.spec import BAND_NAMES, TARGETS
from forecasting.models import ForecastScore, ModelVersion
from forecasting.scoring.selectors import blend_evidence
from ingest.models import Server

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)


def _server(name: str) -> Server:
    return Server.objects.create(name=name, profile="web_api", first_seen=NOW, last_seen=NOW, last_received_at=NOW)


MODEL = "tft_model_new"


def _score(server: Server, hours_ago: int, metric: str = "cpu_pct", band: str = "0-30m", n: int = 10, *,
           model: str = MODEL, kind: str = "served") -> None:
    ForecastScore.objects.create(server=server, metric=metric, band=band, hour=NOW - timedelta(hours=hours_ago), n=n,
                                 abs_err=2.0 * n, naive_abs_err=1.0 * n, scale=0.5 * n, pinball=9.0, inside=n,
                                 kind=kind, model_name=model)  # fmt: skip


def test_sums_add_the_hours_of_the_last_day_per_server_metric_and_band_in_the_order_asked():
    web, db = _server("ppweb001"), _server("ppdb001")
    _score(web, 1)
    _score(web, 20)
    _score(db, 2, metric="latency_ms", band="2-8h", n=4)

    sums = blend_evidence(server_ids=[db.pk, web.pk], model_name=MODEL, now=NOW)

    assert sums.shape == (2, len(TARGETS), len(BAND_NAMES), 4)
    np.testing.assert_array_equal(sums[1, TARGETS.index("cpu_pct"), 0], [20, 40.0, 20.0, 10.0])  # n, abs, naive, scale
    np.testing.assert_array_equal(sums[0, TARGETS.index("latency_ms"), 2], [4, 8.0, 4.0, 2.0])
    assert np.count_nonzero(sums.any(axis=-1)) == 2


def test_scores_older_than_a_day_are_left_out():
    web = _server("ppweb001")
    _score(web, 30)

    assert not blend_evidence(server_ids=[web.pk], model_name=MODEL, now=NOW).any()


def test_a_server_without_scores_has_no_evidence():
    assert not blend_evidence(server_ids=[_server("ppweb001").pk], model_name=MODEL, now=NOW).any()


def test_another_model_versions_scores_are_left_out():
    web = _server("ppweb001")
    _score(web, 1, model="tft_model_old")  # served before the switch, scored after it

    assert not blend_evidence(server_ids=[web.pk], model_name=MODEL, now=NOW).any()


def test_the_heuristics_scores_are_left_out():
    web = _server("ppweb001")
    _score(web, 1, model="")

    assert not blend_evidence(server_ids=[web.pk], model_name=MODEL, now=NOW).any()


def test_the_raw_tft_scores_are_left_out():
    web = _server("ppweb001")
    _score(web, 1, kind="raw")

    assert not blend_evidence(server_ids=[web.pk], model_name=MODEL, now=NOW).any()


def test_the_migration_keeps_the_scores_before_it_as_the_active_models_evidence():
    migration = import_module("forecasting.migrations.0016_served_and_raw_scores")
    ModelVersion.objects.create(name=MODEL, path=f"/nowhere/{MODEL}", created_at=NOW, is_active=True)
    web = _server("ppweb001")
    _score(web, 1, model="")  # as stored before 0016: served, no model

    migration.attribute_to_active_model(apps, None)

    assert blend_evidence(server_ids=[web.pk], model_name=MODEL, now=NOW)[0, TARGETS.index("cpu_pct"), 0, 0] == 10
