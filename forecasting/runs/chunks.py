"""One chunk of a prediction run: read the servers' windows, forecast (the TFT where it can, the
heuristic where it cannot), serve, explain and store; the last chunk finalises the run.

This is the module that loads torch (through `forecasting.runs.inference`): only the `gpu` queue's
task, `predict_now`, the benches and the tests import it. Starting and finalising a run
(`forecasting.runs.services`) need no torch, so beat and the default-queue worker stay without it.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction

from forecasting.alerts.selectors import alert_thresholds, alert_trend, early_warning_steps
from forecasting.engine import alert_rules as rules
from forecasting.engine.blend import blend_weights, default_blend, served_blend
from forecasting.engine.calibration import apply_calibration
from forecasting.engine.event_model import history_share, serve_event_probabilities
from forecasting.engine.explanation import heuristic_explanation, steady_explanation
from forecasting.engine.folders import read_blend, read_event_model, read_probability_calibration
from forecasting.engine.heuristic import heuristic_quantiles
from forecasting.engine.network import Forecaster
from forecasting.engine.probability import recalibrated
from forecasting.engine.serving import ServedForecast, padded_context, peak_ratios, serve_forecasts
from forecasting.engine.spec import (
    BAND_NAMES,
    CONTEXT,
    HORIZON,
    PERCENT_METRICS,
    QUANTILES,
    SERVED_QUANTILES,
    STATES,
    STEP_MINUTES,
    TARGETS,
)
from forecasting.models import ModelVersion, PredictionRun, ServerForecast
from forecasting.registry import active_model_version, model_versions_sync
from forecasting.runs.inference import ModelUnavailableError, get_forecaster, log_once
from forecasting.runs.services import prediction_run_fail, prediction_run_finalize, prediction_run_start
from forecasting.scoring.calibration import served_log_factors
from forecasting.scoring.probabilities import live_probabilities_apply, probability_outcomes_archive
from forecasting.scoring.selectors import blend_evidence, incident_history_inputs, recent_incident_probabilities
from forecasting.scoring.services import forecasts_archive
from forecasting.windows import ServerWindow, server_windows
from tftsite.bulk import objects_insert

logger = logging.getLogger(__name__)

_UPPER_BOUND = np.array([100.0 if m in PERCENT_METRICS else np.inf for m in TARGETS])


def _now() -> datetime:
    return datetime.now(UTC)


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
    # each window's TFT explanation from the same forward pass, in window order, built when read
    # (engine.explanation.Explanations); empty when not asked for or when the model failed
    explained: Sequence[dict] = ()
    # (N, M, bands) the model's blend weight per band (engine.blend; 1 = the model alone, the heuristic)
    blend_weights: np.ndarray | None = None
    # (N, H, M, 3) the TFT's own p10/p50/p90 before the blend and the calibration (NaN for the
    # heuristic): archived beside the served forecast and scored live beside it (issue 24).
    raw_quantiles: np.ndarray | None = None

    def method(self, server_id: int) -> str:
        return ServerForecast.Method.HEURISTIC if server_id in self.reasons else ServerForecast.Method.TFT


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
) -> tuple[dict[int, np.ndarray], dict, str, Sequence[dict]]:
    """The TFT's quantiles per server id, the servers whose output was unusable, the model's
    failure reason ('' when it ran) and (explain) each window's explanation from the same pass."""
    try:
        if explain:
            batch, explained = forecaster.predict_explained([sw.window for sw in windows])
        else:
            batch, explained = forecaster.predict_array([sw.window for sw in windows]), ()
    except Exception as exc:  # a model bug must degrade to the heuristic, loudly, not stop the run
        reason = f"model_error: {type(exc).__name__}: {exc}"[:200]
        log_once(reason, "TFT prediction failed, forecasting with the heuristic")
        logger.exception("TFT prediction failed")
        return {}, {}, reason, ()
    quantiles, invalid = {}, {}
    for sw, q in zip(windows, batch, strict=True):
        if np.isfinite(q).all():
            quantiles[sw.server_id] = q
        else:
            invalid[sw.server_id] = "model_output_invalid: non-finite forecast"
    return quantiles, invalid, "", explained


