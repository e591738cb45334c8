"""PostgreSQL stopped under a feeding client: 503 + Retry-After, never a 500 or a hang, and after the
restart exactly the acknowledged records are stored, once each, with rollups that add up."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from tests.hardening.conftest import Stack, record, wait_for

logger = logging.getLogger(__name__)

pytestmark = pytest.mark.slow

SERVERS = [f"pgfault{i:02d}" for i in range(4)]
RECORDS_PER_SERVER = 3  # per batch: 12 records a batch
MAX_LATENCY_SECONDS = 10.0  # connect_timeout is 3 s; a request must never hang beyond this


@dataclass
class FeedLog:
    acknowledged: set = field(default_factory=set)  # (server, timestamp) from 200 answers
    statuses: dict = field(default_factory=dict)  # status -> count
    bad_answers: list = field(default_factory=list)  # anything that is not 200 or a proper 503
    latencies: list = field(default_factory=list)
    retries: int = 0
    unacked_batches: int = 0  # batches given up at the deadline without a 200


class RetryingFeeder(threading.Thread):
    """A feed client: posts unique batches in a loop, retries each until it is acknowledged with 200."""

    def __init__(self, stack: Stack, *, deadline: float):
        super().__init__(daemon=True)
        self.stack, self.deadline = stack, deadline
        self.log = FeedLog()
        self.stop_requested = threading.Event()
        self.batches_acked = 0
        self._first = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)

    def _batch(self, n: int) -> list[dict]:
        out = []
        for k in range(RECORDS_PER_SERVER):
            ts = self._first + timedelta(seconds=n * RECORDS_PER_SERVER + k)
            out += [record(server, ts, cpu=float(n % 90)) for server in SERVERS]
        return out

    def run(self) -> None:
        n = 0
        while not self.stop_requested.is_set() and time.monotonic() < self.deadline:
            batch = self._batch(n)
            while time.monotonic() < self.deadline:
                result = self.stack.post_feed(batch)
                self.log.latencies.append(result.seconds)
                self.log.statuses[result.status] = self.log.statuses.get(result.status, 0) + 1
                if result.status == 200:
                    self.log.acknowledged.update((r["server_name"], r["timestamp"]) for r in batch)
                    self.batches_acked += 1
                    break
                if not self._proper_unavailable(result):
                    self.log.bad_answers.append((result.status, result.error, result.headers, result.body[:300]))
                self.log.retries += 1
                # Retry-After says 5 s; a short pause gives more samples of the outage.
                time.sleep(0.3)
            else:
                self.log.unacked_batches += 1
            n += 1

    @staticmethod
    def _proper_unavailable(result) -> bool:
        if result.status != 503 or not result.headers.get("Retry-After", "").isdigit():
            return False
        try:
            body = result.json()
        except ValueError:
            return False
        return body.get("error") == "database_unavailable"


def _stored(stack: Stack) -> list[tuple[str, str]]:
    rows = stack.sql(
        "SELECT s.name, r.timestamp FROM ingest_metricrecord r JOIN ingest_server s ON s.id = r.server_id "
        "WHERE s.name = ANY(%s)",
        [SERVERS],
    )
    return [(name, ts.astimezone(UTC).isoformat().replace("+00:00", "Z")) for name, ts in rows]


def test_postgres_restart_loses_nothing_acknowledged_and_stores_nothing_twice(healthy_stack: Stack):
    stack = healthy_stack
    feeder = RetryingFeeder(stack, deadline=time.monotonic() + 120)
    feeder.start()
    outage_health, outage_reads = None, {}
    try:
        wait_for(
            lambda: feeder.batches_acked >= 5, timeout=30, interval=0.1, what="acknowledged batches before the outage"
        )
        acked_before = feeder.batches_acked
        stack.pg.stop("immediate")  # a crash, not a polite shutdown
        try:
            wait_for(
                lambda: feeder.log.statuses.get(503, 0) >= 3, timeout=30, interval=0.1, what="503s during the outage"
            )
            outage_health = stack.get("/health")
            outage_reads = {path: stack.get(path) for path in ("/status", "/predictions/current")}
            time.sleep(2)
        finally:
            stack.pg.start()
        restarted = time.monotonic()
        wait_for(
            lambda: feeder.batches_acked >= acked_before + 10,
            timeout=60,
            interval=0.2,
            what="acknowledged batches after the restart",
        )
        recovery_seconds = time.monotonic() - restarted
    finally:
        feeder.stop_requested.set()
        feeder.join(timeout=60)
    assert not feeder.is_alive(), "the feeder did not finish"
    log = feeder.log

    stored = _stored(stack)
    logger.info(
        "postgres outage: acknowledged %d records, stored %d (distinct %d); answers %s; retries %d; "
        "max latency %.2fs; recovered %.1fs after restart",
        len(log.acknowledged),
        len(stored),
        len(set(stored)),
        log.statuses,
        log.retries,
        max(log.latencies),
        recovery_seconds,
    )
    assert log.bad_answers == [], log.bad_answers[:5]
    assert log.unacked_batches == 0
    assert log.statuses.get(503, 0) >= 3
    assert max(log.latencies) < MAX_LATENCY_SECONDS
    assert outage_health is not None and outage_health.status == 503, outage_health
    health = outage_health.json()
    assert health["failed"] == ["database"]
    assert health["checks"]["database"]["ok"] is False and health["checks"]["database"]["error"]
    assert outage_health.headers.get("Retry-After", "").isdigit()
    for path, result in outage_reads.items():  # reads degrade the same way: JSON 503, not an HTML 500
        assert result.status == 503, (path, result.status, result.body[:200])
        assert result.headers.get("Retry-After", "").isdigit() and result.json()["error"] == "database_unavailable"

    assert len(stored) == len(set(stored)), "a record is stored twice"
    assert set(stored) == log.acknowledged

    def totals() -> tuple[int, int]:
        stack.get("/status")  # a reader: folds the increments settled batches left pending (ingest.fold)
        ((bucket_total, server_total),) = stack.sql(
            "SELECT (SELECT coalesce(sum(b.count), 0) FROM ingest_metricbucket b JOIN ingest_server s "
            "ON s.id = b.server_id WHERE s.name = ANY(%s)), "
            "(SELECT coalesce(sum(record_count), 0) FROM ingest_server WHERE name = ANY(%s))",
            [SERVERS, SERVERS],
        )
        return int(bucket_total), int(server_total)

    # The last batches' rollups may still be pending when the feeder stops; once folded (a reader
    # folds them; /status is cached for TFT_READ_CACHE_SECONDS) they must count every record once.
    wait_for(lambda: totals() == (len(stored), len(stored)), timeout=30, interval=1.0, what="rollups folded")
    assert totals() == (len(stored), len(stored))


def test_health_recovers_on_every_web_worker_after_a_postgres_restart(healthy_stack: Stack):
    """Persistent connections (CONN_MAX_AGE) opened before the restart must not keep failing after it."""
    stack = healthy_stack
    for _ in range(8):  # warm a persistent connection in each gunicorn worker
        assert stack.get("/health").status == 200
    stack.pg.stop("fast")
    try:
        down = [stack.get("/health") for _ in range(4)]
    finally:
        stack.pg.start()
    assert {r.status for r in down} == {503}
    assert all(r.seconds < MAX_LATENCY_SECONDS for r in down)
    time.sleep(0.5)
    after = [stack.get("/health") for _ in range(10)]
    assert [r.status for r in after] == [200] * 10, [r.body[:200] for r in after]
