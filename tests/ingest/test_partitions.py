"""Day partitions of the raw records (PostgreSQL) and the retention that drops them."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.models import Count, Sum

from ingest import partitions, services
from ingest.models import FeedCounter, MetricBucket, MetricRecord, Server
from ingest.services import record_partitions_maintain, records_ingest, records_prune
from ingest.validation import validate_records
from tests.conftest import series

pytestmark = pytest.mark.django_db


def pg_only(test):
    """Marked postgres_only and skipped on SQLite (the conftest fixture does the skipping)."""
    return pytest.mark.postgres_only(pytest.mark.usefixtures("postgres_only")(test))


def _ingest(records):
    clean, problems = validate_records(records)
    assert not problems
    return records_ingest(records=clean)


def _counts_exact():
    """Every count the feed reports equals the rows actually stored."""
    per_server = dict(MetricRecord.objects.values("server_id").annotate(n=Count("id")).values_list("server_id", "n"))
    for server in Server.objects.all():
        assert server.record_count == per_server.get(server.id, 0), server.name
    assert FeedCounter.objects.aggregate(n=Sum("records"))["n"] == MetricRecord.objects.count()


def _table_of(server_name: str) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT r.tableoid::regclass::text FROM ingest_metricrecord r "
            "JOIN ingest_server s ON s.id = r.server_id WHERE s.name = %s",
            [server_name],
        )
        return {name for (name,) in cursor.fetchall()}


def _attached_days():
    with connection.cursor() as cursor:
        return partitions.attached_days(cursor)


@pg_only
def test_migrate_creates_partitions_from_retention_to_three_days_ahead(settings):
    today = datetime.now(UTC).date()

    days = _attached_days()

    assert today - timedelta(days=settings.TFT_RETENTION_DAYS) in days
    assert today + timedelta(days=3) in days


@pg_only
def test_backfill_of_a_day_without_partition_creates_that_partition():
    day = datetime(2024, 2, 29, 12, 0, tzinfo=UTC)

    _ingest(series("old01", n=3, start=day))

    assert _table_of("old01") == {"ingest_metricrecord_p20240229"}


@pg_only
def test_record_whose_partition_this_process_wrongly_believes_exists_lands_in_default(monkeypatch):
    day = datetime(2023, 5, 1, 8, 0, tzinfo=UTC)
    monkeypatch.setattr(services, "_partition_days", {day.date()})  # stale: another process dropped it

    result = _ingest(series("stray01", n=4, start=day))

    assert result.accepted == 4
    assert _table_of("stray01") == {partitions.DEFAULT}


@pg_only
def test_maintenance_moves_default_rows_into_their_partition_and_keeps_counts(monkeypatch):
    day = datetime(2023, 5, 1, 8, 0, tzinfo=UTC)
    monkeypatch.setattr(services, "_partition_days", {day.date()})
    _ingest(series("stray01", n=4, start=day))

    result = record_partitions_maintain()

    assert result["moved"] == 4
    assert _table_of("stray01") == {"ingest_metricrecord_p20230501"}
    _counts_exact()


@pg_only
def test_maintenance_recreates_a_missing_partition_ahead():
    ahead = datetime.now(UTC).date() + timedelta(days=2)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {partitions.partition_name(ahead)}")

    record_partitions_maintain()

    assert ahead in _attached_days()


@pg_only
def test_prune_drops_expired_day_partitions():
    now = datetime.now(UTC)
    _ingest(series("a", n=5, start=now - timedelta(days=20)) + series("a", n=2, start=now - timedelta(hours=1)))
    expired = (now - timedelta(days=20)).date()

    records_prune(older_than=now - timedelta(days=14))

    assert expired not in _attached_days()
    with connection.cursor() as cursor:
        assert not partitions.table_exists(cursor, partitions.partition_name(expired))


@pg_only
def test_prune_by_partition_keeps_per_server_and_global_counts_exact():
    now = datetime.now(UTC)
    old = now - timedelta(days=20)
    _ingest(series("a", n=7, start=old) + series("b", n=3, start=old) + series("b", n=4, start=now - timedelta(hours=2)))
    _ingest(series("c", n=6, start=old - timedelta(days=1)))

    deleted = records_prune(older_than=now - timedelta(days=14))

    assert deleted == 16
    assert Server.objects.get(name="b").record_count == 4
    _counts_exact()


@pg_only
def test_prune_keeps_the_day_that_holds_the_cutoff():
    cutoff = datetime(2025, 6, 10, 12, 0, tzinfo=UTC)
    _ingest(series("a", n=3, start=cutoff - timedelta(hours=1)))

    deleted = records_prune(older_than=cutoff)

    assert deleted == 0
    assert MetricRecord.objects.count() == 3


@pg_only
def test_prune_finishes_a_day_detached_by_an_interrupted_prune_with_a_late_backfill():
    now = datetime.now(UTC)
    old = now - timedelta(days=20)
    _ingest(series("a", n=5, start=old))
    with connection.cursor() as cursor:
        partitions.detach_partition(cursor, old.date())  # ... and the prune stopped here
    services._partition_days.discard(old.date())
    _ingest(series("a", n=2, start=old + timedelta(hours=3)))  # late backfill: a new partition

    deleted = records_prune(older_than=now - timedelta(days=14))

    assert deleted == 7
    with connection.cursor() as cursor:
        assert partitions.detached_tables(cursor) == []
    _counts_exact()


@pg_only
def test_prune_deletes_expired_rows_of_the_default_partition(monkeypatch):
    now = datetime.now(UTC)
    old = now - timedelta(days=30)
    monkeypatch.setattr(services, "_partition_days", {old.date()})
    _ingest(series("a", n=3, start=old))

    deleted = records_prune(older_than=now - timedelta(days=14))

    assert deleted == 3
    _counts_exact()


def test_prune_keeps_rollups_of_dropped_days():
    now = datetime.now(UTC)
    _ingest(series("a", n=5, start=now - timedelta(days=20)))

    records_prune(older_than=now - timedelta(days=14))

    assert MetricBucket.objects.aggregate(n=Sum("count"))["n"] == 5


def test_prune_records_task_prunes(settings):
    from ingest.tasks import prune_records

    now = datetime.now(UTC)
    _ingest(series("a", n=4, start=now - timedelta(days=settings.TFT_RETENTION_DAYS + 3)))

    assert prune_records.apply().get() == 4


def test_maintenance_task_is_scheduled_by_beat(settings):
    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}

    assert "ingest.tasks.maintain_record_partitions" in tasks


@pytest.fixture
def plain_static(settings):
    # The manifest storage needs collectstatic's manifest; the admin templates only need {% static %}.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


def test_admin_record_list_renders(admin_client, plain_static):
    _ingest(series("adm01", n=3, start=datetime.now(UTC) - timedelta(hours=1)))

    response = admin_client.get("/admin/ingest/metricrecord/", HTTP_HOST="localhost")

    assert response.status_code == 200
    assert b"adm01" in response.content


def test_admin_record_page_renders(admin_client, plain_static):
    _ingest(series("adm01", n=1, start=datetime.now(UTC) - timedelta(hours=1)))
    record = MetricRecord.objects.get()

    response = admin_client.get(f"/admin/ingest/metricrecord/{record.pk}/change/", HTTP_HOST="localhost")

    assert response.status_code == 200
    assert b"adm01" in response.content

