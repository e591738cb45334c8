"""Day partitions of the raw records (PostgreSQL) and the retention that drops them."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.models import Count, Sum

from ingest import partitions, services
from ingest.models import FeedCounter, MetricBucket, MetricRecord, Server
from ingest.services import record_partitions_maintain, records_prune
from tests.conftest import ingest_as_received, series

pytestmark = pytest.mark.django_db


def pg_only(test):
    """Marked postgres_only and skipped on SQLite (the conftest fixture does the skipping)."""
    return pytest.mark.postgres_only(pytest.mark.usefixtures("postgres_only")(test))


def _ingest(records):
    return ingest_as_received(records)


def _counts_exact():
    """Every count the feed reports equals the rows actually stored."""
    per_server = dict(MetricRecord.objects.values("server_id").annotate(n=Count("id")).values_list("server_id", "n"))
    for server in Server.objects.all():
        assert server.record_count == per_server.get(server.id, 0), server.name
    assert FeedCounter.objects.aggregate(n=Sum("records"))["n"] == MetricRecord.objects.count()
    if connection.vendor == "postgresql":
        _day_counts_exact()


def _day_counts_exact():
    """The day counts the prune reads equal the partitioned table's rows per (UTC day, server)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT day, server_id, records FROM {partitions.DAY_COUNTS} ORDER BY 1, 2")
        kept = cursor.fetchall()
        cursor.execute(
            f"SELECT (\"timestamp\" AT TIME ZONE 'UTC')::date, server_id, count(*) FROM {partitions.PARENT} "
            "GROUP BY 1, 2 ORDER BY 1, 2"
        )
        assert kept == cursor.fetchall()


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

    # The test database was migrated when the session started: before midnight UTC in a run that
    # crosses it, so "the day of the migration" is today or yesterday, never earlier.
    migrated_on = max(days) - timedelta(days=3)
    assert migrated_on in (today, today - timedelta(days=1))
    assert migrated_on - timedelta(days=settings.TFT_RETENTION_DAYS) in days


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


@pg_only
def test_day_counts_rebuilt_from_rollups_equal_the_rows_per_day_and_server(monkeypatch):
    now = datetime.now(UTC)
    _ingest(series("a", n=5, start=now - timedelta(days=20)))
    records_prune(older_than=now - timedelta(days=14))  # a dropped day: its rollups still count it
    services._partition_days.clear()
    _ingest(series("a", n=2, start=now - timedelta(days=20, hours=-3)))  # ... then a late backfill of it
    _ingest(series("b", n=4, start=now - timedelta(days=2)))
    monkeypatch.setattr(services, "_partition_days", {(now - timedelta(days=30)).date()})
    _ingest(series("c", n=3, start=now - timedelta(days=30)))  # in the DEFAULT partition
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {partitions.DAY_COUNTS}")

        partitions.day_counts_rebuild(cursor)

    _day_counts_exact()


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



# --- partition_records: moving an upgraded database's legacy table ---------------------------


def _as_before_upgrade():
    """The state migration 0004 leaves on a big database: every stored record in the plain legacy
    table, counts and rollups as the feed wrote them, the partitioned table empty."""
    columns = ", ".join(f'"{c}"' for c in partitions.COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {partitions.LEGACY} (LIKE {partitions.PARENT} INCLUDING DEFAULTS)")
        cursor.execute(f"ALTER TABLE {partitions.LEGACY} ADD PRIMARY KEY (id)")
        cursor.execute(
            f"WITH m AS (DELETE FROM {partitions.PARENT} RETURNING {columns}) "
            f"INSERT INTO {partitions.LEGACY} ({columns}) SELECT {columns} FROM m"
        )
        partitions.day_counts_rebuild(cursor)  # what migration 0005 does on that database


def _snapshot():
    records = sorted(MetricRecord.objects.values_list("id", "server_id", "timestamp", "cpu_pct", "state"))
    buckets = sorted(MetricBucket.objects.values_list())
    servers = sorted(Server.objects.values_list("id", "record_count"))
    return records, buckets, servers, FeedCounter.objects.aggregate(n=Sum("records"))["n"]


def _legacy_rows() -> int:
    with connection.cursor() as cursor:
        if not partitions.table_exists(cursor, partitions.LEGACY):
            return 0
        cursor.execute(f"SELECT count(*) FROM {partitions.LEGACY}")
        return cursor.fetchone()[0]


_BASE = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)


def _fleet_over_days():
    for k, name in enumerate(("m1", "m2", "m3")):
        _ingest(series(name, n=12, start=_BASE - timedelta(days=k), every=timedelta(minutes=7)))


@pytest.fixture
def upgraded():
    _fleet_over_days()
    before = _snapshot()
    _as_before_upgrade()
    return before


@pg_only
def test_partition_records_moves_everything_and_keeps_counts_and_rollups(upgraded):
    call_command("partition_records", "--batch-size", "10")

    assert _snapshot() == upgraded
    _day_counts_exact()
    with connection.cursor() as cursor:
        assert not partitions.table_exists(cursor, partitions.LEGACY)


@pg_only
def test_partition_records_stopped_after_some_batches_leaves_the_rest_in_legacy(upgraded):
    call_command("partition_records", "--batch-size", "10", "--max-batches", "2")

    assert _legacy_rows() == 36 - 20
    assert MetricRecord.objects.count() == 20


@pg_only
def test_partition_records_resumed_after_an_interruption_ends_equal(upgraded, monkeypatch):
    real = partitions.move_legacy_batch
    calls = []

    def dies_on_the_third_batch(cursor, *, batch_size):
        calls.append(batch_size)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the operator's Ctrl-C, mid-batch
        return real(cursor, batch_size=batch_size)

    monkeypatch.setattr(partitions, "move_legacy_batch", dies_on_the_third_batch)
    with pytest.raises(KeyboardInterrupt):
        call_command("partition_records", "--batch-size", "7")
    monkeypatch.setattr(partitions, "move_legacy_batch", real)

    call_command("partition_records", "--batch-size", "7")

    assert _snapshot() == upgraded


@pg_only
def test_partition_records_counts_a_record_resent_after_the_upgrade_once(upgraded):
    _ingest(series("m2", n=12, start=_BASE - timedelta(days=1), every=timedelta(minutes=7)))  # a retry

    call_command("partition_records", "--batch-size", "5")

    records, *rest = _snapshot()
    assert sorted(r[1:] for r in records) == sorted(r[1:] for r in upgraded[0])  # the kept copy: the retry's ids
    assert rest == list(upgraded[1:])
    _day_counts_exact()


def test_partition_records_has_nothing_to_do_without_a_legacy_table(capsys):
    _ingest(series("a", n=3))

    call_command("partition_records")

    assert MetricRecord.objects.count() == 3
    assert "nothing to do" in capsys.readouterr().out or connection.vendor == "postgresql"
