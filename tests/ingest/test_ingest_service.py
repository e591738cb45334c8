"""Idempotency, exact rollups, concurrency and warmup of the ingest service."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from ingest.contract import METRICS
from ingest.models import MetricBucket, MetricRecord, Server
from ingest.selectors import fleet_readiness
from ingest.services import records_fold, records_ingest, records_prune
from ingest.validation import validate_records
from tests.conftest import RECENT, ingest_as_received, make_record, post_feed, series

START = RECENT


def _ingest(records):
    clean, problems = validate_records(records)
    assert not problems
    return records_ingest(records=clean)


def _expected_buckets(records):
    out = {}
    for r in records:
        ts = datetime.fromisoformat(r["timestamp"])
        start = ts.replace(minute=ts.minute - ts.minute % 5, second=0, microsecond=0)
        b = out.setdefault(
            (r["server_name"], start),
            {"count": 0, **{f"{m}_sum": 0.0 for m in METRICS}, **{f"{m}_max": float("-inf") for m in METRICS}},
        )
        b["count"] += 1
        for m in METRICS:
            b[f"{m}_sum"] += r[m]
            b[f"{m}_max"] = max(b[f"{m}_max"], r[m])
    return out


def _assert_rollups_exact(records):
    expected = _expected_buckets(records)
    stored = {(b.server.name, b.bucket_start): b for b in MetricBucket.objects.select_related("server")}
    assert set(stored) == set(expected)
    for key, want in expected.items():
        got = stored[key]
        assert got.count == want["count"]
        for m in METRICS:
            assert getattr(got, f"{m}_sum") == pytest.approx(want[f"{m}_sum"])
            assert getattr(got, f"{m}_max") == want[f"{m}_max"]


@pytest.mark.django_db
def test_retried_batch_stores_nothing_twice(client):
    records = series(n=20)
    first = post_feed(client, {"records": records}).json()
    second = post_feed(client, {"records": records}).json()

    assert (first["accepted"], first["duplicates"]) == (20, 0)
    assert (second["accepted"], second["duplicates"]) == (0, 20)
    assert MetricRecord.objects.count() == 20
    assert Server.objects.get().record_count == 20
    assert second["window_size"] == 20
    _assert_rollups_exact(records)


@pytest.mark.django_db
def test_duplicate_inside_one_batch_counts_once():
    record = make_record()
    result = _ingest([record, dict(record, cpu_pct=99.0)])

    assert (result.accepted, result.duplicates) == (1, 1)
    assert MetricRecord.objects.get().cpu_pct == 45.2


@pytest.mark.django_db
def test_rollups_hold_count_mean_max_and_states():
    records = [
        make_record(ts=START, cpu=10, state="healthy"),
        make_record(ts=START + timedelta(seconds=5), cpu=20, state="healthy"),
        make_record(ts=START + timedelta(seconds=10), cpu=60, state="critical_issue"),
        make_record(ts=START + timedelta(minutes=5), cpu=30, state="idle"),
    ]
    _ingest(records)

    first, second = MetricBucket.objects.order_by("bucket_start")
    assert first.bucket_start == START and first.count == 3
    assert first.mean("cpu_pct") == pytest.approx(30.0)
    assert first.cpu_pct_max == 60
    assert first.dominant_state == "healthy"
    assert first.worst_state == "critical_issue"
    assert second.bucket_start == START + timedelta(minutes=5)
    assert second.count == 1 and second.dominant_state == "idle"


@pytest.mark.django_db
def test_batches_arriving_out_of_order_keep_rollups_exact():
    records = series(n=120, every=timedelta(seconds=7), cpu=10.0)
    for i, r in enumerate(records):
        r["cpu_pct"] = float(i % 97)
    _ingest(records[60:])
    _ingest(records[:70])  # overlaps the first batch by 10 records

    assert MetricRecord.objects.count() == 120
    _assert_rollups_exact(records)


@pytest.mark.django_db
def test_server_profile_and_seen_times_come_from_records():
    _ingest([make_record("ppml0001", START + timedelta(minutes=3)), make_record("ppml0001", START)])

    server = Server.objects.get()
    assert server.profile == "ml_compute"
    assert (server.first_seen, server.last_seen) == (START, START + timedelta(minutes=3))


@pytest.mark.django_db
def test_server_is_ready_at_150_records_not_149(settings):
    settings.TFT_WARMUP_RECORDS = 150
    _ingest(series("ppdb001", n=149))
    assert fleet_readiness().ready == 0

    result = _ingest(series("ppdb001", n=1, start=START + timedelta(hours=1)))

    assert result.servers_ready == 1
    assert result.warmup_complete is True


@pytest.mark.django_db
def test_warmup_progress_at_149_records(client, settings):
    settings.TFT_WARMUP_RECORDS = 150
    _ingest(series("ppdb001", n=149))
    _ingest(series("ppdb002", n=150))

    warmup = client.get("/status").json()["warmup"]

    assert warmup["is_warmed_up"] is False
    assert warmup["current_size"] == 149
    assert warmup["progress_percent"] == 99
    assert warmup["message"] == "Warming up: 1/2 servers ready"


@pytest.mark.django_db
def test_status_lists_per_server_readiness(client):
    _ingest(series("ppdb001", n=3))

    servers = client.get("/status?servers=1").json()["servers"]

    assert servers[0]["server"] == "ppdb001"
    assert servers[0]["records"] == 3
    assert servers[0]["ready"] is False


@pytest.mark.django_db(transaction=True)
def test_concurrent_overlapping_feeds_store_each_record_once(postgres_only):
    servers = [f"ppweb{i:03d}" for i in range(6)]
    records = [make_record(s, START + timedelta(seconds=5 * i), cpu=float(i % 90)) for i in range(300) for s in servers]
    # Eight threads send overlapping slices in different orders.
    slices = [records[k * 150 : k * 150 + 600] for k in range(8)]
    for k in range(0, 8, 2):
        slices[k] = list(reversed(slices[k]))
    errors = []

    def worker(part):
        try:
            _ingest(part)
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(part,)) for part in slices * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert not errors
    records_fold()  # the servers passed warm-up half-way: later batches left their counts to the fold
    covered = {(r["server_name"], r["timestamp"]) for part in slices for r in part}
    assert MetricRecord.objects.count() == len(covered)
    assert sum(Server.objects.values_list("record_count", flat=True)) == len(covered)
    distinct = [r for r in records if (r["server_name"], r["timestamp"]) in covered]
    _assert_rollups_exact(distinct)


@pytest.mark.django_db
def test_prune_deletes_old_raw_records_and_keeps_counts_exact(client):
    now = datetime.now(UTC).replace(microsecond=0)
    old = series("ppdb001", n=5, start=now - timedelta(days=20))
    recent = series("ppdb001", n=3, start=now - timedelta(hours=1))
    ingest_as_received(old + recent)

    deleted = records_prune(older_than=now - timedelta(days=14))

    assert deleted == 5
    assert MetricRecord.objects.count() == 3
    assert Server.objects.get().record_count == 3
    assert client.get("/status").json()["window_size"] == 3
    assert MetricBucket.objects.filter(bucket_start__lt=now - timedelta(days=14)).exists()


@pytest.mark.django_db
def test_feed_counter_slot_recreated_by_two_feeders_at_once_counts_both(monkeypatch):
    # A flush removed the slot rows; another feeder recreates this slot between our UPDATE (0 rows) and our insert.
    from django.db.models import QuerySet

    from ingest import services
    from ingest.models import FeedCounter

    FeedCounter.objects.all().delete()
    monkeypatch.setattr(services.random, "randrange", lambda n: (-services.os.getpid()) % n)
    real_update = QuerySet.update

    def update_after_a_rival_insert(self, **kwargs):
        if self.model is FeedCounter and not FeedCounter.objects.filter(slot=0).exists():
            FeedCounter.objects.create(slot=0, batches=1, records=5)
            return 0
        return real_update(self, **kwargs)

    monkeypatch.setattr(QuerySet, "update", update_after_a_rival_insert)
    services._bump_counter(accepted=3)

    assert FeedCounter.objects.values_list("slot", "batches", "records").get() == (0, 2, 8)
