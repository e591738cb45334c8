"""Writes for the forecasting app: prediction runs, their forecasts, alerts and their lifecycle.

A run goes: start (overlap guard, chunking) → one or more chunks (read windows, forecast, score,
store) → finalise (alert lifecycle, fleet environment, mark complete). The last chunk to finish
finalises. Whether the chunks run inline (`fleet_predict`, `predict_now`) or as Celery tasks on
several workers, the same functions do the work, so both give the same results.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction

from forecasting import alerts as rules
from forecasting.alert_services import OPEN_STATES, alert_acknowledge, alert_resolve, alerts_apply_run  # noqa: F401
from forecasting.heuristic import heuristic_quantiles
from forecasting.models import PredictionRun, ServerForecast
from forecasting.selectors import active_model_version, alert_thresholds, ready_server_ids, server_windows
from forecasting.spec import QUANTILES, SERVED_QUANTILES, TARGETS
from ingest.contract import STATES

logger = logging.getLogger(__name__)

_SERVED_INDEX = {label: QUANTILES.index(q) for label, q in SERVED_QUANTILES.items()}
# The alert lifecycle (a run's and operators') lives in forecasting.alert_services; OPEN_STATES,
# alert_acknowledge and alert_resolve are imported above so existing callers keep working.


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


def prediction_run_start(*, now: datetime | None = None, chunk_size: int | None = None):
    """Create the run and split the ready servers into chunks; None if another run is running."""
    now = now or _now()
    prediction_runs_expire_stale(now=now)
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
                chunks_total=len(chunks),
            )
    except IntegrityError:
        logger.info("prediction run skipped: another run is in progress")
        return None, []
    return run, chunks


# --- One chunk ----------------------------------------------------------------------------------


def _model_for_run():
    """(forecaster or None, version or None, fallback reason or '')."""
    version = active_model_version()
    if version is None:
        # A fresh machine, or folders added by hand: registering is a few small file reads.
        from forecasting.registry import model_versions_sync

        model_versions_sync()
        version = active_model_version()
    if version is None:
        return None, None, "no_model: no valid model folder is registered (train_tft, then register_models)"
    from forecasting.inference import ModelUnavailableError, get_forecaster, log_once

    try:
        return get_forecaster(version.path), version, ""
    except ModelUnavailableError as exc:
        log_once(str(exc), "model unavailable, forecasting with the heuristic", model_version=version.name)
        return None, version, str(exc)[:200]


def _last_observed(values: np.ndarray) -> np.ndarray:
    """(N, T, M) with NaN gaps → (N, M) last finite value (0 where none)."""
    finite = np.isfinite(values)
    t = values.shape[1]
    last_idx = t - 1 - np.argmax(finite[:, ::-1, :], axis=1)  # (N, M)
    last = np.take_along_axis(values, last_idx[:, None, :], axis=1)[:, 0, :]
    return np.where(finite.any(axis=1), last, 0.0)


def _slopes(series: np.ndarray) -> np.ndarray:
    """Least-squares slope along axis 1 of (N, H, M): the trend, in metric units per step."""
    h = series.shape[1]
    t = np.arange(h, dtype=np.float64) - (h - 1) / 2
    return np.einsum("h,nhm->nm", t, series) / float((t * t).sum())


def _padded_context(windows: list) -> np.ndarray:
    """(N, 288, M) float64 with the most recent buckets right-aligned and NaN elsewhere."""
    out = np.full((len(windows), 288, len(TARGETS)), np.nan)
    for i, window in enumerate(windows):
        values = window.values[-288:]
        out[i, 288 - len(values) :] = values
    return out


def _round_list(a: np.ndarray) -> list[float]:
    return np.round(a.astype(np.float64), 3).tolist()


def _score_batch(windows: list, quantiles: np.ndarray, thresholds: dict) -> list[dict]:
    """Payload, summary, probabilities and alert candidates for N forecasts (N, H, M, K), vectorised
    across servers so scoring 1,000 servers costs about as much as a few dozen numpy calls."""
    step_minutes = settings.TFT_STEP_MINUTES
    context = _padded_context(windows)
    warning, critical = rules.limits_batch(context, thresholds, TARGETS)
    current = _last_observed(context)
    p10, p50, p90 = (quantiles[..., _SERVED_INDEX[label]] for label in ("p10", "p50", "p90"))
    trend = _slopes(p50.astype(np.float64))
    probs = rules.incident_probabilities(quantiles, np.array(QUANTILES), critical)
    p30_metric, p8h_metric, p30, p8h = (probs[k] for k in ("metric_30m", "metric_8h", "prob_30m", "prob_8h"))
    peak_p50 = p50.max(axis=1)
    peak_p90 = p90.max(axis=1)
    peak_step = p50.argmax(axis=1) + 1
    # Only forecasts that reach a limit somewhere need the per-metric alert rules.
    flagged = ((peak_p50 >= warning) | (peak_p90 >= critical)).any(axis=1)
    out = []
    for i, window in enumerate(windows):
        payload, summary, candidates = {}, {}, []
        for m, metric in enumerate(TARGETS):
            payload[metric] = {
                "p10": _round_list(p10[i, :, m]),
                "p50": _round_list(p50[i, :, m]),
                "p90": _round_list(p90[i, :, m]),
                "current": round(float(current[i, m]), 3),
                "trend": round(float(trend[i, m]), 4),
            }
            summary[metric] = {
                "current": round(float(current[i, m]), 3),
                "peak_p50": round(float(peak_p50[i, m]), 3),
                "peak_p90": round(float(peak_p90[i, m]), 3),
                "peak_step": int(peak_step[i, m]),
                "warning": round(float(warning[i, m]), 3),
                "critical": round(float(critical[i, m]), 3),
                "prob_30m": round(float(p30_metric[i, m]), 4),
                "prob_8h": round(float(p8h_metric[i, m]), 4),
            }
            if flagged[i]:
                limits = rules.Limits(float(warning[i, m]), float(critical[i, m]))
                candidates += rules.alert_candidates(
                    window.server, metric, p50[i, :, m], p90[i, :, m], limits, step_minutes
                )
        out.append(
            {
                "payload": json.dumps(payload, separators=(",", ":")),
                "summary": summary,
                "candidates": candidates,
                "prob_30m": round(float(p30[i]), 4),
                "prob_8h": round(float(p8h[i]), 4),
            }
        )
    return out


def prediction_chunk_execute(*, run_id: int, server_ids: list[int]) -> bool:
    """Forecast one chunk of servers for a run and store it; finalise the run if this was the last
    chunk. Returns True when the run was finalised. Safe to run twice: a chunk already stored is
    skipped (unique run+server), and nothing happens for a run that is no longer running."""
    if not PredictionRun.objects.filter(pk=run_id, status=PredictionRun.Status.RUNNING).exists():
        logger.info("chunk skipped: run is no longer running", extra={"run_id": run_id})
        return False
    timings: dict[str, float] = {}
    started = time.perf_counter()
    windows = server_windows(server_ids=server_ids)
    timings["read"] = time.perf_counter() - started

    forecaster, version, model_reason = (None, None, "") if not windows else _model_for_run()
    quantiles: dict[int, np.ndarray] = {}
    reasons: dict[int, str] = {}
    if forecaster is not None:
        try:
            batch = forecaster.predict_array([sw.window for sw in windows])
        except Exception as exc:  # a model bug must degrade to the heuristic, loudly, not stop the run
            from forecasting.inference import log_once

            model_reason = f"model_error: {type(exc).__name__}: {exc}"[:200]
            log_once(model_reason, "TFT prediction failed, forecasting with the heuristic")
            logger.exception("TFT prediction failed")
        else:
            timings.update(getattr(forecaster, "last_timings", {}) or {})
            for sw, q in zip(windows, batch, strict=True):
                if np.isfinite(q).all():
                    quantiles[sw.server_id] = q
                else:
                    reasons[sw.server_id] = "model_output_invalid: non-finite forecast"
    started = time.perf_counter()
    for sw in windows:
        if sw.server_id not in quantiles:
            reasons.setdefault(sw.server_id, model_reason or "model_unavailable")
            quantiles[sw.server_id] = heuristic_quantiles(sw.window)
    timings["heuristic"] = time.perf_counter() - started

    started = time.perf_counter()
    thresholds = alert_thresholds()
    stacked = np.stack([quantiles[sw.server_id] for sw in windows]) if windows else np.zeros((0, 96, 4, 7))
    scored = dict(zip([sw.server_id for sw in windows], _score_batch([sw.window for sw in windows], stacked, thresholds), strict=True))
    timings["alerts"] = time.perf_counter() - started

    started = time.perf_counter()
    rows = []
    for sw in windows:
        s = scored[sw.server_id]
        last_state = int(sw.window.states[-1])
        rows.append(
            ServerForecast(
                run_id=run_id,
                server_id=sw.server_id,
                method=ServerForecast.Method.HEURISTIC if sw.server_id in reasons else ServerForecast.Method.TFT,
                fallback_reason=reasons.get(sw.server_id, ""),
                origin=sw.window.end,
                encoder_steps=min(len(sw.window.values), 288),
                prob_30m=s["prob_30m"],
                prob_8h=s["prob_8h"],
                state=STATES[last_state] if last_state >= 0 else "",
                payload=s["payload"],
                summary=s["summary"],
                alert_candidates=s["candidates"],
            )
        )
    reason_counts = Counter(reason.split(":")[0] for reason in reasons.values())
    with transaction.atomic():
        run = PredictionRun.objects.select_for_update().get(pk=run_id)
        if run.status != PredictionRun.Status.RUNNING:
            logger.warning("chunk discarded: run ended meanwhile", extra={"run_id": run_id, "status": run.status})
            return False
        stored = ServerForecast.objects.filter(run_id=run_id, server_id__in=server_ids).exists()
        if stored:  # a redelivered chunk: its results are already in
            return False
        ServerForecast.objects.bulk_create(rows)
        timings["write"] = time.perf_counter() - started
        durations = dict(run.durations)
        for phase, seconds in timings.items():
            durations[phase] = round(durations.get(phase, 0.0) + seconds, 4)
        fallback_reasons = dict(run.fallback_reasons)
        for reason, n in reason_counts.items():
            fallback_reasons[reason] = fallback_reasons.get(reason, 0) + n
        run.durations = durations
        run.fallback_reasons = fallback_reasons
        run.tft_count += len(windows) - len(reasons)
        run.fallback_count += len(reasons)
        run.chunks_done += 1
        run.heartbeat_at = _now()
        if version is not None and not run.model_name:
            run.model_version = version
            run.model_name = version.name if forecaster is not None else f"{version.name} (unavailable)"
            run.device = forecaster.device if forecaster is not None else "cpu"
        run.save()
        if run.chunks_done >= run.chunks_total:
            prediction_run_finalize(run=run)
            return True
    return False


# --- Finalise -------------------------------------------------------------------------------------


def prediction_run_finalize(*, run: PredictionRun) -> None:
    """Alert lifecycle and fleet environment for a run whose chunks are all stored; marks it
    complete. Runs inside the caller's transaction, with the run row locked."""
    now = _now()
    started = time.perf_counter()
    forecasts = list(
        ServerForecast.objects.filter(run=run).values_list("server_id", "alert_candidates", "prob_30m", "prob_8h")
    )
    alerts_apply_run(run=run, forecasts=forecasts, now=now)
    run.environment = rules.fleet_environment([(p30, p8h) for _, _, p30, p8h in forecasts])
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


# --- Whole runs -----------------------------------------------------------------------------------


def fleet_predict(*, now: datetime | None = None, chunk_size: int | None = None) -> PredictionRun | None:
    """One whole fleet run in this process (predict_now, tests, and the single-chunk task)."""
    run, chunks = prediction_run_start(now=now, chunk_size=chunk_size)
    if run is None:
        return None
    try:
        for server_ids in chunks:
            prediction_chunk_execute(run_id=run.pk, server_ids=server_ids)
    except Exception as exc:
        prediction_run_fail(run_id=run.pk, error=f"{type(exc).__name__}: {exc}")
        raise
    run.refresh_from_db()
    return run


def prediction_runs_prune(*, keep: int | None = None) -> int:
    """Delete all but the newest `keep` finished runs (their forecasts go with them)."""
    keep = keep or settings.TFT_KEEP_RUNS
    finished = PredictionRun.objects.exclude(status=PredictionRun.Status.RUNNING).order_by("-started_at")
    old_ids = list(finished.values_list("pk", flat=True)[keep:])
    if not old_ids:
        return 0
    PredictionRun.objects.filter(pk__in=old_ids).delete()
    return len(old_ids)
