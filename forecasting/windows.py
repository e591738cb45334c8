"""The one adapter from stored 5-minute buckets to engine series: the model window of each ready
server (prediction runs) and whole histories (training, backtests)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from itertools import groupby

import numpy as np
from django.conf import settings
from django.db import connection
from django.db.models import F, Q

from forecasting.engine.series import SeriesWindow, grid_series
from forecasting.engine.spec import CONTEXT, METRICS, STATES, STEP_MINUTES
from forecasting.models import MaintenanceWindow
from ingest.fold import records_fold
from ingest.models import MetricBucket, MetricRecord, Server


@dataclass(slots=True)
class ServerWindow:
    server_id: int
    window: SeriesWindow


def ready_servers(*, now: datetime | None = None):
    """The servers a run forecasts (a queryset): past warmup and reported within
    TFT_SERVER_STALE_HOURS (0 = no limit). Counts and last seen include every committed batch."""
    records_fold()
    query = Q(record_count__gte=settings.TFT_WARMUP_RECORDS)
    if settings.TFT_SERVER_STALE_HOURS:
        now = now or datetime.now(UTC)
        query &= Q(last_seen__gte=now - timedelta(hours=settings.TFT_SERVER_STALE_HOURS))
    return Server.objects.filter(query).order_by("id")


def ready_server_ids(*, now: datetime | None = None) -> list[int]:
    return list(ready_servers(now=now).values_list("id", flat=True))


def bucket_floor(at: datetime) -> datetime:
    """Start of the 5-minute bucket holding `at` (the end of the newest bucket closed at `at`)."""
    step = STEP_MINUTES * 60
    return datetime.fromtimestamp(int(at.timestamp()) // step * step, tz=UTC)


def _buckets_sql(n_ids: int, *, context_only: bool, since: bool = False, closed: bool = False) -> str:
    span = CONTEXT * STEP_MINUTES
    means = ", ".join(f"b.{m}_sum / b.count" for m in METRICS)
    states = ", ".join(f"b.n_{s}" for s in STATES)
    # The newest bucket a window may hold: the server's latest, or (closed) the latest closed one.
    newest = ("LEAST(s.last_seen, %s)" if connection.vendor == "postgresql" else "MIN(s.last_seen, %s)") if closed \
        else "s.last_seen"
    if connection.vendor == "postgresql":
        epoch = "EXTRACT(EPOCH FROM b.bucket_start)::bigint"
        context_start = f"{newest} - interval '{span} minutes'"
        ids = "b.server_id = ANY(%s)"
    else:
        epoch = "CAST(strftime('%%s', b.bucket_start) AS INTEGER)"
        context_start = f"datetime({newest}, '-{span} minutes')"
        ids = f"b.server_id IN ({', '.join(['%s'] * n_ids)})"
    recent = f" AND b.bucket_start > {context_start}" if context_only else (" AND b.bucket_start >= %s" if since else "")
    if closed:
        recent += " AND b.bucket_start < %s"
    # One query for the whole batch of servers; per server it is a range scan of the
    # (server, bucket_start) unique index (over at most one context of buckets for model windows).
    return (
        f"SELECT b.server_id, s.name, s.profile, {epoch}, {means}, {states} "
        f"FROM ingest_metricbucket b JOIN ingest_server s ON s.id = b.server_id "
        f"WHERE {ids}{recent} AND b.count > 0 "
        f"ORDER BY b.server_id, b.bucket_start"
    )


def _bucket_series(*, server_ids: list[int], context_only: bool, since: datetime | None = None,
                   closed_at: datetime | None = None) -> list[ServerWindow]:
    """The one adapter from stored buckets to engine series: bucket means and state counts per
    server, placed on the grid by the engine (which also picks each bucket's dominant state)."""
    if not server_ids:
        return []
    records_fold()  # the rollups include every committed batch
    adapt = connection.ops.adapt_datetimefield_value
    params = [list(server_ids)] if connection.vendor == "postgresql" else list(server_ids)
    if closed_at is not None and context_only:
        params.append(adapt(bucket_floor(closed_at) - timedelta(microseconds=1)))
    if since is not None:
        params.append(adapt(since))
    if closed_at is not None:
        params.append(adapt(bucket_floor(closed_at)))
    sql = _buckets_sql(len(server_ids), context_only=context_only, since=since is not None, closed=closed_at is not None)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
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


def server_windows(*, server_ids: list[int], closed_at: datetime | None = None) -> list[ServerWindow]:
    """The model window (at most one context of buckets up to each server's latest) of each server;
    with `closed_at`, only the buckets closed by then: a run forecasts from whole buckets, so a
    server's forecast changes only when one closes (a server with none closed has no window)."""
    return _bucket_series(server_ids=server_ids, context_only=True, closed_at=closed_at)


def server_series_since(*, server_ids: list[int], since: datetime) -> list[ServerWindow]:
    """Each server's buckets from ``since`` on (what happened after forecast origins: probability outcomes)."""
    return _bucket_series(server_ids=server_ids, context_only=False, since=since)


def server_histories(*, server_names: list[str] | None = None, keep_silenced: bool = False) -> list[SeriesWindow]:
    """Every (or the named) server's whole bucket history as engine series, by name (training,
    backtests). `keep_silenced=True` keeps the silenced buckets (silenced_spans: maintenance windows
    and buckets reporting state `maintenance`); they are missing, NaN, by default: what happens in a
    window is not what the model should learn."""
    query = Server.objects.order_by("name")
    if server_names:
        query = query.filter(name__in=list(server_names))
    ids = list(query.values_list("id", flat=True))
    series = _bucket_series(server_ids=ids, context_only=False)
    if not keep_silenced and series:
        _mask_silenced(series)
    return sorted((sw.window for sw in series), key=lambda w: w.server)


# --- Maintenance windows (silences) -----------------------------------------------------------------
#
# The reads every concern uses to leave a window out: alerts (silenced_keys), live scoring and
# calibration and probability outcomes (silenced_spans), retraining data (server_histories above,
# through silenced_spans). A server reporting state `maintenance` counts as in a window
# (TFT_MAINTENANCE_STATE_SILENCES): for alerts from its latest record, for the rest per bucket.


def _matches(pattern: str, name: str) -> bool:
    return any(fnmatchcase(name, p.strip()) for p in pattern.split(",") if p.strip())


def maintenance_windows(*, start: datetime, end: datetime):
    """Windows overlapping [start, end), by start (ended windows end at ended_at)."""
    return (
        MaintenanceWindow.objects.filter(starts_at__lt=end, ends_at__gt=start)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gt=start))
        .order_by("starts_at", "pk")
    )


