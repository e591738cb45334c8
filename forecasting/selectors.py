"""Reads for the forecasting app: model windows from the rollups, the current run, alerts, status."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import groupby
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import connection
from django.db.models import Q, Sum

from forecasting.engine.explanation import heuristic_explanation
from forecasting.engine.folders import read_importance
from forecasting.engine.scoring import BANDS as SCORE_BANDS
from forecasting.engine.scoring import SUMS as SCORE_SUMS
from forecasting.engine.scoring import accuracy
from forecasting.engine.series import SeriesWindow, grid_series
from forecasting.engine.spec import CONTEXT, DEFAULT_THRESHOLDS, HORIZON, METRICS, STATES, STEP_MINUTES
from forecasting.models import Alert, AlertThreshold, ForecastScore, ModelVersion, PredictionRun, ServerForecast
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


def _buckets_sql(n_ids: int, *, context_only: bool) -> str:
    span = CONTEXT * STEP_MINUTES
    means = ", ".join(f"b.{m}_sum / b.count" for m in METRICS)
    states = ", ".join(f"b.n_{s}" for s in STATES)
    if connection.vendor == "postgresql":
        epoch = "EXTRACT(EPOCH FROM b.bucket_start)::bigint"
        since = f"s.last_seen - interval '{span} minutes'"
        ids = "b.server_id = ANY(%s)"
    else:
        epoch = "CAST(strftime('%%s', b.bucket_start) AS INTEGER)"
        since = f"datetime(s.last_seen, '-{span} minutes')"
        ids = f"b.server_id IN ({', '.join(['%s'] * n_ids)})"
    recent = f" AND b.bucket_start > {since}" if context_only else ""
    # One query for the whole batch of servers; per server it is a range scan of the
    # (server, bucket_start) unique index (over at most one context of buckets for model windows).
    return (
        f"SELECT b.server_id, s.name, s.profile, {epoch}, {means}, {states} "
        f"FROM ingest_metricbucket b JOIN ingest_server s ON s.id = b.server_id "
        f"WHERE {ids}{recent} AND b.count > 0 "
        f"ORDER BY b.server_id, b.bucket_start"
    )


def _bucket_series(*, server_ids: list[int], context_only: bool) -> list[ServerWindow]:
    """The one adapter from stored buckets to engine series: bucket means and state counts per
    server, placed on the grid by the engine (which also picks each bucket's dominant state)."""
    if not server_ids:
        return []
    params = [list(server_ids)] if connection.vendor == "postgresql" else list(server_ids)
    with connection.cursor() as cursor:
        cursor.execute(_buckets_sql(len(server_ids), context_only=context_only), params)
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


def server_histories(*, server_names: list[str] | None = None) -> list[SeriesWindow]:
    """Every (or the named) server's whole bucket history as engine series, by name (training,
    backtests)."""
    query = Server.objects.order_by("name")
    if server_names:
        query = query.filter(name__in=list(server_names))
    ids = list(query.values_list("id", flat=True))
    return sorted((sw.window for sw in _bucket_series(server_ids=ids, context_only=False)), key=lambda w: w.server)


def alert_thresholds() -> dict[str, dict]:
    rules = {metric: dict(rule) for metric, rule in DEFAULT_THRESHOLDS.items()}
    for row in AlertThreshold.objects.all():
        rules[row.metric] = {
            "warning": row.warning,
            "critical": row.critical,
            "relative": row.relative,
            "floor": row.floor,
        }
    return rules


def active_model_version() -> ModelVersion | None:
    return ModelVersion.objects.filter(is_active=True, valid=True).first()


def current_run() -> PredictionRun | None:
    """The latest complete run: a running, failed or expired run is never served."""
    return PredictionRun.objects.filter(status=PredictionRun.Status.COMPLETE).order_by("-finished_at").first()


def open_alerts(*, server_name: str | None = None):
    query = Alert.objects.filter(state__in=[Alert.State.ACTIVE, Alert.State.ACKNOWLEDGED]).select_related("server")
    if server_name:
        query = query.filter(server__name=server_name)
    return query.order_by("-severity", "minutes_ahead")


_CONTRACT_ALERT_FIELDS = (
    "pk", "server__name", "metric", "severity", "state", "rule", "predicted_value", "threshold", "steps_ahead",
    "minutes_ahead", "message", "opened_at", "updated_at", "acknowledged_at",
)


def open_alerts_contract(*, server_name: str | None = None) -> list[dict]:
    """Open alerts in the contract's alert shape (plus id, state and times), most severe first.

    Read as plain rows: a thousand alerts as model instances would cost more than the response.
    """
    rows = open_alerts(server_name=server_name).values_list(*_CONTRACT_ALERT_FIELDS)
    out = []
    for pk, server, metric, severity, state, rule, value, threshold, steps, minutes, message, opened, updated, acked in rows:
        out.append(
            {
                "id": pk,
                "server": server,
                "metric": metric,
                "severity": severity,
                "state": state,
                "rule": rule,
                "predicted_value": value,
                "threshold": threshold,
                "steps_ahead": steps,
                "minutes_ahead": minutes,
                "message": message,
                "opened_at": opened.isoformat(),
                "updated_at": updated.isoformat(),
                "acknowledged_at": acked.isoformat() if acked else None,
            }
        )
    return out


def run_metadata(run: PredictionRun, *, now: datetime | None = None) -> dict:
    now = now or datetime.now(UTC)
    return {
        "model_type": "TFT" if run.tft_count else "heuristic",
        "prediction_time": run.finished_at.isoformat(),
        "horizon_steps": HORIZON,
        "step_minutes": STEP_MINUTES,
        "device": run.device or "cpu",
        "model_version": run.model_name or None,
        "run_id": run.pk,
        "age_seconds": round((now - run.finished_at).total_seconds(), 1),
        "servers": run.servers,
        "tft_servers": run.tft_count,
        "fallback_servers": run.fallback_count,
    }


_predictions_cache: dict[tuple, tuple[str, dict, dict]] = {}
_METRIC_OBJECT = re.compile('("(?:' + "|".join(METRICS) + r')"\s*:\s*\{)')


def stale_before(at: datetime) -> datetime:
    """The staleness rule, in one place: a forecast whose origin (just after the server's newest
    bucket) is before this, judged at `at`, continues old data, not the present. The API and the
    run judge at the run's start, the dashboard at view time."""
    return at - timedelta(minutes=settings.TFT_STALE_AFTER_MINUTES)


def origin_is_stale(origin: datetime, *, at: datetime) -> bool:
    return origin < stale_before(at)


def forecast_is_stale(run: PredictionRun, origin: datetime) -> bool:
    """Stale at the run's start: such a forecast is served marked `stale` and raises no alerts."""
    return origin_is_stale(origin, at=run.started_at)


def stale_forecast_count(run: PredictionRun) -> int:
    return ServerForecast.objects.filter(run=run, origin__lt=stale_before(run.started_at)).count()


def _with_origin(payload: str, run: PredictionRun, origin: datetime) -> str:
    """Every metric's forecast carries its `origin` and `stale`, spliced into the stored JSON text:
    parsing 1,152 floats a server to add two keys would cost more than the whole response."""
    fields = f'"origin":{json.dumps(origin.isoformat())},"stale":{json.dumps(forecast_is_stale(run, origin))},'
    return _METRIC_OBJECT.sub(lambda match: match.group(1) + fields, payload)


def _run_predictions(run: PredictionRun) -> tuple[str, dict, dict]:
    """The run's `predictions` object as JSON text, its methods and fallback reasons.

    A complete run never changes, so each web process builds this once per run (about 8 MB at
    1,000 servers) instead of reloading every stored forecast on every request.
    """
    key = (run.pk, run.finished_at)
    cached = _predictions_cache.get(key)
    if cached is not None:
        return cached
    rows = ServerForecast.objects.filter(run=run).order_by("server__name").values_list(
        "server__name", "payload", "method", "fallback_reason", "origin"
    )
    parts, methods, reasons = [], {}, {}
    for name, payload, method, reason, origin in rows.iterator(chunk_size=500):
        parts.append(f"{json.dumps(name)}: {_with_origin(payload, run, origin)}")
        methods[name] = method
        if reason:
            reasons[name] = reason
    built = ("{" + ", ".join(parts) + "}", methods, reasons)
    _predictions_cache.clear()  # only the current run is worth keeping
    _predictions_cache[key] = built
    return built


def predictions_current_json(run: PredictionRun, *, now: datetime | None = None) -> str:
    """The body of GET /predictions/current, spliced from the stored per-server JSON."""
    predictions, methods, reasons = _run_predictions(run)
    metadata = run_metadata(run, now=now)
    metadata["methods"] = methods
    metadata["fallback_reasons"] = reasons
    # Alerts change between runs (acknowledgements), so they are read fresh.
    alerts = open_alerts_contract()
    return (
        '{"predictions": ' + predictions + ", "
        f'"alerts": {json.dumps(alerts)}, '
        f'"environment": {json.dumps(run.environment)}, '
        f'"metadata": {json.dumps(metadata)}}}'
    )


def server_forecast_json(run: PredictionRun, server_name: str, *, now: datetime | None = None) -> str | None:
    forecast = (
        ServerForecast.objects.filter(run=run, server__name=server_name)
        .values_list("payload", "method", "fallback_reason", "prob_30m", "prob_8h", "origin", "encoder_steps", "state",
                     "explanation")
        .first()
    )
    if forecast is None:
        return None
    payload, method, reason, p30, p8h, origin, encoder_steps, state, explanation = forecast
    meta = {
        **run_metadata(run, now=now),
        "method": method,
        "fallback_reason": reason or None,
        "origin": origin.isoformat(),
        "stale": forecast_is_stale(run, origin),
        "encoder_steps": encoder_steps,
        "state": state,
    }
    alerts = open_alerts_contract(server_name=server_name)
    return (
        f'{{"server": {json.dumps(server_name)}, "prediction": {_with_origin(payload, run, origin)}, '
        f'"probabilities": {json.dumps({"prob_30m": p30, "prob_8h": p8h})}, '
        f'"alerts": {json.dumps(alerts)}, "explanation": {json.dumps(explanation or stored_explanation(method))}, '
        f'"accuracy": {json.dumps(server_accuracy(server_name=server_name, now=now))}, '
        f'"metadata": {json.dumps(meta)}}}'
    )


def model_version_importance(*, version: ModelVersion) -> dict | None:
    """The model's global variable importance (importance.json in its folder), None if it has none."""
    return read_importance(Path(version.path))


def stored_explanation(method: str) -> dict:
    """The explanation of a forecast stored before runs explained their forecasts."""
    return heuristic_explanation() if method == ServerForecast.Method.HEURISTIC else {"method": method, "text": "no explanation stored with this forecast"}


def status_section(*, now: datetime | None = None) -> dict:
    """What /status shows about predictions and the model."""
    now = now or datetime.now(UTC)
    run = current_run()
    version = active_model_version()
    last_attempt = PredictionRun.objects.order_by("-started_at").values("status", "started_at", "error").first()
    interval = settings.TFT_PREDICTION_INTERVAL_SECONDS
    section: dict = {
        "model": {"active_version": version.name if version else None, "metrics": version.metrics if version else {}},
        "predictions": None,
    }
    if run is not None:
        age = (now - run.finished_at).total_seconds()
        section["predictions"] = {
            "run_id": run.pk,
            "finished_at": run.finished_at.isoformat(),
            "age_seconds": round(age, 1),
            "stale": age > 3 * interval,
            "duration_seconds": round(run.duration_seconds or 0.0, 3),
            "durations": run.durations,
            "model_version": run.model_name or None,
            "device": run.device,
            "servers": run.servers,
            "tft_servers": run.tft_count,
            "fallback_servers": run.fallback_count,
            "stale_servers": stale_forecast_count(run),
            "fallback_rate": round(run.fallback_count / run.servers, 4) if run.servers else 0.0,
            "fallback_reasons": run.fallback_reasons,
            "fleet_health": run.environment.get("fleet_health"),
        }
    if last_attempt is not None:
        section["last_attempt"] = {
            "status": last_attempt["status"],
            "started_at": last_attempt["started_at"].isoformat(),
            "error": last_attempt["error"] or None,
        }
    return section



# --- Live accuracy (forecasting.scoring_services writes ForecastScore) --------------------------------

ACCURACY_WINDOWS: dict[str, timedelta] = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}


