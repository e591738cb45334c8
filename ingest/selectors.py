"""Reads for the ingest app: counters, warmup readiness, health."""

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Count, Min, Q, Sum, Value
from django.db.models.functions import Coalesce, Least

from ingest.fold import records_fold
from ingest.models import FeedCounter, Server

logger = logging.getLogger(__name__)
DATABASE_UNAVAILABLE = "database unavailable"


@dataclass(frozen=True, slots=True)
class CounterTotals:
    batches: int
    records: int


@dataclass(frozen=True, slots=True)
class Readiness:
    tracked: int  # servers feeding: something arrived within TFT_SERVER_SILENT_AFTER_MINUTES
    ready: int  # of those, servers past warmup
    min_records: int  # records of the least-fed feeding server
    progress_percent: int  # mean progress of the feeding servers towards warmup, 0–100
    silent: int = 0  # servers counted out of warmup: nothing arrived for TFT_SERVER_SILENT_AFTER_MINUTES

    @property
    def is_warmed_up(self) -> bool:
        return self.tracked > 0 and self.ready == self.tracked


def counters_totals() -> CounterTotals:
    totals = FeedCounter.objects.aggregate(
        batches=Coalesce(Sum("batches"), Value(0)), records=Coalesce(Sum("records"), Value(0))
    )
    return CounterTotals(batches=int(totals["batches"]), records=int(totals["records"]))


def silent_since(*, now: datetime | None = None) -> datetime:
    """A server whose last batch arrived before this instant is silent (the one rule)."""
    return (now or datetime.now(UTC)) - timedelta(minutes=settings.TFT_SERVER_SILENT_AFTER_MINUTES)


def fleet_readiness(*, now: datetime | None = None) -> Readiness:
    """Warmup of the servers that are feeding; silent ones are counted apart and hold nothing back."""
    records_fold()  # counts and seen times include every committed batch
    threshold = settings.TFT_WARMUP_RECORDS
    feeding = Q(last_received_at__gte=silent_since(now=now))
    agg = Server.objects.aggregate(
        tracked=Count("id", filter=feeding),
        ready=Count("id", filter=feeding & Q(record_count__gte=threshold)),
        silent=Count("id", filter=~feeding),
        min_records=Min("record_count", filter=feeding),
        progress=Sum(Least("record_count", Value(threshold)), filter=feeding),
    )
    tracked = agg["tracked"] or 0
    progress = int(100 * (agg["progress"] or 0) // (threshold * tracked)) if tracked else 0
    return Readiness(
        tracked=tracked,
        ready=agg["ready"] or 0,
        min_records=agg["min_records"] or 0,
        progress_percent=progress,
        silent=agg["silent"] or 0,
    )


# (time.monotonic() when counted, servers tracked, servers ready): this process's last count.
_server_counts: tuple[float, int, int] | None = None


def feed_totals(*, settled: bool = False) -> tuple[CounterTotals, int, int]:
    """(counters, servers tracked, servers ready) in one round trip: the feed's response needs all
    three after every batch, and three ORM aggregates cost more than the batch's own writes.
    Tracked and ready count feeding servers only, as fleet_readiness does.

    It reads without folding: a batch leaves increments pending only when every one of its servers
    is counted tracked and ready already (ingest.services._pg_store_batch), so what is pending cannot
    change these two counts; the feed counter is updated by every batch itself. For the same reason
    a ``settled`` batch's response reuses this process's server counts while they are younger than
    TFT_FEED_SERVER_COUNTS_MAX_AGE_SECONDS (counting scans every server row); the counters are
    always read."""
    global _server_counts
    memo = _server_counts
    max_age = settings.TFT_FEED_SERVER_COUNTS_MAX_AGE_SECONDS
    if settled and memo is not None and time.monotonic() - memo[0] < max_age:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {_COUNTER_SUMS}")
            batches, records = cursor.fetchone()
        return CounterTotals(batches=int(batches), records=int(records)), memo[1], memo[2]
    since = connection.ops.adapt_datetimefield_value(silent_since())
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {_COUNTER_SUMS}, "
            "COALESCE(SUM(CASE WHEN last_received_at >= %s THEN 1 ELSE 0 END), 0), "
            "COALESCE(SUM(CASE WHEN last_received_at >= %s AND record_count >= %s THEN 1 ELSE 0 END), 0) "
            "FROM ingest_server",
            [since, since, settings.TFT_WARMUP_RECORDS],
        )
        batches, records, tracked, ready = cursor.fetchone()
    _server_counts = (time.monotonic(), int(tracked), int(ready))
    return CounterTotals(batches=int(batches), records=int(records)), int(tracked), int(ready)


_COUNTER_SUMS = (
    "(SELECT COALESCE(SUM(batches), 0) FROM ingest_feedcounter), (SELECT COALESCE(SUM(records), 0) FROM ingest_feedcounter)"
)


def server_readiness_list(*, now: datetime | None = None) -> list[dict]:
    threshold = settings.TFT_WARMUP_RECORDS
    since = silent_since(now=now)
    records_fold()  # counts and seen times include every committed batch
    rows = Server.objects.values_list("name", "profile", "record_count", "first_seen", "last_seen", "last_received_at")
    return [
        {
            "server": name,
            "profile": profile,
            "records": count,
            "ready": count >= threshold,
            "progress_percent": min(100, 100 * count // threshold),
            "silent": last_received_at < since,
            "first_seen": first_seen,
            "last_seen": last_seen,
            "last_received_at": last_received_at,
        }
        for name, profile, count, first_seen, last_seen, last_received_at in rows
    ]


def database_check() -> dict:
    """Round-trip the database; never raises."""
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception:  # any failure means "unhealthy"
        # /health is public: the driver's text names hosts, ports, users and databases. The answer
        # says what failed; the detail goes to the log, where operators read it.
        logger.warning("health check: the database did not answer", exc_info=True)
        return {"ok": False, "error": DATABASE_UNAVAILABLE}
    return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2), "vendor": connection.vendor}