def maintenance_windows_current(*, now: datetime) -> list[MaintenanceWindow]:
    """Active and upcoming windows (not over by now), soonest first."""
    return [w for w in MaintenanceWindow.objects.filter(ends_at__gt=now).order_by("starts_at", "pk")
            if _window_end(w) > now]


def window_server_names(*, window: MaintenanceWindow, names: list[str]) -> list[str]:
    """The names (of `names`) a window covers."""
    return [n for n in names if _matches(window.servers, n)]


def _window_end(w: MaintenanceWindow) -> datetime:
    return min(w.ends_at, w.ended_at) if w.ended_at else w.ends_at


def maintenance_state_server_ids() -> set[int]:
    """Servers whose latest record reports state `maintenance` (when TFT_MAINTENANCE_STATE_SILENCES)."""
    if not settings.TFT_MAINTENANCE_STATE_SILENCES:
        return set()
    records_fold()  # last_seen includes every committed batch
    return set(
        MetricRecord.objects.filter(timestamp=F("server__last_seen"), state="maintenance").values_list(
            "server_id", flat=True
        )
    )


def silenced_keys(*, now: datetime) -> set[tuple[int, str | None]]:
    """(server_id, metric) pairs silenced now; metric None = every metric of the server (a window
    without a metric, or the server reporting state `maintenance`)."""
    out: set[tuple[int, str | None]] = {(sid, None) for sid in maintenance_state_server_ids()}
    windows = [w for w in maintenance_windows(start=now, end=now + timedelta(microseconds=1)) if _window_end(w) > now]
    if windows:
        for sid, name in Server.objects.values_list("id", "name"):
            out |= {(sid, w.metric or None) for w in windows if _matches(w.servers, name)}
    return out


