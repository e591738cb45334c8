"""Writes for live scoring: the archive of forecasts to score, the scoring pass and its retention.

The store step of a prediction chunk archives the first forecast made from each new origin
(`forecasts_archive`). Every few minutes `forecasts_score` takes the archived forecasts whose next
horizon band is now observed (oldest first, capped), loads their targets with one bucket query,
scores them with engine.scoring (vectorised, no loop per point) and adds the sums to ForecastScore
rows per server × metric × band × origin hour. Idempotent: the archive's `bands_scored` marker moves
by compare-and-swap in the same transaction as the sums, so a band is added once however often a
pass runs; a fully scored forecast is deleted then. The definitions of every sum: engine.scoring.

Each TFT forecast is archived twice over (issue 24): as served (blended with the last value, then
interval-calibrated) and the network's own p10/p50/p90 before both (packed, engine.scoring.
pack_quantiles). The pass scores both from the same targets into rows of `kind` served and raw,
each under the model version that made the forecast ('' for the heuristic, which has no raw).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q

from forecasting.engine.metrics import last_observed, naive_scales
from forecasting.engine.scoring import (
    SUMS,
    CoverageCounts,
    band_sums,
    gather_targets,
    pack_quantiles,
    packed_size,
    unpack_quantiles,
)
from forecasting.engine.spec import (
    BAND_NAMES,
    BAND_STEPS,
    CONTEXT,
    HORIZON,
    METRICS,
    QUANTILES,
    SERVED_QUANTILES,
    STEP_MINUTES,
)
from forecasting.models import ArchivedForecast, ForecastScore, ServerForecast
from forecasting.registry import active_model_version
from forecasting.scoring.calibration import intervals_recalibrate
from forecasting.scoring.probabilities import probability_outcomes_prune, probability_outcomes_resolve
from forecasting.windows import silenced_spans
from ingest.fold import records_fold
from ingest.models import MetricBucket
from tftsite.bulk import objects_insert

logger = logging.getLogger(__name__)

_SERVED = [QUANTILES.index(SERVED_QUANTILES[label]) for label in ("p10", "p50", "p90")]
_STEP = timedelta(minutes=STEP_MINUTES)
_KEY_SPAN = np.int64(1) << 32  # server index · 2³² + step number: one sorted integer key per bucket


def _now() -> datetime:
    return datetime.now(UTC)


# --- Archive (the store step of a prediction chunk) ---------------------------------------------------


def _nullable(values: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else round(float(v), 6) for v in values]


def _packed_raw(raw: np.ndarray | None, methods: list[str]) -> list[bytes | None]:
    """Each TFT forecast's raw p10/p50/p90 (N, H, M, 3), packed; None for the others (the heuristic's
    is served as it is) and for any that is not finite."""
    out: list[bytes | None] = [None] * len(methods)
    if raw is None:
        return out
    raw = np.asarray(raw)
    keep = np.flatnonzero(np.array([m == ServerForecast.Method.TFT for m in methods]) & np.isfinite(raw).all(axis=(1, 2, 3)))
    for i, blob in zip(keep.tolist(), pack_quantiles(raw[keep]) if keep.size else [], strict=True):
        out[i] = blob
    return out


def forecasts_archive(*, windows: list, quantiles: np.ndarray, methods: list[str], model_name: str,
                      raw_quantiles: np.ndarray | None = None, now: datetime | None = None) -> int:
    """Archive each server's forecast unless one from the same origin is archived already (a run every
    minute mostly repeats the 5-minute origin): one COPY for the chunk's new ones (tftsite.bulk, as
    ON CONFLICT DO NOTHING). Returns how many were archived.

    windows: the chunk's ServerWindows; quantiles (N, H, M, K) as served; methods per window;
    raw_quantiles (N, H, M, 3): the TFT's own p10/p50/p90 before the blend and the calibration
    (any values in the heuristic's rows: they are not kept).
    """
    if not windows:
        return 0
    now = now or _now()
    # A run that repeats an archived origin (every run before issue 25's stagger, predict_now) packs nothing.
    stored = set(ArchivedForecast.objects.filter(server_id__in={sw.server_id for sw in windows},
                                                 origin__in={sw.window.end for sw in windows})
                 .values_list("server_id", "origin"))  # fmt: skip
    new = [i for i, sw in enumerate(windows) if (sw.server_id, sw.window.end) not in stored]
    if not new:
        return 0
    served = np.ascontiguousarray(np.asarray(quantiles)[new][..., _SERVED], dtype=np.float32)  # (n, H, M, 3)
    raw = _packed_raw(None if raw_quantiles is None else np.asarray(raw_quantiles)[new], [methods[i] for i in new])
    rows = []
    for j, i in enumerate(new):
        sw = windows[i]
        context = sw.window.values[-CONTEXT:]
        rows.append(ArchivedForecast(
            server_id=sw.server_id, origin=sw.window.end, method=methods[i], model_name=model_name,
            quantiles=served[j].tobytes(), raw_quantiles=raw[j], last_values=_nullable(last_observed(context)),
            scales=_nullable(naive_scales(context)), created_at=now,
        ))
    return objects_insert(model=ArchivedForecast, objs=rows, skip_existing=("server_id", "origin"))


# --- Scoring pass ------------------------------------------------------------------------------------


@dataclass
class _Due:
    """The due archived forecasts of one pass, as arrays in the same order."""

    ids: np.ndarray  # (N,)
    server_ids: np.ndarray  # (N,)
    origins: list[datetime]
    old: np.ndarray  # bands scored before this pass
    new: np.ndarray  # bands scored after it
    quantiles: np.ndarray  # (N, H, M, 3) as served
    last: np.ndarray  # (N, M)
    scale: np.ndarray  # (N, M)
    models: list[str]  # the model version that made each forecast, '' for the heuristic
    has_raw: np.ndarray  # (N,) bool: the TFT's raw quantiles were archived
    raw: np.ndarray  # (R, H, M, 3) the raw quantiles of the rows with has_raw, in order


def _due_filter() -> Q:
    """Band b of a forecast is observed once the server's data reaches past its last step: the
    bucket at origin + (last step) is complete when a later one has started."""
    due = Q()
    for b, (_, hi) in enumerate(BAND_STEPS):
        due |= Q(bands_scored=b, origin__lte=F("server__last_seen") - _STEP * hi)
    return due


def _bands_observed(elapsed: np.ndarray) -> np.ndarray:
    """How many bands are observed, from the seconds between origin and the server's latest data."""
    ends = np.array([hi * STEP_MINUTES * 60 for _, hi in BAND_STEPS], dtype=np.float64)
    return (elapsed[:, None] >= ends[None, :]).sum(axis=1)


def _due_forecasts(limit: int) -> _Due | None:
    """Lock (skipping rows another pass holds) and read the oldest due forecasts."""
    rows = list(
        ArchivedForecast.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(_due_filter())
        .order_by("origin", "pk")
        .values_list("pk", "server_id", "origin", "bands_scored", "quantiles", "last_values", "scales",
                     "server__last_seen", "method", "model_name", "raw_quantiles")[:limit]
    )
    if not rows:
        return None
    elapsed = np.array([(r[7] - r[2]).total_seconds() for r in rows])
    shape = (len(rows), HORIZON, len(METRICS), 3)
    size = packed_size(HORIZON, len(METRICS))
    has_raw = np.array([r[10] is not None and len(r[10]) == size for r in rows], dtype=bool)
    packed = b"".join(bytes(r[10]) for r, keep in zip(rows, has_raw, strict=True) if keep)
    return _Due(
        ids=np.array([r[0] for r in rows], dtype=np.int64),
        server_ids=np.array([r[1] for r in rows], dtype=np.int64),
        origins=[r[2] for r in rows],
        old=np.array([r[3] for r in rows], dtype=np.int64),
        new=_bands_observed(elapsed),
        quantiles=np.frombuffer(b"".join(bytes(r[4]) for r in rows), dtype=np.float32).reshape(shape),
        last=np.array([r[5] for r in rows], dtype=np.float64),
        scale=np.array([r[6] for r in rows], dtype=np.float64),
        models=[r[9] if r[8] == ServerForecast.Method.TFT else "" for r in rows],
        has_raw=has_raw,
        raw=unpack_quantiles(packed, HORIZON, len(METRICS)),
    )


def _step_numbers(times: list[datetime]) -> np.ndarray:
    return np.array([int(t.timestamp()) // (STEP_MINUTES * 60) for t in times], dtype=np.int64)


def _observed(due: _Due) -> np.ndarray:
    """(N, H, M) observed bucket means at every forecast step (NaN where missing): one query for
    the buckets of all due forecasts, matched to their steps by sorted integer keys."""
    first = min(o + _STEP * BAND_STEPS[b][0] for o, b in zip(due.origins, due.old, strict=True))
    last = max(o + _STEP * BAND_STEPS[b - 1][1] for o, b in zip(due.origins, due.new, strict=True))
    servers = np.unique(due.server_ids)
    rows = list(
        MetricBucket.objects.filter(server_id__in=servers.tolist(), bucket_start__gte=first, bucket_start__lt=last,
                                    count__gt=0)
        .order_by("server_id", "bucket_start")
        .values_list("server_id", "bucket_start", "count", *(f"{m}_sum" for m in METRICS))
    )
    if not rows:
        return np.full((len(due.ids), HORIZON, len(METRICS)), np.nan)
    index = np.searchsorted(servers, np.array([r[0] for r in rows], dtype=np.int64))
    keys = index * _KEY_SPAN + _step_numbers([r[1] for r in rows])
    sums = np.array([r[3:] for r in rows], dtype=np.float64)
    means = sums / np.array([r[2] for r in rows], dtype=np.float64)[:, None]
    targets = (np.searchsorted(servers, due.server_ids) * _KEY_SPAN + _step_numbers(due.origins))[:, None]
    return gather_targets(keys, means, targets + np.arange(HORIZON)[None, :])


def _silenced_masked(due: _Due, observed: np.ndarray) -> np.ndarray:
    """The observed targets with the silenced buckets (maintenance windows and state `maintenance`:
    forecasting.windows.silenced_spans) set missing (NaN): what happens in a window is neither scored
    nor counted by the interval calibration."""
    span = _STEP * HORIZON
    spans = silenced_spans(server_ids=np.unique(due.server_ids).tolist(), start=min(due.origins),
                           end=max(due.origins) + span)
    if not spans:
        return observed
    steps = np.arange(HORIZON)
    for i, (server_id, origin) in enumerate(zip(due.server_ids.tolist(), due.origins, strict=True)):
        for a, b, metric in spans.get(server_id, ()):
            lo = (a - origin) / _STEP  # the window in steps after the origin; bucket k is [k, k + 1)
            hi = (b - origin) / _STEP
            inside = (steps < hi) & (steps + 1 > lo)
            cols = [METRICS.index(metric)] if metric in METRICS else slice(None)
            observed[i, inside, cols] = np.nan
    return observed


def _hour(when: datetime) -> datetime:
    return when.replace(minute=0, second=0, microsecond=0)


# A score row's key: server id, metric, band, origin hour, kind, model name.
_Key = tuple[int, str, str, datetime, str, str]
_SERVED_KIND, _RAW_KIND = ForecastScore.Kind.SERVED.value, ForecastScore.Kind.RAW.value


def _aggregate(due: _Due, observed: np.ndarray) -> dict[_Key, np.ndarray]:
    """Sums per (server, metric, band, origin hour, kind, model) over the bands this pass scores: every
    forecast as served, and the TFT forecasts' raw quantiles against the same targets."""
    hours = [_hour(o) for o in due.origins]
    group_keys = list(zip(due.server_ids.tolist(), hours, due.models, strict=True))
    groups = {key: g for g, key in enumerate(dict.fromkeys(group_keys))}
    group_of = np.array([groups[key] for key in group_keys], dtype=np.int64)
    keys = list(groups)
    out: dict[_Key, np.ndarray] = {}
    raw_rows = np.flatnonzero(due.has_raw)
    kinds = ((_SERVED_KIND, np.arange(len(due.ids)), due.quantiles), (_RAW_KIND, raw_rows, due.raw))
    for kind, subset, quantiles in kinds:  # quantiles[j] is the forecast subset[j]
        for b, band in enumerate(BAND_NAMES):
            pick = np.flatnonzero((due.old[subset] <= b) & (due.new[subset] > b))
            if not pick.size:
                continue
            rows = subset[pick]
            sums = band_sums(quantiles[pick], observed[rows], due.last[rows], due.scale[rows], b)
            stacked = np.stack([sums[name] for name in SUMS], axis=-1).astype(np.float64)  # (R, M, S)
            totals = np.zeros((len(groups), len(METRICS), len(SUMS)))
            np.add.at(totals, group_of[rows], stacked)
            for g, m in zip(*np.nonzero(totals[:, :, 0] > 0), strict=True):
                server_id, hour, model = keys[g]
                out[(server_id, METRICS[m], band, hour, kind, model)] = totals[g, m]
    return out


_UPSERT_BATCH = 500


_COLUMNS = ("server_id", "metric", "band", "hour", "kind", "model_name", *SUMS)
_INTS = {SUMS.index(name) for name in ("n", "inside", "below", "above")}


def _upsert_sql(n_rows: int) -> str:
    table = ForecastScore._meta.db_table
    if connection.vendor == "postgresql":
        # One array per column: psycopg parses 14 placeholders instead of 14 per row (3 s → ms at 12,000 rows).
        types = ("bigint", "text", "text", "timestamptz", "text", "text", *("double precision" for _ in SUMS))
        source = "SELECT * FROM unnest(" + ", ".join(f"%s::{t}[]" for t in types) + ")"
    else:
        source = "VALUES " + ", ".join(["(" + ", ".join(["%s"] * len(_COLUMNS)) + ")"] * n_rows)
    # Sums only ever grow by addition, so one statement adds a pass to existing rows (PostgreSQL and
    # SQLite both speak ON CONFLICT … DO UPDATE with `excluded`).
    adds = ", ".join(f"{name} = {table}.{name} + excluded.{name}" for name in SUMS)
    return (f"INSERT INTO {table} ({', '.join(_COLUMNS)}) {source} "
            f"ON CONFLICT (server_id, metric, band, hour, kind, model_name) DO UPDATE SET {adds}")


def _score_params(batch: list) -> list:
    rows = []
    for (server_id, metric, band, hour, kind, model), sums in batch:
        rows.append([server_id, metric, band, connection.ops.adapt_datetimefield_value(hour), kind, model,
                     *(int(v) if k in _INTS else float(v) for k, v in enumerate(sums))])
    if connection.vendor == "postgresql":
        return [list(column) for column in zip(*rows, strict=True)]
    return [value for row in rows for value in row]


def _scores_add(aggregates: dict[_Key, np.ndarray]) -> None:
    items = list(aggregates.items())
    size = len(items) if connection.vendor == "postgresql" else _UPSERT_BATCH
    with connection.cursor() as cursor:
        for start in range(0, len(items), max(size, 1)):
            batch = items[start : start + size]
            cursor.execute(_upsert_sql(len(batch)), _score_params(batch))


def _markers_move(due: _Due) -> bool:
    """Compare-and-swap every due forecast's marker from its old to its new band count; False when
    another pass moved any of them first (only possible where row locks are not enforced)."""
    moved = 0
    for old, new in set(zip(due.old.tolist(), due.new.tolist(), strict=True)):
        ids = due.ids[(due.old == old) & (due.new == new)].tolist()
        moved += ArchivedForecast.objects.filter(pk__in=ids, bands_scored=old).update(bands_scored=new)
    return moved == len(due.ids)


def _coverage(aggregates: dict[_Key, np.ndarray], *, active_model: str) -> list[CoverageCounts]:
    """The pass's counts per server × metric × band (summed over origin hours) for the interval
    calibration: of the served intervals only (the calibration corrects what is served), and only
    those of the active TFT model version. The calibration is applied to TFT forecasts only, so the
    heuristic's misses (its own intervals, never calibrated) would move the TFT's by errors it does
    not make; a replaced model's forecasts, still being scored for up to 8 h after a switch, would
    move the new model's intervals by the old one's misses. No active model: no counts."""
    totals: dict[tuple[int, str, str], np.ndarray] = {}
    for (server_id, metric, band, _, kind, model), sums in aggregates.items():
        if kind != _SERVED_KIND or not active_model or model != active_model:
            continue
        key = (server_id, metric, band)
        totals[key] = totals.get(key, 0) + sums
    idx = [SUMS.index(name) for name in ("n", "inside", "below", "above")]
    return [CoverageCounts(server_id, metric, band, *(int(s[i]) for i in idx))
            for (server_id, metric, band), s in totals.items()]


@dataclass(frozen=True)
class ScoringPass:
    forecasts: int  # archived forecasts scored (one or more bands each)
    bands: int  # forecast × band pairs scored
    rows: int  # ForecastScore rows added to or created
    completed: int  # archived forecasts fully scored and deleted


def forecasts_score(*, limit: int | None = None) -> ScoringPass:
    """Score the oldest due archived forecasts (at most `limit`, TFT_SCORE_MAX_PER_PASS) in one
    transaction: sums added, markers moved, fully scored forecasts deleted, and the pass's coverage
    counts handed to the interval calibration, all or nothing."""
    limit = limit or settings.TFT_SCORE_MAX_PER_PASS
    records_fold()  # the observed rollups include every committed batch
    with transaction.atomic():
        due = _due_forecasts(limit)
        if due is None:
            return ScoringPass(0, 0, 0, 0)
        if not _markers_move(due):
            transaction.set_rollback(True)
            logger.info("scoring pass skipped: another pass scored these forecasts")
            return ScoringPass(0, 0, 0, 0)
        aggregates = _aggregate(due, _silenced_masked(due, _observed(due)))
        _scores_add(aggregates)
        completed = ArchivedForecast.objects.filter(pk__in=due.ids.tolist(), bands_scored__gte=len(BAND_NAMES)).delete()[0]
        # Interval calibration (issue #13 item 2) takes each pass's coverage counts in the same
        # transaction, so it sees every scored target exactly once.
        active = active_model_version()
        model_name = active.name if active else ""
        intervals_recalibrate(observations=_coverage(aggregates, active_model=model_name), model_name=model_name)
    result = ScoringPass(len(due.ids), int((due.new - due.old).sum()), len(aggregates), completed)
    logger.info("forecasts scored", extra=result.__dict__)
    return result


def forecast_scores_prune(*, now: datetime | None = None) -> int:
    """Delete score rows, archived forecasts never scored (their server went quiet) and probability
    outcomes older than TFT_SCORE_RETENTION_DAYS."""
    cutoff = (now or _now()) - timedelta(days=settings.TFT_SCORE_RETENTION_DAYS)
    scores = ForecastScore.objects.filter(hour__lt=cutoff).delete()[0]
    archived = ArchivedForecast.objects.filter(origin__lt=cutoff).delete()[0]
    return scores + archived + probability_outcomes_prune(now=now)


def live_scoring_pass(*, limit: int | None = None) -> ScoringPass:
    """The periodic task's work: one scoring pass, one pass of incident-probability outcomes (issue
    22), then the retention (indexed range deletes)."""
    result = forecasts_score(limit=limit)
    probability_outcomes_resolve()
    forecast_scores_prune()
    return result
