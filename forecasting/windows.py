"""The one adapter from stored 5-minute buckets to engine series: the model window of each ready
server (prediction runs) and whole histories (training, backtests)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import groupby

import numpy as np
from django.conf import settings
from django.db import connection
from django.db.models import Q

from forecasting.engine.series import SeriesWindow, grid_series
from forecasting.engine.spec import CONTEXT, METRICS, STATES, STEP_MINUTES
from ingest.models import Server


@dataclass(slots=True)
class ServerWindow:
    server_id: int
    window: SeriesWindow


def ready_server_ids(*, now: datetime | None = None) -> list[int]:
    """Servers past warmup that reported within TFT_SERVER_STALE_HOURS (0 = no limit)."""
    query = Q(record_count__gte=settings.TFT_WARMUP_RECORDS)
    if settings.TFT_SERVER_STALE_HOURS:
        now = now or datetime.now(UTC)
        query &= Q(last_seen__gte=now - timedelta(hours=settings.TFT_SERVER_STALE_HOURS))
    return list(Server.objects.filter(query).order_by("id").values_list("id", flat=True))


def _buckets_sql(n_ids: int, *, context_only: bool, since: bool = False) -> str:
    span = CONTEXT * STEP_MINUTES
    means = ", ".join(f"b.{m}_sum / b.count" for m in METRICS)
    states = ", ".join(f"b.n_{s}" for s in STATES)
    if connection.vendor == "postgresql":
        epoch = "EXTRACT(EPOCH FROM b.bucket_start)::bigint"
        context_start = f"s.last_seen - interval '{span} minutes'"
        ids = "b.server_id = ANY(%s)"
    else:
        epoch = "CAST(strftime('%%s', b.bucket_start) AS INTEGER)"
        context_start = f"datetime(s.last_seen, '-{span} minutes')"
        ids = f"b.server_id IN ({', '.join(['%s'] * n_ids)})"
    recent = f" AND b.bucket_start > {context_start}" if context_only else (" AND b.bucket_start >= %s" if since else "")
    # One query for the whole batch of servers; per server it is a range scan of the
    # (server, bucket_start) unique index (over at most one context of buckets for model windows).
    return (
        f"SELECT b.server_id, s.name, s.profile, {epoch}, {means}, {states} "
        f"FROM ingest_metricbucket b JOIN ingest_server s ON s.id = b.server_id "
        f"WHERE {ids}{recent} AND b.count > 0 "
        f"ORDER BY b.server_id, b.bucket_start"
    )


def _bucket_series(*, server_ids: list[int], context_only: bool, since: datetime | None = None) -> list[ServerWindow]:
    """The one adapter from stored buckets to engine series: bucket means and state counts per
    server, placed on the grid by the engine (which also picks each bucket's dominant state)."""
    if not server_ids:
        return []
    params = [list(server_ids)] if connection.vendor == "postgresql" else list(server_ids)
    if since is not None:
        params.append(connection.ops.adapt_datetimefield_value(since))
    with connection.cursor() as cursor:
        cursor.execute(_buckets_sql(len(server_ids), context_only=context_only, since=since is not None), params)
        rows = cursor.fetchall()
    n_m = len(METRICS)
    out = []
    for server_id, group in groupby(rows, key=lambda r: r[0]):
        group = list(group)
        window = grid_series(
            group[0][1],
            group[0][2],
            np.array([r[3] for r in group], dtype=np.int64),
            np.array([r[4 : 4 + n_m] for r in group], dtype=np.float64),
            np.array([r[4 + n_m :] for r in group], dtype=np.int64),
            STEP_MINUTES,
        )
        out.append(ServerWindow(server_id=int(server_id), window=window))
    return out


def server_windows(*, server_ids: list[int]) -> list[ServerWindow]:
    """The model window (at most one context of buckets up to each server's latest) of each server."""
    return _bucket_series(server_ids=server_ids, context_only=True)


def server_series_since(*, server_ids: list[int], since: datetime) -> list[ServerWindow]:
    """Each server's buckets from ``since`` on (what happened after forecast origins: probability outcomes)."""
    return _bucket_series(server_ids=server_ids, context_only=False, since=since)


def server_histories(*, server_names: list[str] | None = None) -> list[SeriesWindow]:
    """Every (or the named) server's whole bucket history as engine series, by name (training,
    backtests)."""
    query = Server.objects.order_by("name")
    if server_names:
        query = query.filter(name__in=list(server_names))
    ids = list(query.values_list("id", flat=True))
    return sorted((sw.window for sw in _bucket_series(server_ids=ids, context_only=False)), key=lambda w: w.server)


