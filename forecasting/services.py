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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction

from forecasting import alerts as rules
from forecasting.alert_services import OPEN_STATES, alert_acknowledge, alert_resolve, alerts_apply_run  # noqa: F401
from forecasting.calibration_services import served_log_factors
from forecasting.engine.calibration import apply_calibration, served_factors
from forecasting.engine.explanation import heuristic_explanation, steady_explanation
from forecasting.engine.folders import read_probability_calibration
from forecasting.engine.heuristic import heuristic_quantiles
from forecasting.engine.network import Forecaster
from forecasting.engine.probability import fleet_environment, incident_probabilities, limits_batch, recalibrated
from forecasting.engine.spec import (
    CONTEXT,
    HORIZON,
    PERCENT_METRICS,
    QUANTILES,
    SERVED_QUANTILES,
    STATES,
    STEP_MINUTES,
    TARGETS,
)
from forecasting.inference import ModelUnavailableError, get_forecaster, log_once
from forecasting.models import ModelVersion, PredictionRun, ServerForecast
from forecasting.registry import model_versions_sync
from forecasting.scoring_services import forecasts_archive
from forecasting.selectors import (
    ServerWindow,
    active_model_version,
    alert_thresholds,
    forecast_is_stale,
    ready_server_ids,
    server_windows,
)

logger = logging.getLogger(__name__)

RISING_SHARE = 0.5  # see _Scores.rising
_SERVED_INDEX = {label: QUANTILES.index(q) for label, q in SERVED_QUANTILES.items()}
_UPPER_BOUND = np.array([100.0 if m in PERCENT_METRICS else np.inf for m in TARGETS])
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


# --- One chunk: forecast → score → store ------------------------------------------------------------


@dataclass
class ChunkForecast:
    """The forecast step's result: quantiles (N, H, M, K) for every window, in window order."""

    windows: list[ServerWindow]
    quantiles: np.ndarray
    reasons: dict[int, str]  # server id → why it fell back to the heuristic
    version: ModelVersion | None
    forecaster: Forecaster | None
    timings: dict[str, float] = field(default_factory=dict)
    # (N, M, bands, 2) interval-calibration log factors applied to each TFT forecast (0 = none).
    log_factors: np.ndarray | None = None
    # server id → the TFT's explanation, from the same forward pass (empty when not asked for)
    explained: dict[int, dict] = field(default_factory=dict)

    def method(self, server_id: int) -> str:
        return ServerForecast.Method.HEURISTIC if server_id in self.reasons else ServerForecast.Method.TFT


@dataclass
class ScoredForecast:
    """The score step's result for one server: what is stored and served."""

    payload: str  # the served JSON
    summary: dict
    candidates: list[dict]
    prob_30m: float
    prob_8h: float
    explain: bool = False  # rising toward a limit or calling for an alert: worth the explanation pass


def _model_for_run() -> tuple[Forecaster | None, ModelVersion | None, str]:
    """(forecaster or None, version or None, fallback reason or '')."""
    version = active_model_version()
    if version is None:
        # A fresh machine, or folders added by hand: registering is a few small file reads.
        model_versions_sync()
        version = active_model_version()
    if version is None:
        return None, None, "no_model: no valid model folder is registered (train_tft, then register_models)"
    try:
        return get_forecaster(version.path), version, ""
    except ModelUnavailableError as exc:
        log_once(str(exc), "model unavailable, forecasting with the heuristic", model_version=version.name)
        return None, version, str(exc)[:200]


