"""Reads of live accuracy (forecasting.scoring.services writes ForecastScore): per server, per fleet,
per horizon band and per series, from summed score columns.

Every figure is of the forecasts as served (kind served), over every model version that served in the
window: what the servers' users got. Beside each band, "raw" is the TFT's own quantiles of the same
TFT forecasts (kind raw) on the same targets, before the blend with the last value and the interval
calibration: how much the blend and the calibration add (or cost)."""
from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
from django.conf import settings
from django.db.models import Avg, Count, F, Q, Sum
from django.db.models.functions import Round

from forecasting.engine.alert_rules import INCIDENT_WINDOW, RECENT_HOURS, RECENT_MIN_HOURS, incident_prob_threshold
from forecasting.engine.blend import SUMS as BLEND_SUMS
from forecasting.engine.event_model import history_inputs, history_keep, history_share
from forecasting.engine.incidents import WINDOWS
from forecasting.engine.live_calibration import histogram_scores
from forecasting.engine.scoring import SUMS as SCORE_SUMS
from forecasting.engine.scoring import accuracy
from forecasting.engine.spec import BAND_NAMES as SCORE_BANDS
from forecasting.engine.spec import METRICS, STEP_MINUTES, TARGETS
from forecasting.models import ForecastScore, IncidentHistory, ProbabilityCalibration, ProbabilityOutcome

ACCURACY_WINDOWS: dict[str, timedelta] = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}


def _score_sums(query, group: tuple[str, ...]) -> dict[tuple, dict[str, float]]:
    """Summed score columns per group: one grouped query."""
    rows = query.values(*group).annotate(**{f"total_{name}": Sum(name) for name in SCORE_SUMS}).order_by(*group)
    return {tuple(row[g] for g in group): {name: row[f"total_{name}"] or 0 for name in SCORE_SUMS} for row in rows}


def _added(sums: list[dict[str, float]]) -> dict[str, float]:
    return {name: sum(s.get(name, 0) for s in sums) for name in SCORE_SUMS}


_SERVED, _RAW = ForecastScore.Kind.SERVED.value, ForecastScore.Kind.RAW.value


def _window_scores(window: str, now: datetime | None, kind: str = _SERVED):
    return ForecastScore.objects.filter(hour__gte=(now or datetime.now(UTC)) - ACCURACY_WINDOWS[window], kind=kind)


def _both_kinds(window: str, now: datetime | None):
    return ForecastScore.objects.filter(hour__gte=(now or datetime.now(UTC)) - ACCURACY_WINDOWS[window])


def server_accuracy(*, server_name: str, now: datetime | None = None) -> dict:
    """{metric: {"24h": {mase, naive_mase, mase_vs_naive, pinball, coverage_80, n, bands: {band: {…,
    "raw": {…}}}}, "7d": …}} of one server's scored forecasts (by origin time), as served, and per
    band the raw TFT's beside them: one grouped query per window."""
    out: dict = {metric: {} for metric in METRICS}
    for window in ACCURACY_WINDOWS:
        sums = _score_sums(_both_kinds(window, now).filter(server__name=server_name), ("kind", "metric", "band"))
        for metric in METRICS:
            bands = {band: sums.get((_SERVED, metric, band), {}) for band in SCORE_BANDS}
            out[metric][window] = {
                **accuracy(_added(list(bands.values()))),
                "bands": {band: {**accuracy(s), "raw": accuracy(sums.get((_RAW, metric, band), {}))}
                          for band, s in bands.items()},
            }  # fmt: skip
    return out


def _ratio(sums: dict[str, float]) -> dict:
    scores = accuracy(sums)
    return {"mase_vs_naive": scores["mase_vs_naive"], "n": scores["n"]}


