"""Reads for the protocols app: last known values, history from the rollups, server names."""

from __future__ import annotations

from datetime import datetime

from ingest.contract import METRICS
from ingest.fold import records_fold
from ingest.models import MetricBucket, MetricRecord, Server


def last_known_values(*, server_name: str, before: datetime) -> dict | None:
    """The server's newest stored record before `before` as {metric: value, "state": s}, or None."""
    row = (
        MetricRecord.objects.filter(server__name=server_name, timestamp__lt=before)
        .order_by("-timestamp")
        .values(*METRICS, "state")
        .first()
    )
    return row


def server_names() -> list[str]:
    return list(Server.objects.order_by("name").values_list("name", flat=True))


def bucket_history(*, server_names: list[str], start: datetime, end: datetime) -> dict[str, list[tuple]]:
    """{server: [(bucket_start, count, cpu_sum, cpu_max, …)]} for buckets starting in [start, end],
    pending ingest increments folded in first."""
    records_fold()
    columns = ["server__name", "bucket_start", "count", *(f"{m}_{agg}" for m in METRICS for agg in ("sum", "max"))]
    rows = (
        MetricBucket.objects.filter(server__name__in=server_names, bucket_start__gte=start, bucket_start__lte=end)
        .order_by("server__name", "bucket_start")
        .values_list(*columns)
    )
    out: dict[str, list[tuple]] = {}
    for name, *rest in rows.iterator(chunk_size=2000):
        out.setdefault(name, []).append(tuple(rest))
    return out