def _model_quantiles(
    forecaster: Forecaster, windows: list[ServerWindow], explain: bool = False
) -> tuple[dict[int, np.ndarray], dict, str, dict[int, dict]]:
    """The TFT's quantiles per server id, the servers whose output was unusable, the model's
    failure reason ('' when it ran) and (explain) each server's explanation from the same pass."""
    try:
        if explain:
            batch, explained = forecaster.predict_explained([sw.window for sw in windows])
        else:
            batch, explained = forecaster.predict_array([sw.window for sw in windows]), []
    except Exception as exc:  # a model bug must degrade to the heuristic, loudly, not stop the run
        reason = f"model_error: {type(exc).__name__}: {exc}"[:200]
        log_once(reason, "TFT prediction failed, forecasting with the heuristic")
        logger.exception("TFT prediction failed")
        return {}, {}, reason, {}
    quantiles, invalid = {}, {}
    explanations = {sw.server_id: e for sw, e in zip(windows, explained, strict=False)}
    for sw, q in zip(windows, batch, strict=True):
        if np.isfinite(q).all():
            quantiles[sw.server_id] = q
        else:
            invalid[sw.server_id] = "model_output_invalid: non-finite forecast"
    return quantiles, invalid, "", explanations


def _forecast_chunk(windows: list[ServerWindow], explain: bool = False) -> ChunkForecast:
    """The TFT where it can, the heuristic for every server it cannot forecast; with explain, the
    TFT's explanations come from the same forward pass."""
    forecaster, version, model_reason = (None, None, "") if not windows else _model_for_run()
    quantiles: dict[int, np.ndarray] = {}
    reasons: dict[int, str] = {}
    timings: dict[str, float] = {}
    explained: dict[int, dict] = {}
    if forecaster is not None:
        started = time.perf_counter()
        quantiles, reasons, model_reason, explained = _model_quantiles(forecaster, windows, explain)
        timings["forecast"] = time.perf_counter() - started
    started = time.perf_counter()
    for sw in windows:
        if sw.server_id not in quantiles:
            reasons.setdefault(sw.server_id, model_reason or "model_unavailable")
            quantiles[sw.server_id] = heuristic_quantiles(sw.window)
    timings["heuristic"] = time.perf_counter() - started
    log_factors = _calibrate(windows, quantiles, reasons)
    empty = np.zeros((0, HORIZON, len(TARGETS), len(QUANTILES)))
    stacked = np.stack([quantiles[sw.server_id] for sw in windows]) if windows else empty
    return ChunkForecast(windows, stacked, reasons, version, forecaster, timings, log_factors, explained)


def _calibrate(windows: list[ServerWindow], quantiles: dict[int, np.ndarray], reasons: dict) -> np.ndarray:
    """Each TFT forecast's quantiles scaled in place by its server's interval calibration (its
    profile's prior if it has no state yet); the heuristic's are served as they are. Returns the
    log factors applied, (N, M, bands, 2), so the forecast records them."""
    factors = served_log_factors(server_ids=[sw.server_id for sw in windows]) if windows else np.zeros((0,))
    for i, sw in enumerate(windows):
        if sw.server_id in reasons:
            factors[i] = 0.0
            continue
        q = np.moveaxis(quantiles[sw.server_id], 1, 0)  # (M, H, K): one calibration state per metric
        calibrated = apply_calibration(q, QUANTILES, factors[i], lower=0.0, upper=_UPPER_BOUND[:, None])
        quantiles[sw.server_id] = np.moveaxis(calibrated, 0, 1).astype(np.float32)
    return factors


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
    """(N, CONTEXT, M) float64 with the most recent buckets right-aligned and NaN elsewhere."""
    out = np.full((len(windows), CONTEXT, len(TARGETS)), np.nan)
    for i, window in enumerate(windows):
        values = window.values[-CONTEXT:]
        out[i, CONTEXT - len(values) :] = values
    return out


def _round_list(a: np.ndarray) -> list[float]:
    return np.round(a.astype(np.float64), 3).tolist()


