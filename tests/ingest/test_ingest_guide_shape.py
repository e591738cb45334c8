"""The guide's batch shape (N servers × 1 timestamp per batch) keeps rollups, server counts, day
counts and the feed counter equal to a recomputation from the raw records: after concurrent,
duplicate and out-of-order batches, and when a batch fails half-way."""

import random
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.db import DatabaseError, connection

from ingest import partitions
from ingest.contract import METRICS, STATES
from ingest.models import MetricBucket, MetricRecord, Server
from ingest.selectors import counters_totals
from ingest.services import records_fold, records_ingest
from ingest.validation import CleanRecord

START = datetime(2025, 10, 13, 23, 50, tzinfo=UTC)  # the batches cross midnight: two days


def _batch(servers: list[str], ts: datetime, salt: int) -> list[CleanRecord]:
    """One record per server at one timestamp (the guide's shape), values varying per server."""
    return [
        CleanRecord(
            name,
            ts,
            float((i * 7 + salt) % 100),
            float((i * 3 + salt) % 90) + 0.5,
            float((i + salt) % 300) + 0.25,
            float((i * 11 + salt) % 50) + 1.0,
            STATES[(i + salt) % len(STATES)],
        )
        for i, name in enumerate(servers)
    ]


def _bucket_start(ts: datetime) -> datetime:
    step = settings.TFT_STEP_MINUTES * 60
    epoch = int(ts.timestamp())
    return datetime.fromtimestamp(epoch - epoch % step, tz=UTC)


def _stored_records() -> list[tuple]:
    return list(
        MetricRecord.objects.values_list("server__name", "timestamp", *METRICS, "state").order_by(
            "server__name", "timestamp"
        )
    )


def _assert_matches_raw_records() -> None:
    """Every derived figure equals the same figure recomputed from the stored raw records, once the
    increments of batches past warm-up are folded in (as every reader of them does first)."""
    records_fold()
    records = _stored_records()
    buckets: dict = {}
    servers: dict = {}
    for name, ts, *values, state in records:
        b = buckets.setdefault(
            (name, _bucket_start(ts)),
            {"count": 0, "sums": [0.0] * 4, "maxes": [None] * 4, "states": dict.fromkeys(STATES, 0)},
        )
        b["count"] += 1
        b["states"][state] += 1
        for i, v in enumerate(values):
            b["sums"][i] += v
            b["maxes"][i] = v if b["maxes"][i] is None else max(b["maxes"][i], v)
        s = servers.setdefault(name, [0, ts, ts])
        s[0] += 1
        s[1], s[2] = min(s[1], ts), max(s[2], ts)

    stored = {(b.server.name, b.bucket_start): b for b in MetricBucket.objects.select_related("server")}
    assert set(stored) == set(buckets)
    for key, want in buckets.items():
        got = stored[key]
        assert got.count == want["count"], key
        assert got.state_counts == want["states"], key
        for i, m in enumerate(METRICS):
            assert getattr(got, f"{m}_sum") == pytest.approx(want["sums"][i]), (key, m)
            assert getattr(got, f"{m}_max") == want["maxes"][i], (key, m)

    got_servers = {s.name: [s.record_count, s.first_seen, s.last_seen] for s in Server.objects.all()}
    assert got_servers == servers
    assert counters_totals().records == len(records)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT d.day, s.name, d.records FROM {partitions.DAY_COUNTS} d JOIN ingest_server s ON s.id = d.server_id "
                "WHERE d.records <> 0"
            )
            day_counts = {(day, name): n for day, name, n in cursor.fetchall()}
        want_days: dict = {}
        for name, ts, *_ in records:
            key = (ts.astimezone(UTC).date(), name)
            want_days[key] = want_days.get(key, 0) + 1
        assert day_counts == want_days


@pytest.mark.django_db
def test_guide_shape_batches_with_retries_and_late_arrivals_stay_exact():
    servers = [f"gsweb{i:03d}" for i in range(60)]
    stamps = [START + timedelta(seconds=5 * k) for k in range(240)]  # 20 minutes, across midnight
    batches = [_batch(servers, ts, k) for k, ts in enumerate(stamps)]
    order = list(range(len(batches)))
    random.Random(7).shuffle(order)  # out of order: late batches land in buckets already rolled up

    for k in order[:180]:
        records_ingest(records=batches[k])
    for k in order[:40]:  # retries of acknowledged batches
        assert records_ingest(records=batches[k]).accepted == 0
    mixed = batches[order[0]][:30] + batches[order[180]]  # half a retry, one new batch
    result = records_ingest(records=mixed)

    assert (result.accepted, result.duplicates) == (60, 30)
    _assert_matches_raw_records()


@pytest.mark.django_db
def test_batch_of_many_timestamps_in_no_order_stays_exact():
    """Each server's records at several timestamps, shuffled, across midnight: first and last
    seen come from the earliest and latest of them whatever their order in the batch."""
    servers = [f"gsmix{i:02d}" for i in range(12)]
    stamps = [START + timedelta(seconds=37 * k) for k in range(40)]
    records = [r for k, ts in enumerate(stamps) for r in _batch(servers, ts, k)]
    random.Random(3).shuffle(records)

    assert records_ingest(records=records[:300]).accepted == 300
    assert records_ingest(records=records[200:]).accepted == len(records) - 300
    _assert_matches_raw_records()


@pytest.mark.django_db(transaction=True)
def test_concurrent_guide_shape_feeders_with_duplicates_stay_exact(postgres_only):
    servers = [f"gsdb{i:03d}" for i in range(200)]
    stamps = [START + timedelta(seconds=5 * k) for k in range(40)]
    batches = [_batch(servers, ts, k) for k, ts in enumerate(stamps)]
    # Four feeders of the same fleet send every batch, each in its own order, some with the
    # servers reversed; one more feeds only half the servers: each record arrives 4–5 times at once.
    plans = []
    for f in range(4):
        order = list(range(len(batches)))
        random.Random(f).shuffle(order)
        plans.append([batches[k][::-1] if (k + f) % 3 == 0 else batches[k] for k in order])
    plans.append([b[:100] for b in batches[::2]])
    accepted, errors = [], []

    def feeder(plan):
        try:
            accepted.extend(records_ingest(records=b).accepted for b in plan)
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=feeder, args=(plan,)) for plan in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert not errors
    assert sum(accepted) == len(servers) * len(stamps) == MetricRecord.objects.count()
    _assert_matches_raw_records()


@pytest.mark.django_db(transaction=True)
def test_batch_failing_after_the_server_update_stores_nothing(postgres_only):
    servers = [f"gsetl{i:03d}" for i in range(50)]
    records_ingest(records=_batch(servers, START, 0))
    # Two records of one server in one bucket whose sum overflows a double: the record statement
    # fails after the server rows were already counted in the same transaction.
    bad = [*_batch(servers, START + timedelta(seconds=5), 1), *_batch(servers[:1], START + timedelta(seconds=10), 2)]
    bad[0] = CleanRecord(servers[0], bad[0].timestamp, 1.0, 1.0, 1.7e308, 1.0, "healthy")
    bad[-1] = CleanRecord(servers[0], bad[-1].timestamp, 1.0, 1.0, 1.7e308, 1.0, "healthy")
    before = _stored_records()

    with pytest.raises(DatabaseError):
        records_ingest(records=bad)

    assert _stored_records() == before
    _assert_matches_raw_records()