def fleet_accuracy(*, raw_model: str | None, now: datetime | None = None) -> dict:
    """{"24h": {…all metrics…, "metrics": {metric: {…}}, "bands": {band: {mase_vs_naive, n, "raw":
    {mase_vs_naive, n}}}, "raw_model_version": …}, "7d": …} over the whole fleet. The all-metric
    figures are ratios of sums (MASE, ×naive, coverage); pinball is per metric only, since it is in
    the metric's unit. Per band the served forecasts' ratio to naive (every version that served, as
    above) and the raw TFT's of model version ``raw_model`` only (the active one: a model's own
    accuracy, not a mix across a switch; none without a model), named by "raw_model_version". Two
    grouped queries per window."""
    out = {}
    for window in ACCURACY_WINDOWS:
        by_metric = _score_sums(_window_scores(window, now), ("metric",))
        metrics = {metric: accuracy(by_metric.get((metric,), {})) for metric in METRICS}
        overall = accuracy(_added(list(by_metric.values())))
        kinds = (Q(kind=_SERVED) | Q(kind=_RAW, model_name=raw_model)) if raw_model else Q(kind=_SERVED)
        by_band = _score_sums(_both_kinds(window, now).filter(kinds), ("kind", "band"))
        bands = {band: {**_ratio(by_band.get((_SERVED, band), {})), "raw": _ratio(by_band.get((_RAW, band), {}))}
                 for band in SCORE_BANDS}  # fmt: skip
        out[window] = {**overall, "pinball": None, "metrics": metrics, "bands": bands,
                       "raw_model_version": raw_model or None}  # fmt: skip
    return out


def scored_targets(*, window: str = "24h", now: datetime | None = None) -> dict[tuple[str, str], int]:
    """(kind, model version) → scored targets over ``window`` ('' for the heuristic): which model
    versions the accuracy figures describe, and how much of them each (/metrics). One grouped query."""
    rows = (_both_kinds(window, now).values("kind", "model_name").annotate(total=Sum("n")).order_by()
            .values_list("kind", "model_name", "total"))  # fmt: skip
    return {(kind, model): int(total or 0) for kind, model, total in rows}


def fleet_band_accuracy(*, window: str = "24h", now: datetime | None = None) -> dict:
    """The whole fleet over ``window``, all metrics: {…overall…, "bands": {band: {…, "raw": {…}}}} —
    one grouped query. Per band because the bands fill in at different speeds (a 2–8 h band is scored
    8 h after its forecast), so an overall figure alone reads only the short horizons for the first
    hours; "raw" is the TFT's own quantiles of the same forecasts (module docstring)."""
    sums = _score_sums(_both_kinds(window, now), ("kind", "band"))
    bands = {band: {**accuracy(sums.get((_SERVED, band), {})), "pinball": None,
                    "raw": {**accuracy(sums.get((_RAW, band), {})), "pinball": None}}
             for band in SCORE_BANDS}  # fmt: skip
    served = [s for (kind, _), s in sums.items() if kind == _SERVED]
    return {**accuracy(_added(served)), "pinball": None, "bands": bands}


BLEND_EVIDENCE_WINDOW = "24h"


def blend_evidence(*, server_ids: list[int], model_name: str, now: datetime | None = None) -> np.ndarray:
    """(N, TARGETS, bands, 4) the live scorer's sums (engine.blend.SUMS: n, abs_err, naive_abs_err,
    scale) per server × metric × band over the forecasts of the last 24 h, in ``server_ids`` order,
    of the served forecasts of model version ``model_name`` only. The weights move with how the
    served blend of *this* model did against the last value: not with the raw TFT (the blend is
    what the evidence is about, as in the backtest's OnlineBlend), nor the heuristic's (never
    blended), nor another model's: after a switch the new model starts from its folder's fitted
    weights and moves with its own scores, the old model's forecasts still being scored aside.
    the evidence that moves each server's blend weights (engine.blend.blend_weights), as the
    backtest's OnlineBlend gathers it from the targets known so far. The backtest keeps every
    target; 24 h of scored forecasts are already thousands of targets per band, past the ramp, and
    summing the 8 retained days instead costs 0.3 s per 512-server chunk (README "Performance").
    One grouped query."""
    out = np.zeros((len(server_ids), len(TARGETS), len(SCORE_BANDS), len(BLEND_SUMS)))
    if not server_ids:
        return out
    index = {server_id: i for i, server_id in enumerate(server_ids)}
    rows = (_window_scores(BLEND_EVIDENCE_WINDOW, now).filter(server_id__in=server_ids, model_name=model_name)
            .values("server_id", "metric", "band")
            .annotate(**{f"total_{name}": Sum(name) for name in BLEND_SUMS}).order_by()
            .values_list("server_id", "metric", "band", *(f"total_{name}" for name in BLEND_SUMS)))
    for server_id, metric, band, *sums in rows:
        if metric in TARGETS and band in SCORE_BANDS:
            out[index[server_id], TARGETS.index(metric), SCORE_BANDS.index(band)] = sums
    return out