@dataclass
class _Scores:
    """Per-server, per-metric arrays of a chunk's forecasts, computed once for all servers."""

    p10: np.ndarray
    p50: np.ndarray
    p90: np.ndarray
    current: np.ndarray
    trend: np.ndarray
    warning: np.ndarray
    critical: np.ndarray
    probs: dict

    @classmethod
    def of(cls, windows: list, quantiles: np.ndarray, thresholds: dict) -> _Scores:
        context = _padded_context(windows)
        warning, critical = limits_batch(context, thresholds, TARGETS)
        p10, p50, p90 = (quantiles[..., _SERVED_INDEX[label]] for label in ("p10", "p50", "p90"))
        probs = incident_probabilities(quantiles, np.array(QUANTILES), critical)
        trend = _slopes(p50.astype(np.float64))
        return cls(p10, p50, p90, _last_observed(context), trend, warning, critical, probs)

    def metric_payload(self, i: int, m: int) -> dict:
        return {
            "p10": _round_list(self.p10[i, :, m]),
            "p50": _round_list(self.p50[i, :, m]),
            "p90": _round_list(self.p90[i, :, m]),
            "current": round(float(self.current[i, m]), 3),
            "trend": round(float(self.trend[i, m]), 4),
        }

    def metric_summary(self, i: int, m: int) -> dict:
        return {
            "current": round(float(self.current[i, m]), 3),
            "peak_p50": round(float(self.p50[i, :, m].max()), 3),
            "peak_p90": round(float(self.p90[i, :, m].max()), 3),
            "peak_step": int(self.p50[i, :, m].argmax()) + 1,
            "warning": round(float(self.warning[i, m]), 3),
            "critical": round(float(self.critical[i, m]), 3),
            "prob_30m": round(float(self.probs["metric_30m"][i, m]), 4),
            "prob_8h": round(float(self.probs["metric_8h"][i, m]), 4),
        }

    def flagged(self) -> np.ndarray:
        """Servers whose forecast reaches a limit somewhere: only they need the alert rules."""
        return ((self.p50.max(axis=1) >= self.warning) | (self.p90.max(axis=1) >= self.critical)).any(axis=1)

    def rising(self) -> np.ndarray:
        """Servers whose median forecast closes at least half the gap from the current value to the
        warning limit: the forecasts an operator asks "why?" about, before any alert. (The p90 did so
        for 97 % of a simulated fleet: its spread alone reaches halfway.)"""
        gap = self.warning - self.current
        climb = self.p50.max(axis=1) - self.current
        return ((gap > 0) & (climb >= RISING_SHARE * gap)).any(axis=1)

    def candidates(self, i: int, server: str) -> list[dict]:
        out = []
        for m, metric in enumerate(TARGETS):
            limits = rules.Limits(float(self.warning[i, m]), float(self.critical[i, m]))
            out += rules.alert_candidates(server, metric, self.p50[i, :, m], self.p90[i, :, m], limits, STEP_MINUTES)
        return out


def _score_chunk(
    windows: list, quantiles: np.ndarray, thresholds: dict, log_factors: np.ndarray | None = None
) -> list[ScoredForecast]:
    """Payload, summary, probabilities and alert candidates for N forecasts (N, H, M, K), vectorised
    across servers so scoring 1,000 servers costs about as much as a few dozen numpy calls."""
    scores = _Scores.of(windows, quantiles, thresholds)
    flagged = scores.flagged()
    explain = flagged | scores.rising()
    out = []
    for i, window in enumerate(windows):
        payload = {metric: scores.metric_payload(i, m) for m, metric in enumerate(TARGETS)}
        for m, metric in enumerate(TARGETS):
            payload[metric]["calibration"] = served_factors(None if log_factors is None else log_factors[i, m])
        out.append(
            ScoredForecast(
                payload=json.dumps(payload, separators=(",", ":")),
                summary={metric: scores.metric_summary(i, m) for m, metric in enumerate(TARGETS)},
                candidates=scores.candidates(i, window.server) if flagged[i] else [],
                prob_30m=round(float(scores.probs["prob_30m"][i]), 4),
                prob_8h=round(float(scores.probs["prob_8h"][i]), 4),
                explain=bool(explain[i]),
            )
        )
    return out


