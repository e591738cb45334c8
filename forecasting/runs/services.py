"""Writes of a prediction run's lifecycle: start (overlap guard, chunking), finalise (alert
lifecycle, fleet environment, mark complete), fail, expire and prune.

A run goes: start → one or more chunks (`forecasting.runs.chunks`: read windows, forecast, serve,
store) → finalise. The last chunk to finish finalises. Whether the chunks run inline
(`fleet_predict`, `predict_now`) or as Celery tasks on several workers, the same functions do the
work, so both give the same results. Nothing here loads torch.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

from celery import current_app
from django.conf import settings
from django.db import IntegrityError, transaction

from forecasting.alerts.selectors import alerts_open_counts
from forecasting.alerts.services import alerts_apply_run
from forecasting.engine.probability import fleet_environment
from forecasting.models import PredictionRun, ServerForecast
from forecasting.runs.selectors import current_run, due_server_ids, forecast_is_stale, served_forecasts
from forecasting.windows import ready_server_ids, ready_servers
from ingest.fold import records_fold

logger = logging.getLogger(__name__)

# The gpu queue's task (forecasting.tasks), enqueued by name so this module never imports the tasks.
CHUNK_TASK = "forecasting.tasks.predict_fleet_chunk"


def _now() -> datetime:
    return datetime.now(UTC)


# --- Start ------------------------------------------------------------------------------------


def prediction_runs_expire_stale(*, now: datetime | None = None) -> int:
    """Mark running runs whose heartbeat stopped (worker killed, chunk lost) as expired."""
    now = now or _now()
    cutoff = now - timedelta(seconds=settings.TFT_RUN_STALE_SECONDS)
    expired = PredictionRun.objects.filter(status=PredictionRun.Status.RUNNING, heartbeat_at__lt=cutoff).update(
        status=PredictionRun.Status.EXPIRED, finished_at=now, error="expired: no heartbeat (worker died or stalled)"
    )
    if expired:
        logger.warning("expired stalled prediction runs", extra={"runs": expired})
    return expired


def prediction_run_start(*, now: datetime | None = None, chunk_size: int | None = None, due_only: bool = False):
    """Create the run and split its servers into chunks; None if another run is running. Every ready
    server, or (due_only, the schedule's runs) only those due (selectors.due_server_ids)."""
    now = now or _now()
    prediction_runs_expire_stale(now=now)
    records_fold()  # ready servers, last seen and the windows' rollups include every committed batch
    if due_only:
        server_ids = due_server_ids(servers=list(ready_servers(now=now).values_list("id", "last_seen")), now=now)
    else:
        server_ids = ready_server_ids(now=now)
    size = chunk_size or settings.TFT_PREDICTION_CHUNK_SIZE
    chunks = [server_ids[i : i + size] for i in range(0, len(server_ids), size)] or [[]]
    try:
        with transaction.atomic():
            run = PredictionRun.objects.create(
                status=PredictionRun.Status.RUNNING,
                started_at=now,
                heartbeat_at=now,
                servers=len(server_ids),
                forecasted=len(server_ids),
                chunks_total=len(chunks),
            )
    except IntegrityError:
        logger.info("prediction run skipped: another run is in progress")
        return None, []
    return run, chunks








































def prediction_run_schedule(*, now: datetime | None = None) -> int | None:
    """Start a run and fan its chunks out to the `gpu` queue once the run row is committed (beat's
    task). None when another run is running."""
    run, chunks = prediction_run_start(now=now, due_only=settings.TFT_PREDICTION_DUE_ONLY)
    if run is None:
        return None

    def enqueue() -> None:
        for ids in chunks:
            current_app.send_task(
                CHUNK_TASK, kwargs={"run_id": run.pk, "server_ids": ids}, expires=settings.TFT_RUN_STALE_SECONDS
            )

    transaction.on_commit(enqueue)
    return run.pk


# --- Finalise -------------------------------------------------------------------------------------


def _serve_run_forecasts(run: PredictionRun) -> None:
    """Make the run's forecasts the current ones of their servers; a server no longer ready (silent
    past TFT_SERVER_STALE_HOURS) stops being served, as it would have dropped out of a full run."""
    made = ServerForecast.objects.filter(run=run).values("server_id")
    ServerForecast.objects.filter(current=True, server_id__in=made).exclude(run=run).update(current=False)
    ServerForecast.objects.filter(current=True).exclude(
        server_id__in=ready_servers(now=run.started_at).values("id")).update(current=False)
    ServerForecast.objects.filter(run=run).update(current=True)


def _served_counts(run: PredictionRun, methods: list[tuple[str, str]]) -> None:
    """The run's served counts, over every server's current forecast (what its readers show)."""
    run.servers = len(methods)
    run.fallback_count = sum(method == ServerForecast.Method.HEURISTIC for method, _ in methods)
    run.tft_count = run.servers - run.fallback_count
    reasons: dict[str, int] = {}
    for _, reason in methods:
        if reason:
            reasons[reason.split(":")[0]] = reasons.get(reason.split(":")[0], 0) + 1
    run.fallback_reasons = reasons
    if not run.model_name:  # it forecast nobody: it serves what the run before it served
        previous = current_run()
        if previous is not None:
            run.model_version, run.model_name, run.device = previous.model_version, previous.model_name, previous.device


def prediction_run_finalize(*, run: PredictionRun) -> None:
    """Serve the run's forecasts, then the alert lifecycle and fleet environment over every served
    forecast; marks the run complete. Runs inside the caller's transaction, with the run row locked."""
    now = _now()
    started = time.perf_counter()
    _serve_run_forecasts(run)
    rows = served_forecasts().values_list("server_id", "alert_candidates", "prob_30m", "prob_8h", "origin", "method",
                                          "fallback_reason")
    forecasts, stale, methods = [], set(), []
    # The servers this run did not forecast step nothing: their origin is the one that last stepped
    # them (as a run within the same bucket always did); they are still silenced and refreshed.
    for server_id, candidates, p30, p8h, origin, method, reason in rows:
        forecasts.append((server_id, candidates, p30, p8h, origin))
        methods.append((method, reason))
        if forecast_is_stale(run, origin):
            stale.add(server_id)
    _served_counts(run, methods)
    # A stale server's forecast continues old data: it opens, refreshes and resolves nothing. Its open
    # alerts stay as they are (not resolved: silence is no evidence the problem went away, and a
    # resolve pushed for a server that stopped reporting would hide the very moment it may be down).
    alerts_apply_run(run=run, forecasts=[f for f in forecasts if f[0] not in stale], now=now, held_server_ids=stale)
    # Fleet health never says "healthy" beside open alerts (engine.probability documents the rule).
    open_alerts = alerts_open_counts()
    run.environment = fleet_environment([(p30, p8h) for _, _, p30, p8h, _ in forecasts],
                                        critical_alerts=open_alerts.get("critical", 0),
                                        warning_alerts=open_alerts.get("warning", 0))  # fmt: skip
    run.durations = {**run.durations, "finalize": round(time.perf_counter() - started, 4)}
    run.status = PredictionRun.Status.COMPLETE
    run.finished_at = now
    if not run.model_name:
        run.model_name = ""
    run.save()
    logger.info(
        "prediction run complete",
        extra={
            "run_id": run.pk,
            "servers": run.servers,
            "tft": run.tft_count,
            "fallback": run.fallback_count,
            "seconds": round((now - run.started_at).total_seconds(), 3),
            "fleet_health": run.environment.get("fleet_health"),
        },
    )


def prediction_run_fail(*, run_id: int, error: str) -> None:
    PredictionRun.objects.filter(pk=run_id, status=PredictionRun.Status.RUNNING).update(
        status=PredictionRun.Status.FAILED, finished_at=_now(), error=error[:2000]
    )




def prediction_runs_prune(*, keep: int | None = None) -> int:
    """Delete all but the newest `keep` finished runs (their forecasts go with them)."""
    keep = keep or settings.TFT_KEEP_RUNS
    # A run that still holds a server's current forecast stays (a server is forecast once a bucket).
    serving = served_forecasts().values("run_id")
    finished = (PredictionRun.objects.exclude(status=PredictionRun.Status.RUNNING).exclude(pk__in=serving)
                .order_by("-started_at"))
    old_ids = list(finished.values_list("pk", flat=True)[keep:])
    if not old_ids:
        return 0
    PredictionRun.objects.filter(pk__in=old_ids).delete()
    return len(old_ids)