def _forecast_chunk(windows: list[ServerWindow], explain: bool = False) -> ChunkForecast:
    """The TFT where it can, the heuristic for every server it cannot forecast; with explain, the
    TFT's explanations come from the same forward pass."""
    forecaster, version, model_reason = (None, None, "") if not windows else _model_for_run()
    quantiles: dict[int, np.ndarray] = {}
    reasons: dict[int, str] = {}
    timings: dict[str, float] = {}
    explained: Sequence[dict] = ()
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
    raw = _raw_quantiles(windows, quantiles, reasons)
    started = time.perf_counter()
    # The backtest's order (engine.blend.ServedSeries): blended with persistence, then calibrated.
    weights = _blend(windows, quantiles, reasons, version if forecaster is not None else None)
    timings["blend"] = time.perf_counter() - started
    log_factors = _calibrate(windows, quantiles, reasons)
    empty = np.zeros((0, HORIZON, len(TARGETS), len(QUANTILES)))
    stacked = np.stack([quantiles[sw.server_id] for sw in windows]) if windows else empty
    return ChunkForecast(windows, stacked, reasons, version, forecaster, timings, log_factors, explained, weights,
                         raw)


def _rule_quantiles(forecast: ChunkForecast) -> np.ndarray | None:
    """(N, H, M, 2) the p50 / p90 the alert rules read instead of the served ones: the TFT's own
    (TFT_ALERT_FORECAST_SOURCE=model; NaN rows, the heuristic's, read the served forecast), else None."""
    if settings.TFT_ALERT_FORECAST_SOURCE != "model" or forecast.raw_quantiles is None:
        return None
    return forecast.raw_quantiles[..., 1:3]


_RAW_LEVELS = [QUANTILES.index(SERVED_QUANTILES[label]) for label in ("p10", "p50", "p90")]


def _raw_quantiles(windows: list[ServerWindow], quantiles: dict[int, np.ndarray], reasons: dict) -> np.ndarray:
    """(N, H, M, 3) the model's p10/p50/p90 of each TFT forecast as the network gave them, taken
    before `_blend` and `_calibrate` replace them in place; NaN rows for the heuristic."""
    out = np.full((len(windows), HORIZON, len(TARGETS), len(_RAW_LEVELS)), np.nan, dtype=np.float32)
    tft = [i for i, sw in enumerate(windows) if sw.server_id not in reasons]
    if tft:
        out[tft] = np.stack([quantiles[windows[i].server_id][..., _RAW_LEVELS] for i in tft])
    return out


def _blend(windows: list[ServerWindow], quantiles: dict[int, np.ndarray], reasons: dict,
           version: ModelVersion | None) -> np.ndarray:
    """Each TFT forecast's quantiles blended in place per band with the persistence of its own
    context (engine.blend.served_blend, as the backtest serves): the model folder's blend.json
    weights (the model alone without one, as the backtest's default_blend) moved per server ×
    metric × band by the live scorer's sums (one query). The heuristic's are served as they are.
    Returns the model's weights (N, M, bands) used, 1 for the heuristic, so the forecast records them."""
    weights = np.ones((len(windows), len(TARGETS), len(BAND_NAMES)))
    tft = [i for i, sw in enumerate(windows) if sw.server_id not in reasons]
    if version is None or not tft:
        return weights
    blend = read_blend(Path(version.path)) or default_blend()
    # The evidence is this model version's own served scores (a switch starts from the folder's weights).
    sums = blend_evidence(server_ids=[windows[i].server_id for i in tft], model_name=version.name)  # (T, M, bands, 4)
    for m, metric in enumerate(TARGETS):
        weights[tft, m] = blend_weights(blend, metric, sums[:, m])
    model = np.stack([np.moveaxis(quantiles[windows[i].server_id], 1, 0) for i in tft])  # (T, M, H, K)
    context = np.moveaxis(padded_context([windows[i].window for i in tft]), 1, 2)  # (T, M, CONTEXT)
    # The worker's CPU threads (idle once the forward pass is done) share the persistence quantiles.
    workers = settings.TFT_TORCH_THREADS or os.cpu_count() or 1
    mixed = served_blend(model, context, QUANTILES, weights[tft], lower=0.0, upper=_UPPER_BOUND, workers=workers)
    for j, i in enumerate(tft):
        quantiles[windows[i].server_id] = np.moveaxis(mixed[j], 0, 1)  # float64 into the calibration
    return weights


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


