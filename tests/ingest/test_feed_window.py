"""What the feed stores: timestamps inside the retention window and the datetime range, metric values
the rollups can add up. Anything else is a 400 naming the record and the field, and stores nothing."""

import math
from datetime import UTC, date, datetime, timedelta

import pytest
from django.db import connection

from ingest import partitions, services
from ingest.models import MetricBucket, MetricRecord, Server
from ingest.validation import METRIC_MAXIMA, timestamp_window
from tests.conftest import RECENT, make_record, post_feed

pytestmark = pytest.mark.django_db


def _rejected(client, records) -> list[dict]:
    response = post_feed(client, {"records": records})
    assert response.status_code == 400, response.content
    assert (MetricRecord.objects.count(), MetricBucket.objects.count(), Server.objects.count()) == (0, 0, 0)
    body = response.json()
    assert body["error"] == "invalid_records"
    return body["errors"]


@pytest.mark.parametrize("timestamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_an_offset_that_moves_the_instant_out_of_the_datetime_range_is_a_400(client, timestamp):
    errors = _rejected(client, [make_record(), make_record("ppdb002", ts=timestamp)])

    assert errors == [
        {"index": 1, "field": "timestamp", "message": "is outside the range of dates (years 1 to 9999 in UTC)"}
    ]


def test_a_record_a_thousand_years_old_is_refused_as_outside_retention(client, settings):
    errors = _rejected(client, [make_record(ts="0999-05-01T00:00:00")])

    assert [(e["index"], e["field"]) for e in errors] == [(0, "timestamp")]
    assert f"older than the retention window of {settings.TFT_RETENTION_DAYS} days" in errors[0]["message"]


def test_the_guide_date_is_outside_the_window(client):
    errors = _rejected(client, [make_record(ts="2025-10-13T16:00:00")])

    assert errors[0]["field"] == "timestamp" and "earliest accepted" in errors[0]["message"]


def test_the_window_runs_from_retention_back_to_five_minutes_ahead(client, settings):
    now = datetime.now(UTC)
    oldest_kept = now - timedelta(days=settings.TFT_RETENTION_DAYS) + timedelta(minutes=1)

    errors = _rejected(client, [make_record("x1", ts=oldest_kept - timedelta(minutes=2))])
    accepted = post_feed(client, {"records": [make_record(ts=oldest_kept), make_record(ts=now + timedelta(minutes=4))]})

    assert errors[0]["field"] == "timestamp"
    assert accepted.status_code == 200, accepted.content


def test_the_window_follows_the_retention_setting(client, settings):
    settings.TFT_RETENTION_DAYS = 3

    errors = _rejected(client, [make_record(ts=datetime.now(UTC) - timedelta(days=3, minutes=1))])

    assert "retention window of 3 days" in errors[0]["message"]


def test_timestamp_window_is_retention_back_and_the_skew_ahead(settings):
    now = datetime(2026, 6, 1, 12, tzinfo=UTC)

    window = timestamp_window(now=now)

    assert window.earliest == now - timedelta(days=settings.TFT_RETENTION_DAYS)
    assert window.latest == now + timedelta(seconds=settings.TFT_MAX_FUTURE_SECONDS)


@pytest.mark.parametrize(("field", "huge"), [("disk_io_mb_s", 1e308), ("latency_ms", 1.7e308)])
def test_values_whose_rollup_sum_would_overflow_are_a_400(client, field, huge):
    records = [make_record(), make_record(ts=RECENT + timedelta(seconds=5))]
    records[0][field] = records[1][field] = huge

    errors = _rejected(client, records)

    assert {(e["index"], e["field"]) for e in errors} == {(0, field), (1, field)}
    assert errors[0]["message"] == f"must be at most {METRIC_MAXIMA[field]:.0f}"


@pytest.mark.parametrize("field", ["disk_io_mb_s", "latency_ms"])
def test_a_value_just_above_the_maximum_is_a_400(client, field):
    bad = make_record()
    bad[field] = math.nextafter(METRIC_MAXIMA[field], math.inf)

    assert _rejected(client, [bad])[0]["field"] == field


def test_maxima_in_one_bucket_keep_the_rollup_finite(client):
    top = {
        "cpu": METRIC_MAXIMA["cpu_pct"],
        "mem": METRIC_MAXIMA["mem_pct"],
        "disk": METRIC_MAXIMA["disk_io_mb_s"],
        "latency": METRIC_MAXIMA["latency_ms"],
    }
    records = [make_record(ts=RECENT + timedelta(seconds=i), **top) for i in range(60)]

    response = post_feed(client, {"records": records})

    assert response.status_code == 200, response.content
    bucket = MetricBucket.objects.get()
    assert bucket.count == 60
    assert bucket.mean("latency_ms") == METRIC_MAXIMA["latency_ms"]
    assert bucket.disk_io_mb_s_sum == 60 * METRIC_MAXIMA["disk_io_mb_s"]


def test_worst_case_bucket_sum_is_finite_in_float32():
    # 300 s of distinct microsecond timestamps: the most records one server's bucket can hold.
    most_records_per_bucket = 300 * 10**6

    for maximum in METRIC_MAXIMA.values():
        assert most_records_per_bucket * maximum < 3.4e38


def _partition_days() -> set[date]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(%s)",
            [partitions.PARENT],
        )
        names = {name for (name,) in cursor.fetchall()}
    return names


@pytest.mark.usefixtures("postgres_only")
def test_a_batch_cannot_create_partitions_outside_retention(client, settings):
    before = _partition_days()
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    old_days = [make_record(f"old{k}", ts=f"{year:04d}-05-01T00:00:00") for k, year in enumerate((999, 1000, 2000))]
    out_of_window = [
        make_record(f"late{k}", ts=today - timedelta(days=settings.TFT_RETENTION_DAYS + k)) for k in range(1, 20)
    ]

    _rejected(client, old_days + out_of_window)

    assert _partition_days() == before


@pytest.mark.usefixtures("postgres_only")
def test_every_partition_a_batch_creates_is_one_retention_manages(client, settings, monkeypatch):
    monkeypatch.setattr(services, "_partition_days", set())
    with connection.cursor() as cursor:
        for day in partitions.attached_days(cursor):  # as if neither migrate nor the beat had created any
            cursor.execute(f"DROP TABLE {partitions.partition_name(day)}")
    now = datetime.now(UTC)
    records = [make_record(f"d{k:02d}", ts=now - timedelta(days=k)) for k in range(settings.TFT_RETENTION_DAYS)]

    assert post_feed(client, {"records": records}).status_code == 200

    with connection.cursor() as cursor:
        days = partitions.attached_days(cursor)
    assert len(_partition_days() - {partitions.DEFAULT}) == len(days) == settings.TFT_RETENTION_DAYS
    assert min(days) >= (now - timedelta(days=settings.TFT_RETENTION_DAYS)).date()


def test_partition_names_of_years_before_1000_are_the_names_retention_matches():
    name = partitions.partition_name(date(999, 5, 1))

    assert name == "ingest_metricrecord_p09990501"
    assert partitions._NAME.match(name)