def _explain_chunk(forecast: ChunkForecast, scored: list[ScoredForecast], mode: str) -> list[dict]:
    """Each window's stored explanation: the TFT's own (from the forecast pass) for the forecasts
    that rise toward a limit or call for an alert (all of them with mode "all", none with "off"),
    "heuristic: no model explanation" for fallbacks. Appends the drivers to those forecasts' alert
    messages."""
    out = []
    for sw, s in zip(forecast.windows, scored, strict=True):
        own = forecast.explained.get(sw.server_id)
        if sw.server_id in forecast.reasons:
            out.append(heuristic_explanation())
        elif own is not None and (mode == "all" or (mode == "needed" and s.explain)):
            out.append(own)
        else:
            out.append(steady_explanation())
    for e, s in zip(out, scored, strict=True):
        clause = e["text"] if (e["method"] == "heuristic" or "variables" in e) else ""
        for candidate in s.candidates:
            candidate["message"] = rules.with_drivers(candidate["message"], clause)
    return out


def _recalibrate_probabilities(forecast: ChunkForecast, scored: list[ScoredForecast]) -> None:
    """TFT servers' prob_30m / prob_8h through the model folder's fitted recalibration, when it has
    one (engine.probability: the raw bound is off; the backtest measures both)."""
    if forecast.forecaster is None or forecast.version is None:
        return
    windows = read_probability_calibration(forecast.version.path)
    if not windows:
        return
    for sw, s in zip(forecast.windows, scored, strict=True):
        if sw.server_id not in forecast.reasons:
            s.prob_30m = round(float(recalibrated(s.prob_30m, windows.get("30m"))), 4)
            s.prob_8h = round(float(recalibrated(s.prob_8h, windows.get("8h"))), 4)


def _forecast_rows(run_id: int, forecast: ChunkForecast, scored: list[ScoredForecast],
                   explanations: list[dict]) -> list[ServerForecast]:
    rows = []
    for sw, s, explanation in zip(forecast.windows, scored, explanations, strict=True):
        last_state = int(sw.window.states[-1])
        rows.append(
            ServerForecast(
                run_id=run_id,
                server_id=sw.server_id,
                method=forecast.method(sw.server_id),
                fallback_reason=forecast.reasons.get(sw.server_id, ""),
                origin=sw.window.end,
                encoder_steps=min(len(sw.window.values), CONTEXT),
                prob_30m=s.prob_30m,
                prob_8h=s.prob_8h,
                state=STATES[last_state] if last_state >= 0 else "",
                payload=s.payload,
                summary=s.summary,
                alert_candidates=s.candidates,
                explanation=explanation,
            )
        )
    return rows


def _add_counts(totals: dict, counts: dict, digits: int | None = None) -> dict:
    out = dict(totals)
    for key, value in counts.items():
        out[key] = out.get(key, 0) + value
        if digits is not None:
            out[key] = round(out[key], digits)
    return out


def _chunk_into_run(run: PredictionRun, forecast: ChunkForecast, timings: dict[str, float]) -> None:
    """Add a stored chunk's counts, reasons and timings to its (locked) run."""
    reasons = Counter(reason.split(":")[0] for reason in forecast.reasons.values())
    run.durations = _add_counts(run.durations, timings, digits=4)
    run.fallback_reasons = _add_counts(run.fallback_reasons, reasons)
    run.tft_count += len(forecast.windows) - len(forecast.reasons)
    run.fallback_count += len(forecast.reasons)
    run.chunks_done += 1
    run.heartbeat_at = _now()
    version, forecaster = forecast.version, forecast.forecaster
    if version is not None and not run.model_name:
        run.model_version = version
        run.model_name = version.name if forecaster is not None else f"{version.name} (unavailable)"
        run.device = forecaster.device if forecaster is not None else "cpu"
    run.save()