def _explain_chunk(forecast: ChunkForecast, scored: list[ServedForecast], mode: str) -> list[dict]:
    """Each window's stored explanation: the TFT's own (from the forecast pass) for the forecasts
    that rise toward a limit or call for an alert (all of them with mode "all", none with "off"),
    "heuristic: no model explanation" for fallbacks. Appends the drivers to those forecasts' alert
    messages."""
    out = []
    for i, (sw, s) in enumerate(zip(forecast.windows, scored, strict=True)):
        if sw.server_id in forecast.reasons:
            out.append(heuristic_explanation())
        elif forecast.explained and (mode == "all" or (mode == "needed" and s.explain)):
            out.append(forecast.explained[i])  # built here: only the explanations stored
        else:
            out.append(steady_explanation())
    for e, s in zip(out, scored, strict=True):
        clause = e["text"] if (e["method"] == "heuristic" or "variables" in e) else ""
        for candidate in s.candidates:
            candidate["message"] = rules.with_drivers(candidate["message"], clause)
    return out


def _recalibrate_probabilities(forecast: ChunkForecast, scored: list[ServedForecast]) -> dict[str, np.ndarray] | None:
    """TFT servers' prob_30m / prob_8h through the model folder's fitted recalibration, when it has
    one (engine.probability: the raw bound is off; the backtest measures both). Returns the incident
    history inputs the folder's event model read (None without one)."""
    if forecast.forecaster is None or forecast.version is None:
        return None
    # Issue 22: a folder's event model (engine.event_model) serves prob_30m / prob_8h when it has one.
    model = read_event_model(forecast.version.path)
    if model is not None:
        critical = np.array([[s.summary[m]["critical"] for m in TARGETS] for s in scored]).reshape(-1, len(TARGETS))
        history = incident_history_inputs(server_ids=[sw.server_id for sw in forecast.windows])
        probs = serve_event_probabilities(model, windows=[sw.window for sw in forecast.windows],
                                          quantiles=forecast.quantiles, levels=QUANTILES, critical=critical,
                                          history=history)  # fmt: skip
        for i, (sw, s) in enumerate(zip(forecast.windows, scored, strict=True)):
            if sw.server_id not in forecast.reasons:
                s.prob_30m, s.prob_8h = round(float(probs["30m"][i]), 4), round(float(probs["8h"][i]), 4)
        return history
    windows = read_probability_calibration(forecast.version.path)
    if not windows:
        return None
    for sw, s in zip(forecast.windows, scored, strict=True):
        if sw.server_id not in forecast.reasons:
            s.prob_30m = round(float(recalibrated(s.prob_30m, windows.get("30m"))), 4)
            s.prob_8h = round(float(recalibrated(s.prob_8h, windows.get("8h"))), 4)
    return None


def _incident_candidates(forecast: ChunkForecast, scored: list[ServedForecast], priors: dict[str, np.ndarray],
                         history: dict[str, np.ndarray] | None) -> None:  # fmt: skip
    """With TFT_ALERT_INCIDENT_PROB, add each TFT server's incident_prob alert candidate
    (engine.alert_rules) to its forecast's: its P(8 h) — the event model's before the live map
    (`priors`, source "model") or the one served after it (source "served") — against max(tau, lift ×
    the server's own incident base rate, from the `history` the event model read)."""
    if not settings.TFT_ALERT_INCIDENT_PROB or history is None:
        return
    window, rise = rules.INCIDENT_WINDOW, settings.TFT_ALERT_INCIDENT_PROB_RISE
    served = settings.TFT_ALERT_INCIDENT_PROB_SOURCE == "served"
    p = np.array([s.prob_8h for s in scored], dtype=np.float64) if served else priors[window]
    share = history_share(history[window], window)
    recent = (recent_incident_probabilities(server_ids=[sw.server_id for sw in forecast.windows], window=window,
                                            served=served) if rise > 0 else None)  # fmt: skip
    for i, (sw, s) in enumerate(zip(forecast.windows, scored, strict=True)):
        if sw.server_id in forecast.reasons:
            continue
        candidate = rules.incident_candidate(
            server=sw.window.server,
            p=float(p[i]),
            share=float(share[i]),
            tau=settings.TFT_ALERT_INCIDENT_PROB_TAU,
            lift=settings.TFT_ALERT_INCIDENT_PROB_LIFT,
            horizon_steps=HORIZON,
            step_minutes=STEP_MINUTES,
            recent=None if recent is None else float(recent[i]),
            rise=rise,
        )
        if candidate is not None:
            s.candidates.append(candidate)


