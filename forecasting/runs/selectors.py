"""Reads of prediction runs: the current run, its forecasts as the API serves them (spliced JSON),
the staleness rule, and the /status section about predictions and the model."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings

from forecasting.alerts.selectors import open_alerts_contract
from forecasting.engine.explanation import heuristic_explanation
from forecasting.engine.spec import HORIZON, METRICS, STEP_MINUTES
from forecasting.models import PredictionRun, ServerForecast
from forecasting.registry import active_model_version
from forecasting.scoring.selectors import server_accuracy
from forecasting.windows import bucket_floor


def current_run() -> PredictionRun | None:
    """The latest complete run: a running, failed or expired run is never served."""
    return PredictionRun.objects.filter(status=PredictionRun.Status.COMPLETE).order_by("-finished_at").first()


def served_forecasts():
    """Every server's current forecast (a queryset), whichever complete run made it: what every
    reader serves beside the current run's metadata, since a run forecasts only the servers due."""
    return ServerForecast.objects.filter(current=True)


# --- Which servers a run forecasts -------------------------------------------------------------------


def stagger_runs() -> int:
    """How many runs of a bucket share its due servers (TFT_PREDICTION_STAGGER_RUNS, 0 = all of them)."""
    per_bucket = max(1, STEP_MINUTES * 60 // settings.TFT_PREDICTION_INTERVAL_SECONDS)
    return min(settings.TFT_PREDICTION_STAGGER_RUNS or per_bucket, per_bucket)


def stagger_phase(now: datetime) -> int:
    """Which of the bucket's runs a run at `now` is (0 = the first after the bucket closed)."""
    into = (now - bucket_floor(now)).total_seconds()
    return min(int(into // settings.TFT_PREDICTION_INTERVAL_SECONDS), stagger_runs() - 1)


def server_slot(server_id: int) -> int:
    """The run of each bucket (its phase) from which a server is taken: stable, and even over ids."""
    return server_id % stagger_runs()


def due_server_ids(*, servers: list[tuple[int, datetime]], now: datetime) -> list[int]:
    """Of the ready (server id, last_seen), the servers a scheduled run at `now` forecasts.

    Due: no current forecast (at once), or one made from older data or by another model than the
    active one. A run at `now` reads the buckets closed by then, so a server has new data when its
    newest closed bucket ends after the start of the bucket in which its current forecast's run
    began. A due server waits for its slot's run (or any later one, if that run was missed), so each
    run takes about 1/stagger_runs() of the fleet and nobody waits more than a bucket."""
    active = active_model_version()
    made = {
        sid: (bucket_floor(started), version_id)
        for sid, started, version_id in served_forecasts().values_list("server_id", "run__started_at",
                                                                       "run__model_version_id")
    }
    cutoff, step, phase = bucket_floor(now), timedelta(minutes=STEP_MINUTES), stagger_phase(now)
    due = []
    for sid, last_seen in servers:
        previous = made.get(sid)
        if previous is None:
            due.append(sid)
            continue
        if server_slot(sid) > phase:
            continue
        newest_closed_end = min(bucket_floor(last_seen) + step, cutoff)
        if newest_closed_end > previous[0] or (active is not None and previous[1] != active.pk):
            due.append(sid)
    return due








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


def run_is_stale(run: PredictionRun, *, now: datetime) -> bool:
    """The stale-run rule, in one place (/status, the dashboard): the current run finished more than
    three prediction intervals ago, so runs have stopped (beat or the gpu worker is down)."""
    return (now - run.finished_at).total_seconds() > 3 * settings.TFT_PREDICTION_INTERVAL_SECONDS


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
    return served_forecasts().filter(origin__lt=stale_before(run.started_at)).count()


def _with_origin(payload: str, run: PredictionRun, origin: datetime) -> str:
    """Every metric's forecast carries its `origin` and `stale`, spliced into the stored JSON text:
    parsing 1,152 floats a server to add two keys would cost more than the whole response."""
    fields = f'"origin":{json.dumps(origin.isoformat())},"stale":{json.dumps(forecast_is_stale(run, origin))},'
    return _METRIC_OBJECT.sub(lambda match: match.group(1) + fields, payload)


_PREDICTION_FIELDS = ("server__name", "payload", "method", "fallback_reason", "origin")


def _predictions_object(run: PredictionRun, rows) -> tuple[str, dict, dict]:
    """(`predictions` JSON text, methods, fallback reasons) of forecast rows in _PREDICTION_FIELDS."""
    parts, methods, reasons = [], {}, {}
    for name, payload, method, reason, origin in rows:
        parts.append(f"{json.dumps(name)}: {_with_origin(payload, run, origin)}")
        methods[name] = method
        if reason:
            reasons[name] = reason
    return "{" + ", ".join(parts) + "}", methods, reasons


def _run_predictions(run: PredictionRun) -> tuple[str, dict, dict]:
    """The run's `predictions` object as JSON text, its methods and fallback reasons.

    The served forecasts change only when a run completes, so each web process builds this once per run (about 8 MB at
    1,000 servers) instead of reloading every stored forecast on every request.
    """
    key = (run.pk, run.finished_at)
    cached = _predictions_cache.get(key)
    if cached is not None:
        return cached
    rows = served_forecasts().order_by("server__name").values_list(*_PREDICTION_FIELDS)
    built = _predictions_object(run, rows.iterator(chunk_size=500))
    _predictions_cache.clear()  # only the current run is worth keeping
    _predictions_cache[key] = built
    return built


def predictions_current_json(run: PredictionRun, *, now: datetime | None = None) -> str:
    """The body of GET /predictions/current for the whole fleet, spliced from the stored per-server
    JSON (the guide's shape; a fleet above TFT_PREDICTIONS_PAGE_SIZE is served in pages instead)."""
    predictions, methods, reasons = _run_predictions(run)
    # Alerts change between runs (acknowledgements), so they are read fresh.
    return _predictions_body(run, predictions, methods, reasons, open_alerts_contract(), now=now)


@dataclass(frozen=True, slots=True)
class PredictionsPage:
    body: str  # the guide's shape, for the page's servers
    last_server: str | None  # the page's last server name when more servers follow, else None


def predictions_page_json(
    run: PredictionRun, *, after: str | None, limit: int, now: datetime | None = None
) -> PredictionsPage:
    """One page of GET /predictions/current: the run's forecasts of up to `limit` servers whose names
    sort after `after`, in name order, with their open alerts; the environment stays the fleet's.
    Read straight from the (run, server) rows, so a page costs the same whatever the fleet's size."""
    rows = served_forecasts()
    if after is not None:
        rows = rows.filter(server__name__gt=after)
    page = list(rows.order_by("server__name").values_list(*_PREDICTION_FIELDS)[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    names = [row[0] for row in page]
    predictions, methods, reasons = _predictions_object(run, page)
    alerts = open_alerts_contract(server_names=names)
    paging = {"limit": limit, "after": after, "servers": len(names)}
    body = _predictions_body(run, predictions, methods, reasons, alerts, now=now, page=paging)
    return PredictionsPage(body=body, last_server=names[-1] if more and names else None)


def _predictions_body(run: PredictionRun, predictions: str, methods: dict, reasons: dict, alerts: list[dict], *,
                      now: datetime | None, page: dict | None = None) -> str:
    metadata = run_metadata(run, now=now)
    metadata["methods"] = methods
    metadata["fallback_reasons"] = reasons
    if page is not None:
        metadata["page"] = page
    return (
        '{"predictions": ' + predictions + ", "
        f'"alerts": {json.dumps(alerts)}, '
        f'"environment": {json.dumps(run.environment)}, '
        f'"metadata": {json.dumps(metadata)}}}'
    )


def server_forecast_json(run: PredictionRun, server_name: str, *, now: datetime | None = None) -> str | None:
    forecast = (
        served_forecasts().filter(server__name=server_name)
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




def stored_explanation(method: str) -> dict:
    """The explanation of a forecast stored before runs explained their forecasts."""
    return heuristic_explanation() if method == ServerForecast.Method.HEURISTIC else {"method": method, "text": "no explanation stored with this forecast"}


def status_section(*, now: datetime | None = None) -> dict:
    """What /status shows about predictions and the model."""
    now = now or datetime.now(UTC)
    run = current_run()
    version = active_model_version()
    last_attempt = PredictionRun.objects.order_by("-started_at").values("status", "started_at", "error").first()
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
            "stale": run_is_stale(run, now=now),
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



# --- Live accuracy (forecasting.scoring.services writes ForecastScore) --------------------------------