def incident_history_inputs(*, server_ids: list[int], now: datetime | None = None) -> dict[str, np.ndarray]:
    """Window → (N, 2) the event model's history inputs of ``server_ids`` (in that order), from their
    IncidentHistory decayed to ``now``; a server without one has none (zeros)."""
    now = now or datetime.now(UTC)
    index = {sid: i for i, sid in enumerate(server_ids)}
    sums = {w: np.zeros((len(server_ids), 2)) for w in WINDOWS}  # events_hours, hours
    for sid, window, hours, events, updated in IncidentHistory.objects.filter(server_id__in=server_ids).values_list(
        "server_id", "window", "hours", "events_hours", "updated_at"
    ):
        if window in sums:
            keep = history_keep((now - updated).total_seconds())
            sums[window][index[sid]] = (events * keep, hours * keep)
    return {w: history_inputs(s[:, 0], s[:, 1], w) for w, s in sums.items()}


_RECENT_NEED = RECENT_MIN_HOURS * 60 / STEP_MINUTES  # origins kept before the usual is known


def recent_incident_probabilities(*, server_ids: list[int], window: str, served: bool,
                                  now: datetime | None = None) -> np.ndarray:  # fmt: skip
    """(N,) each server's mean kept P(window) (the model's, or with `served` what was served after the
    live map) over the origins of the last RECENT_HOURS before `now`; NaN with fewer than
    RECENT_MIN_HOURS of origins kept (the incident_prob rule's "usual", engine.alert_rules.recent_mean)."""
    kept = _recent_probabilities(server_ids=server_ids, window=window, served=served, now=now or datetime.now(UTC))
    found = {sid: mean for sid, (n, mean) in kept.items() if n >= _RECENT_NEED}
    return np.array([found.get(sid, math.nan) for sid in server_ids], dtype=np.float64)


def _recent_probabilities(*, server_ids: list[int], window: str, served: bool,
                          now: datetime) -> dict[int, tuple[int, float]]:  # fmt: skip
    """server id → (origins kept over the last RECENT_HOURS, their mean P): one grouped query."""
    column = "prob_served" if served else "prob_prior"
    rows = (
        ProbabilityOutcome.objects.filter(server_id__in=server_ids, window=window,
                                          origin__gte=now - timedelta(hours=RECENT_HOURS), origin__lt=now)
        .values("server_id").annotate(n=Count("id"), mean=Avg(column))
    )  # fmt: skip
    return {r["server_id"]: (r["n"], r["mean"]) for r in rows}


def server_incident_rule(*, server_id: int, now: datetime | None = None) -> dict | None:
    """What the server's incident_prob alert compares now (the rule runs.chunks applies each run,
    engine.alert_rules.incident_prob_threshold): {"source": "model" | "served", "threshold" (None
    while its usual P is not known yet: no alert can open), "usual" (None: not known), "usual_hours"
    (hours of kept P(8 h) over the last day), "need_hours", "share" (its own incident base rate, the
    smoothed one the threshold reads), "rise"}; None with TFT_ALERT_INCIDENT_PROB off (3 queries)."""
    if not settings.TFT_ALERT_INCIDENT_PROB:
        return None
    now = now or datetime.now(UTC)
    served, rise = settings.TFT_ALERT_INCIDENT_PROB_SOURCE == "served", settings.TFT_ALERT_INCIDENT_PROB_RISE
    n, mean = _recent_probabilities(server_ids=[server_id], window=INCIDENT_WINDOW, served=served,
                                    now=now).get(server_id, (0, None))  # fmt: skip
    usual = mean if n >= _RECENT_NEED else None
    share = float(history_share(incident_history_inputs(server_ids=[server_id], now=now)[INCIDENT_WINDOW],
                                INCIDENT_WINDOW)[0])  # fmt: skip
    threshold = float(np.asarray(incident_prob_threshold(
        np.array([share]), tau=settings.TFT_ALERT_INCIDENT_PROB_TAU, lift=settings.TFT_ALERT_INCIDENT_PROB_LIFT,
        recent=np.array([math.nan if usual is None else usual]) if rise > 0 else None, rise=rise,
    )).reshape(-1)[0])  # fmt: skip
    return {
        "source": "served" if served else "model",
        "threshold": threshold if math.isfinite(threshold) else None,
        "usual": usual,
        "usual_hours": n * STEP_MINUTES / 60,
        "need_hours": RECENT_MIN_HOURS if rise > 0 else 0.0,
        "share": share,
        "rise": rise,
    }