def _store_chunk(*, run_id: int, server_ids: list[int], rows: list, forecast: ChunkForecast, timings: dict) -> bool:
    """Store the chunk's forecasts unless the run ended or the chunk is already in; finalise the run
    after its last chunk. True when the run was finalised."""
    started = time.perf_counter()
    with transaction.atomic():
        run = PredictionRun.objects.select_for_update().get(pk=run_id)
        if run.status != PredictionRun.Status.RUNNING:
            logger.warning("chunk discarded: run ended meanwhile", extra={"run_id": run_id, "status": run.status})
            return False
        if ServerForecast.objects.filter(run_id=run_id, server_id__in=server_ids).exists():
            return False  # a redelivered chunk: its results are already in
        ServerForecast.objects.bulk_create(rows)
        # Live scoring keeps the first forecast of each new origin; runs are pruned long before 8 h.
        forecasts_archive(windows=forecast.windows, quantiles=forecast.quantiles, methods=[r.method for r in rows],
                          model_name=forecast.version.name if forecast.forecaster is not None else "")
        _chunk_into_run(run, forecast, {**timings, "write": time.perf_counter() - started})
        if run.chunks_done >= run.chunks_total:
            prediction_run_finalize(run=run)
            return True
    return False


def prediction_chunk_execute(*, run_id: int, server_ids: list[int], explain: str = "needed") -> bool:
    """Forecast one chunk of servers for a run and store it; finalise the run if this was the last
    chunk. Returns True when the run was finalised. Safe to run twice: a chunk already stored is
    skipped (unique run+server), and nothing happens for a run that is no longer running."""
    if not PredictionRun.objects.filter(pk=run_id, status=PredictionRun.Status.RUNNING).exists():
        logger.info("chunk skipped: run is no longer running", extra={"run_id": run_id})
        return False
    started = time.perf_counter()
    windows = server_windows(server_ids=server_ids)
    timings = {"read": time.perf_counter() - started}
    forecast = _forecast_chunk(windows, explain=explain != "off")
    started = time.perf_counter()
    scored = _score_chunk([sw.window for sw in windows], forecast.quantiles, alert_thresholds(), forecast.log_factors)
    _recalibrate_probabilities(forecast, scored)
    timings.update(forecast.timings, alerts=time.perf_counter() - started)
    started = time.perf_counter()
    explanations = _explain_chunk(forecast, scored, explain)
    timings["explain"] = time.perf_counter() - started
    rows = _forecast_rows(run_id, forecast, scored, explanations)
    return _store_chunk(run_id=run_id, server_ids=server_ids, rows=rows, forecast=forecast, timings=timings)


# --- Finalise -------------------------------------------------------------------------------------


def prediction_run_finalize(*, run: PredictionRun) -> None:
    """Alert lifecycle and fleet environment for a run whose chunks are all stored; marks it
    complete. Runs inside the caller's transaction, with the run row locked."""
    now = _now()
    started = time.perf_counter()
    rows = ServerForecast.objects.filter(run=run).values_list("server_id", "alert_candidates", "prob_30m", "prob_8h",
                                                               "origin")
    forecasts, stale = [], set()
    for server_id, candidates, p30, p8h, origin in rows:
        forecasts.append((server_id, candidates, p30, p8h))
        if forecast_is_stale(run, origin):
            stale.add(server_id)
    # A stale server's forecast continues old data: it opens, refreshes and resolves nothing. Its open
    # alerts stay as they are (not resolved: silence is no evidence the problem went away, and a
    # resolve pushed for a server that stopped reporting would hide the very moment it may be down).
    alerts_apply_run(run=run, forecasts=[f for f in forecasts if f[0] not in stale], now=now, held_server_ids=stale)
    run.environment = fleet_environment([(p30, p8h) for _, _, p30, p8h in forecasts])
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


def fleet_predict(
    *, now: datetime | None = None, chunk_size: int | None = None, explain: str = "needed"
) -> PredictionRun | None:
    """One whole fleet run in this process (predict_now, tests, and the single-chunk task).
    explain: "needed" (forecasts rising toward a limit or calling for an alert), "all" or "off"
    (the benchmark compares them)."""
    run, chunks = prediction_run_start(now=now, chunk_size=chunk_size)
    if run is None:
        return None
    try:
        for server_ids in chunks:
            prediction_chunk_execute(run_id=run.pk, server_ids=server_ids, explain=explain)
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
