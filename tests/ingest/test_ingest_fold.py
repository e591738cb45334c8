"""Batches of servers past warm-up leave their increments in ingest_pendingfold (PostgreSQL);
records_fold adds them to the rollups, server counts and day counts exactly once: after concurrent
feeders and folders, when a fold fails half-way, when the process stops between commit and fold,
and before a prune takes a day's records off the counts. Readers fold first."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import DatabaseError, connection, transaction

from ingest import fold
from ingest.fold import records_fold
from ingest.models import MetricBucket, MetricRecord, Server
from ingest.selectors import feed_totals, server_readiness_list
from ingest.services import records_ingest, records_prune
from ingest.tasks import fold_pending_records
from tests.ingest.test_ingest_guide_shape import START, _assert_matches_raw_records, _batch

pytestmark = pytest.mark.usefixtures("postgres_only")


@pytest.fixture
def settled(settings):
    """Servers past warm-up after two batches; a fold only when asked (no age reaches a minute)."""
    settings.TFT_WARMUP_RECORDS = 2
    settings.TFT_INGEST_FOLD_AFTER_SECONDS = 60.0
    return settings


def _pending() -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {fold.PENDING_FOLD}")
        return cursor.fetchone()[0]


def _warm(servers: list[str]) -> None:
    for k in range(2):
        records_ingest(records=_batch(servers, START + timedelta(seconds=5 * k), k))
    assert _pending() == 0  # still warming up: counted in their own transaction


@pytest.mark.django_db
def test_a_settled_batch_is_left_pending_and_folded_exactly(settled):
    servers = [f"fdweb{i:03d}" for i in range(30)]
    _warm(servers)
    counts_before = dict(Server.objects.values_list("name", "record_count"))

    result = records_ingest(records=_batch(servers, START + timedelta(seconds=10), 2))

    assert result.accepted == 30 and _pending() == 1
    assert dict(Server.objects.values_list("name", "record_count")) == counts_before
    assert records_fold() == 1
    assert _pending() == 0
    _assert_matches_raw_records()


@pytest.mark.django_db
def test_the_feed_response_of_a_settled_batch_is_exact_without_a_fold(settled):
    servers = [f"fdresp{i:02d}" for i in range(5)]
    _warm(servers)

    result = records_ingest(records=_batch(servers, START + timedelta(seconds=10), 2))

    assert _pending() == 1
    assert (result.servers_tracked, result.servers_ready, result.window_size) == (5, 5, 15)


@pytest.mark.django_db
def test_a_second_fold_changes_nothing(settled):
    servers = [f"fdtwice{i:02d}" for i in range(10)]
    _warm(servers)
    records_ingest(records=_batch(servers, START + timedelta(seconds=10), 2))
    records_fold()
    buckets = sorted(MetricBucket.objects.values_list())
    server_rows = sorted(Server.objects.values_list())

    assert records_fold() == 0
    assert sorted(MetricBucket.objects.values_list()) == buckets
    assert sorted(Server.objects.values_list()) == server_rows


@pytest.mark.django_db
def test_duplicates_of_a_settled_batch_are_not_counted_but_move_arrival_time(settled):
    servers = [f"fddup{i:02d}" for i in range(8)]
    _warm(servers)
    retry_at = datetime.now(UTC) + timedelta(minutes=1)

    assert records_ingest(records=_batch(servers, START, 0), received_at=retry_at).accepted == 0
    records_fold()

    assert set(Server.objects.values_list("last_received_at", flat=True)) == {retry_at}
    _assert_matches_raw_records()


@pytest.mark.django_db
def test_increments_survive_a_stop_between_commit_and_fold(settled):
    """The in-request fold never ran (the process stopped after the commit): the beat's task folds
    them once they are due."""
    servers = [f"fdstop{i:02d}" for i in range(12)]
    _warm(servers)
    for k in range(2, 6):
        records_ingest(records=_batch(servers, START + timedelta(seconds=5 * k), k))
    assert _pending() == 4
    assert fold_pending_records() == 0  # the beat leaves rows younger than TFT_INGEST_FOLD_AFTER_SECONDS

    settled.TFT_INGEST_FOLD_AFTER_SECONDS = 0.0  # later: they are old enough
    assert fold_pending_records() == 4
    _assert_matches_raw_records()


@pytest.mark.django_db
def test_a_fold_that_fails_applies_nothing_and_keeps_its_rows(settled):
    servers = [f"fdfail{i:02d}" for i in range(12)]
    _warm(servers)
    records_ingest(records=_batch(servers, START + timedelta(seconds=10), 2))
    buckets = sorted(MetricBucket.objects.values_list())

    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        fold.fold_locked(cursor)
        cursor.execute("SELECT 1/0")  # the process fails before its commit

    assert _pending() == 1
    assert sorted(MetricBucket.objects.values_list()) == buckets
    records_fold()
    _assert_matches_raw_records()


@pytest.mark.django_db
def test_readers_fold_first(settled):
    servers = [f"fdread{i:02d}" for i in range(4)]
    _warm(servers)
    records_ingest(records=_batch(servers, START + timedelta(seconds=10), 2))

    listed = {row["server"]: row["records"] for row in server_readiness_list()}

    assert listed == dict.fromkeys(servers, 3)
    assert _pending() == 0


@pytest.mark.django_db
def test_prune_folds_pending_records_of_the_dropped_day_first(settled):
    now = datetime.now(UTC).replace(microsecond=0)
    servers = [f"fdprune{i:02d}" for i in range(6)]
    for k in range(2):
        records_ingest(records=_batch(servers, now - timedelta(hours=1, seconds=5 * k), k))
    old = now - timedelta(days=20)
    records_ingest(records=_batch(servers, old, 5))  # settled: its counts are pending
    assert _pending() == 1

    assert records_prune(older_than=now - timedelta(days=14)) == 6

    assert _pending() == 0
    assert dict(Server.objects.values_list("name", "record_count")) == dict.fromkeys(servers, 2)
    assert feed_totals()[0].records == MetricRecord.objects.count() == 12


@pytest.mark.django_db(transaction=True)
def test_concurrent_settled_feeders_and_folders_stay_exact(settled):
    servers = [f"fdcc{i:03d}" for i in range(100)]
    _warm(servers)
    stamps = [START + timedelta(seconds=5 * k) for k in range(2, 32)]
    batches = [_batch(servers, ts, k) for k, ts in enumerate(stamps, 2)]
    # Three feeders send every batch (each record arrives three times at once, some batches with
    # the servers reversed) while two folders fold, one waiting for the lock and one not.
    plans = [batches, batches[::-1], [b[::-1] for b in batches[1::2] + batches[::2]]]
    done = threading.Event()
    errors = []

    def feeder(plan):
        try:
            for b in plan:
                records_ingest(records=b)
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    def folder(wait):
        try:
            while not done.is_set():
                records_fold(wait=wait)
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    folders = [threading.Thread(target=folder, args=(w,)) for w in (True, False)]
    feeders = [threading.Thread(target=feeder, args=(p,)) for p in plans]
    for t in folders + feeders:
        t.start()
    for t in feeders:
        t.join()
    done.set()
    for t in folders:
        t.join()

    assert not errors
    assert MetricRecord.objects.count() == len(servers) * (len(stamps) + 2)
    _assert_matches_raw_records()
    assert _pending() == 0


def _another_process_adds_a_server(name: str) -> None:
    now = datetime.now(UTC)
    Server.objects.create(name=name, profile="generic", first_seen=now, last_seen=now, last_received_at=now,
                          record_count=500)  # fmt: skip


@pytest.mark.django_db
def test_a_settled_batch_reuses_this_process_recent_server_counts(settled):
    settled.TFT_FEED_SERVER_COUNTS_MAX_AGE_SECONDS = 60.0
    servers = [f"fdcnt{i:02d}" for i in range(4)]
    _warm(servers)  # counted afresh: warming up
    _another_process_adds_a_server("fdcnt-other")

    result = records_ingest(records=_batch(servers, START + timedelta(seconds=10), 2))

    assert _pending() == 1  # settled
    assert (result.servers_tracked, result.servers_ready, result.window_size) == (4, 4, 12)


@pytest.mark.django_db
def test_server_counts_older_than_the_limit_are_counted_afresh(settled):
    settled.TFT_FEED_SERVER_COUNTS_MAX_AGE_SECONDS = 0.0
    servers = [f"fdage{i:02d}" for i in range(4)]
    _warm(servers)
    _another_process_adds_a_server("fdage-other")

    result = records_ingest(records=_batch(servers, START + timedelta(seconds=10), 2))

    assert _pending() == 1
    assert (result.servers_tracked, result.servers_ready) == (5, 5)


@pytest.mark.django_db
def test_a_batch_that_is_not_settled_always_counts_afresh(settled):
    settled.TFT_FEED_SERVER_COUNTS_MAX_AGE_SECONDS = 60.0
    servers = [f"fdnew{i:02d}" for i in range(4)]
    _warm(servers)
    _another_process_adds_a_server("fdnew-other")

    result = records_ingest(records=_batch([*servers, "fdnew-brand"], START + timedelta(seconds=10), 2))

    assert _pending() == 0  # a new server: counted in its own transaction
    assert (result.servers_tracked, result.servers_ready) == (6, 5)