def _score_sums(query, group: tuple[str, ...]) -> dict[tuple, dict[str, float]]:
    """Summed score columns per group: one grouped query."""
    rows = query.values(*group).annotate(**{f"total_{name}": Sum(name) for name in SCORE_SUMS}).order_by(*group)
    return {tuple(row[g] for g in group): {name: row[f"total_{name}"] or 0 for name in SCORE_SUMS} for row in rows}


def _added(sums: list[dict[str, float]]) -> dict[str, float]:
    return {name: sum(s.get(name, 0) for s in sums) for name in SCORE_SUMS}


def _window_scores(window: str, now: datetime | None):
    return ForecastScore.objects.filter(hour__gte=(now or datetime.now(UTC)) - ACCURACY_WINDOWS[window])


def server_accuracy(*, server_name: str, now: datetime | None = None) -> dict:
    """{metric: {"24h": {mase, naive_mase, mase_vs_naive, pinball, coverage_80, n, bands: {band: …}},
    "7d": …}} of one server's scored forecasts (by origin time): one grouped query per window."""
    out: dict = {metric: {} for metric in METRICS}
    for window in ACCURACY_WINDOWS:
        by_band = _score_sums(_window_scores(window, now).filter(server__name=server_name), ("metric", "band"))
        for metric in METRICS:
            bands = {band: by_band.get((metric, band), {}) for band in SCORE_BANDS}
            out[metric][window] = {**accuracy(_added(list(bands.values()))),
                                   "bands": {band: accuracy(s) for band, s in bands.items()}}
    return out