def _forecast_rows(run_id: int, forecast: ChunkForecast, scored: list[ServedForecast],
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
                peak_ratio=peak_ratios(s.summary)[2],
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


def _store_chunk(*, run_id: int, server_ids: list[int], rows: list, forecast: ChunkForecast, timings: dict,
                 scored: list[ServedForecast], priors: dict[str, np.ndarray]) -> bool:  # fmt: skip
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
        objects_insert(model=ServerForecast, objs=rows)
        # Live scoring keeps the first forecast of each new origin; runs are pruned long before 8 h.
        forecasts_archive(windows=forecast.windows, quantiles=forecast.quantiles, methods=[r.method for r in rows],
                          model_name=forecast.version.name if forecast.forecaster is not None else "",
                          raw_quantiles=forecast.raw_quantiles)
        probability_outcomes_archive(windows=forecast.windows, priors=priors, scored=scored)
        _chunk_into_run(run, forecast, {**timings, "write": time.perf_counter() - started})
        if run.chunks_done >= run.chunks_total:
            prediction_run_finalize(run=run)
            return True
    return False


def prediction_chunk_execute(*, run_id: int, server_ids: list[int], explain: str = "needed") -> bool:
    """Forecast one chunk of servers for a run and store it; finalise the run if this was the last
    chunk. Returns True when the run was finalised. Safe to run twice: a chunk already stored is
    skipped (unique run+server), and nothing happens for a run that is no longer running."""
    run_started = (PredictionRun.objects.filter(pk=run_id, status=PredictionRun.Status.RUNNING)
                   .values_list("started_at", flat=True).first())
    if run_started is None:
        logger.info("chunk skipped: run is no longer running", extra={"run_id": run_id})
        return False
    started = time.perf_counter()
    # The buckets closed when the run started: what made its servers due, and the same for every chunk.
    windows = server_windows(server_ids=server_ids, closed_at=run_started)
    timings = {"read": time.perf_counter() - started}
    forecast = _forecast_chunk(windows, explain=explain != "off")
    started = time.perf_counter()
    scored = serve_forecasts([sw.window for sw in windows], forecast.quantiles, alert_thresholds(), forecast.log_factors,
                             forecast.blend_weights, early_steps=early_warning_steps(),
                             rule_quantiles=_rule_quantiles(forecast), trend=alert_trend())  # fmt: skip
    history = _recalibrate_probabilities(forecast, scored)
    # Issue 22: the live map learnt from recorded outcomes, over the model's probabilities (its prior).
    priors = live_probabilities_apply(profiles=[sw.window.profile for sw in windows], scored=scored)
    _incident_candidates(forecast, scored, priors, history)
    timings.update(forecast.timings, alerts=time.perf_counter() - started)
    started = time.perf_counter()
    explanations = _explain_chunk(forecast, scored, explain)
    timings["explain"] = time.perf_counter() - started
    rows = _forecast_rows(run_id, forecast, scored, explanations)
    return _store_chunk(run_id=run_id, server_ids=server_ids, rows=rows, forecast=forecast, timings=timings,
                        scored=scored, priors=priors)


def fleet_predict(
    *, now: datetime | None = None, chunk_size: int | None = None, explain: str = "needed", due_only: bool = False
) -> PredictionRun | None:
    """One run in this process (predict_now, tests, benches): every ready server, or (due_only) those
    a scheduled run at `now` would take. explain: "needed" (forecasts rising toward a limit or calling
    for an alert), "all" or "off" (the benchmark compares them)."""
    run, chunks = prediction_run_start(now=now, chunk_size=chunk_size, due_only=due_only)
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