def silenced_server_names(*, now: datetime) -> dict[str, str]:
    """Server name → why it is silenced now ("window: reason", or "state maintenance"), for the
    dashboard: windows without a metric only (a one-metric window silences that metric, not the server)."""
    out: dict[str, str] = {}
    if settings.TFT_MAINTENANCE_STATE_SILENCES:
        rows = MetricRecord.objects.filter(timestamp=F("server__last_seen"), state="maintenance")
        out.update({name: "state maintenance" for name in rows.values_list("server__name", flat=True)})
    windows = [w for w in maintenance_windows_current(now=now) if w.starts_at <= now and not w.metric]
    if windows:
        for name in Server.objects.values_list("name", flat=True):
            reasons = [w.reason for w in windows if _matches(w.servers, name)]
            if reasons:
                out[name] = f"window: {reasons[0]}"
    return out


Span = tuple[datetime, datetime, str | None]


def silenced_spans(*, server_ids: list[int], start: datetime, end: datetime) -> dict[int, list[Span]]:
    """Per server, the silenced spans (from, to, metric or None = all) overlapping [start, end),
    clipped to it: maintenance windows, and the buckets in which the server reported state
    `maintenance` (when TFT_MAINTENANCE_STATE_SILENCES). What live scoring, interval calibration,
    probability outcomes and training data leave out."""
    out = _maintenance_state_spans(server_ids=server_ids, start=start, end=end)
    windows = list(maintenance_windows(start=start, end=end))
    if not windows:
        return out
    for sid, name in Server.objects.filter(id__in=list(server_ids)).values_list("id", "name"):
        spans = [
            (max(w.starts_at, start), min(_window_end(w), end), w.metric or None)
            for w in windows
            if _matches(w.servers, name) and _window_end(w) > start
        ]
        if spans:
            out[sid] = [*out.get(sid, []), *spans]
    return out


def _maintenance_state_spans(*, server_ids: list[int], start: datetime, end: datetime) -> dict[int, list[Span]]:
    """Per server, its buckets overlapping [start, end) holding a record in state `maintenance` (one is
    enough: the bucket's means mix it in), runs of consecutive buckets merged into one span."""
    if not settings.TFT_MAINTENANCE_STATE_SILENCES or not len(server_ids):
        return {}
    step = timedelta(minutes=STEP_MINUTES)
    rows = (
        MetricBucket.objects.filter(
            server_id__in=list(server_ids), bucket_start__gt=start - step, bucket_start__lt=end, n_maintenance__gt=0
        )
        .order_by("server_id", "bucket_start")
        .values_list("server_id", "bucket_start")
    )
    out: dict[int, list[Span]] = {}
    for sid, bucket_start in rows:
        lo, hi = max(bucket_start, start), min(bucket_start + step, end)
        spans = out.setdefault(sid, [])
        if spans and spans[-1][1] >= lo:
            spans[-1] = (spans[-1][0], hi, None)
        else:
            spans.append((lo, hi, None))
    return out


def _mask_silenced(series: list[ServerWindow]) -> None:
    """NaN the buckets of each series that fall in a maintenance window (its metric, or all)."""
    starts = [sw.window.start for sw in series]
    ends = [sw.window.start + timedelta(minutes=STEP_MINUTES * len(sw.window.values)) for sw in series]
    spans = silenced_spans(server_ids=[sw.server_id for sw in series], start=min(starts), end=max(ends))
    for sw in series:
        w = sw.window
        for a, b, metric in spans.get(sw.server_id, ()):
            lo = max(0, int((a - w.start).total_seconds() // (STEP_MINUTES * 60)))
            hi = min(len(w.values), int(-(-(b - w.start).total_seconds() // (STEP_MINUTES * 60))))
            cols = [METRICS.index(metric)] if metric in METRICS else slice(None)
            w.values[lo:hi, cols] = np.nan