def fleet_accuracy(*, now: datetime | None = None) -> dict:
    """{"24h": {…all metrics…, "metrics": {metric: {…}}}, "7d": …} over the whole fleet. The
    all-metric figures are ratios of sums (MASE, ×naive, coverage); pinball is per metric only,
    since it is in the metric's unit."""
    out = {}
    for window in ACCURACY_WINDOWS:
        by_metric = _score_sums(_window_scores(window, now), ("metric",))
        metrics = {metric: accuracy(by_metric.get((metric,), {})) for metric in METRICS}
        overall = accuracy(_added(list(by_metric.values())))
        out[window] = {**overall, "pinball": None, "metrics": metrics}
    return out


def fleet_band_accuracy(*, window: str = "24h", now: datetime | None = None) -> dict:
    """The whole fleet over ``window``, all metrics: {…overall…, "bands": {band: {…}}} — one grouped
    query. Per band because the bands fill in at different speeds (a 2–8 h band is scored 8 h after
    its forecast), so an overall figure alone reads only the short horizons for the first hours."""
    by_band = _score_sums(_window_scores(window, now), ("band",))
    bands = {band: {**accuracy(by_band.get((band,), {})), "pinball": None} for band in SCORE_BANDS}
    return {**accuracy(_added(list(by_band.values()))), "pinball": None, "bands": bands}


def series_accuracy(*, now: datetime | None = None) -> dict[tuple[str, str, str], dict]:
    """(server name, metric, band) → accuracy over the last 24 h: one grouped query (/metrics)."""
    sums = _score_sums(_window_scores("24h", now), ("server__name", "metric", "band"))
    return {key: accuracy(s) for key, s in sums.items()}
