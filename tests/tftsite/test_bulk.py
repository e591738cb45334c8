"""tftsite.bulk.objects_insert: COPY on PostgreSQL, with ON CONFLICT DO NOTHING's outcome when asked."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.db import IntegrityError, connection
from django.test.utils import CaptureQueriesContext

from forecasting.models import ArchivedForecast, ProbabilityOutcome
from ingest.models import Server
from tftsite.bulk import objects_insert

pytestmark = pytest.mark.django_db

ORIGIN = datetime(2026, 12, 7, 12, 30, tzinfo=UTC)


def _archived(server, *, origin=ORIGIN, method="tft", last=1.5):
    return ArchivedForecast(server=server, origin=origin, method=method, model_name="m", quantiles=b"\x00\x01'\"\\",
                            raw_quantiles=None, last_values=[last, None, 2.0, 3.0], scales=[0.1, 0.2, 0.3, 0.4],
                            created_at=ORIGIN)  # fmt: skip


@pytest.fixture
def servers():
    return [Server.objects.create(name=f"bulk{i:02d}", profile="web", first_seen=ORIGIN, last_seen=ORIGIN,
                                  last_received_at=ORIGIN) for i in range(3)]


def test_stored_rows_read_back_as_given(servers):
    objects_insert(model=ArchivedForecast, objs=[_archived(s) for s in servers])

    row = ArchivedForecast.objects.get(server=servers[1])
    assert (bytes(row.quantiles), row.raw_quantiles, row.last_values, row.origin, row.bands_scored) == (
        b"\x00\x01'\"\\", None, [1.5, None, 2.0, 3.0], ORIGIN, 0)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="COPY's JSON encoding (bulk_create's elsewhere)")
def test_json_columns_store_numpy_scalars_int_keys_and_nan_as_json_reads_them(servers):
    obj = _archived(servers[0])
    obj.last_values, obj.scales = [np.float64(1.25), np.float32(2.5), float("nan"), None], {1: 0.5}

    objects_insert(model=ArchivedForecast, objs=[obj])

    row = ArchivedForecast.objects.get()
    assert (row.last_values, row.scales) == ([1.25, 2.5, None, None], {"1": 0.5})  # NaN: null, not jsonb's error


def test_skip_existing_keeps_the_stored_row_and_adds_the_new_keys(servers):
    objects_insert(model=ArchivedForecast, objs=[_archived(servers[0], last=7.0)])

    sent = objects_insert(model=ArchivedForecast, objs=[_archived(s, last=1.0) for s in servers],
                          skip_existing=("server_id", "origin"))  # fmt: skip

    assert sent == 2
    assert sorted(ArchivedForecast.objects.values_list("server__name", "last_values__0")) == [
        ("bulk00", 7.0), ("bulk01", 1.0), ("bulk02", 1.0)]


def test_a_key_repeated_in_one_call_is_stored_once(servers):
    objs = [ProbabilityOutcome(server=servers[0], window="8h", origin=ORIGIN, profile="web", prob_prior=p,
                               prob_served=p, critical=[95.0, 95.0, 10.0, 20.0], created_at=ORIGIN)
            for p in (0.1, 0.2)]  # fmt: skip

    objects_insert(model=ProbabilityOutcome, objs=objs, skip_existing=("server_id", "window", "origin"))

    assert list(ProbabilityOutcome.objects.values_list("prob_prior", flat=True)) == [0.1]


def test_a_conflict_the_first_read_missed_is_skipped_not_raised(servers):
    """A row stored between the read of existing keys and the COPY (here: a key the read does not
    look at, method) makes the COPY fail; the rows go in as ON CONFLICT DO NOTHING instead."""
    objects_insert(model=ArchivedForecast, objs=[_archived(servers[0], method="heuristic", last=7.0)])

    objects_insert(model=ArchivedForecast, objs=[_archived(s) for s in servers],
                   skip_existing=("server_id", "origin", "method"))  # fmt: skip

    assert sorted(ArchivedForecast.objects.values_list("server__name", "method", "last_values__0")) == [
        ("bulk00", "heuristic", 7.0), ("bulk01", "tft", 1.5), ("bulk02", "tft", 1.5)]


def test_without_skip_existing_a_conflict_raises_and_stores_nothing(servers):
    objects_insert(model=ArchivedForecast, objs=[_archived(servers[0])])

    with pytest.raises(IntegrityError):
        objects_insert(model=ArchivedForecast, objs=[_archived(servers[1]), _archived(servers[0])])

    assert list(ArchivedForecast.objects.values_list("server__name", flat=True)) == ["bulk00"]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="COPY is PostgreSQL's")
def test_postgresql_stores_without_an_insert_statement(servers):
    with CaptureQueriesContext(connection) as queries:
        objects_insert(model=ArchivedForecast, objs=[_archived(s, origin=ORIGIN + timedelta(minutes=5)) for s in servers])

    assert ArchivedForecast.objects.count() == 3
    assert not [q["sql"] for q in queries.captured_queries if "INSERT" in q["sql"].upper()]
