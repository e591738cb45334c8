"""Reads for the ingest app: counters, warmup readiness, health."""

import time
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from django.db.models import Count, Min, Q, Sum, Value
from django.db.models.functions import Coalesce, Least

from ingest.models import FeedCounter, Server


@dataclass(frozen=True, slots=True)
class CounterTotals:
    batches: int
    records: int


@dataclass(frozen=True, slots=True)
class Readiness:
    tracked: int
    ready: int
    min_records: int
    progress_percent: int  # mean progress of all servers towards warmup, 0–100

    @property
    def is_warmed_up(self) -> bool:
        return self.tracked > 0 and self.ready == self.tracked


def counters_totals() -> CounterTotals:
    totals = FeedCounter.objects.aggregate(
        batches=Coalesce(Sum("batches"), Value(0)), records=Coalesce(Sum("records"), Value(0))
    )
    return CounterTotals(batches=int(totals["batches"]), records=int(totals["records"]))


def fleet_readiness() -> Readiness:
    threshold = settings.TFT_WARMUP_RECORDS
    agg = Server.objects.aggregate(
        tracked=Count("id"),
        ready=Count("id", filter=Q(record_count__gte=threshold)),
        min_records=Min("record_count"),
        progress=Sum(Least("record_count", Value(threshold))),
    )
    tracked = agg["tracked"] or 0
    progress = int(100 * (agg["progress"] or 0) // (threshold * tracked)) if tracked else 0
    return Readiness(
        tracked=tracked,
        ready=agg["ready"] or 0,
        min_records=agg["min_records"] or 0,
        progress_percent=progress,
    )


def feed_totals() -> tuple[CounterTotals, int, int]:
    """(counters, servers tracked, servers ready) in one round trip: the feed's response needs all
    three after every batch, and three ORM aggregates cost more than the batch's own writes."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT COALESCE(SUM(batches), 0) FROM ingest_feedcounter), "
            "(SELECT COALESCE(SUM(records), 0) FROM ingest_feedcounter), "
            "COUNT(*), COALESCE(SUM(CASE WHEN record_count >= %s THEN 1 ELSE 0 END), 0) FROM ingest_server",
            [settings.TFT_WARMUP_RECORDS],
        )
        batches, records, tracked, ready = cursor.fetchone()
    return CounterTotals(batches=int(batches), records=int(records)), int(tracked), int(ready)


def server_readiness_list() -> list[dict]:
    threshold = settings.TFT_WARMUP_RECORDS
    rows = Server.objects.values_list("name", "profile", "record_count", "first_seen", "last_seen", "last_received_at")
    return [
        {
            "server": name,
            "profile": profile,
            "records": count,
            "ready": count >= threshold,
            "progress_percent": min(100, 100 * count // threshold),
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
    except Exception as exc:  # any failure means "unhealthy", and the reason is what operators need
        return {
            "ok": False,
            "error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}",
        }
    return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2), "vendor": connection.vendor}