def server_incident_history(*, server_id: int, now: datetime | None = None) -> dict[str, dict[str, float]]:
    """Window → {"hours", "share"}: how many (decayed) hours of the server's resolved windows its
    IncidentHistory holds at ``now`` and in what share of them an incident started (unsmoothed; the
    event model's input smooths it). Windows without history are absent."""
    now = now or datetime.now(UTC)
    out = {}
    for window, hours, events, updated in IncidentHistory.objects.filter(server_id=server_id).values_list(
        "window", "hours", "events_hours", "updated_at"
    ):
        if hours > 0:
            keep = history_keep((now - updated).total_seconds())
            out[window] = {"hours": hours * keep, "share": events / hours}
    return out


def series_accuracy(*, raw_model: str | None = None,
                    now: datetime | None = None) -> dict[tuple[str, str, str, str], dict]:
    """(kind, server name, metric, band) → accuracy over the last 24 h: as served (every model
    version that served), and raw of model version ``raw_model`` only (none without one): one
    grouped query (/metrics)."""
    kinds = (Q(kind=_SERVED) | Q(kind=_RAW, model_name=raw_model)) if raw_model else Q(kind=_SERVED)
    sums = _score_sums(_both_kinds("24h", now).filter(kinds), ("kind", "server__name", "metric", "band"))
    return {key: accuracy(s) for key, s in sums.items()}




# --- Incident probabilities (issue 22) ---------------------------------------------------------------


def _probability_histogram(since: datetime) -> dict[str, tuple]:
    """window → arrays (cell, n, incident, Σp, Σp²) of resolved outcomes grouped by served probability
    rounded to 0.001 (the cell) and outcome: one GROUP BY."""
    rows = (
        ProbabilityOutcome.objects.filter(origin__gte=since, incident__isnull=False)
        .annotate(cell=Round("prob_served", 3))
        .values("window", "cell", "incident")
        .annotate(n=Count("id"), p_sum=Sum("prob_served"), p_sq=Sum(F("prob_served") * F("prob_served")))
        .values_list("window", "cell", "incident", "n", "p_sum", "p_sq")
    )
    cells: dict[str, list] = {}
    for window, cell, incident, n, p_sum, p_sq in rows:
        cells.setdefault(window, []).append((cell, n, float(incident), p_sum, p_sq))
    return {w: tuple(np.array(col, dtype=np.float64) for col in zip(*c, strict=True)) for w, c in cells.items()}


_NO_SCORES = {"n": 0, "events": 0, "base_rate": None, "mean_prob": None, "brier": None, "brier_climatology": None,
              "skill": None, "auc": None, "reliability": []}


def probability_reliability(*, now: datetime | None = None) -> dict:
    """Live scores of the served incident probabilities over TFT_PROBABILITY_SCORE_DAYS, per window:
    n, events, base_rate (the fleet's own observed rate), mean_prob, brier, skill (vs that rate),
    auc, a 10-bin reliability table; the live map in force (fleet) and the outcomes still pending."""
    now = now or datetime.now(UTC)
    days = settings.TFT_PROBABILITY_SCORE_DAYS
    histogram = _probability_histogram(now - timedelta(days=days))
    maps = {(s, w): (a, b, n) for s, w, a, b, n in
            ProbabilityCalibration.objects.values_list("scope", "window", "a", "b", "outcomes")}  # fmt: skip
    pending = dict(ProbabilityOutcome.objects.filter(incident__isnull=True).values_list("window")
                   .annotate(n=Count("id")))  # fmt: skip
    windows = {}
    for window in WINDOWS:
        scores = {**_NO_SCORES, **(histogram_scores(*histogram[window]) if window in histogram else {})}
        a, b, outcomes = maps.get((ProbabilityCalibration.FLEET, window), (0.0, 1.0, 0.0))
        windows[window] = {
            **{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in scores.items()},
            "pending": pending.get(window, 0),
            "map": {"a": a, "b": b, "outcomes": outcomes,
                    "profiles": sorted(s for (s, w) in maps if w == window and s != ProbabilityCalibration.FLEET)},
        }  # fmt: skip
    return {"days": days, "windows": windows}
