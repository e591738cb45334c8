"""Rolling-origin backtest of the TFT against the baselines an SRE would otherwise use.

Protocol (per series, per scored metric):

* forecast origins every ``ORIGIN_EVERY`` (48) steps over the last ``TEST_FRACTION`` (40 %) of the
  series, horizon ``spec.HORIZON`` (8 h), with ``spec.CONTEXT`` (24 h) of history before each origin;
* baselines: ``naive`` (last value), ``seasonal_naive`` (the value one day earlier),
  ``predict_linear`` (Prometheus-style least-squares line over the last hour = 12 steps,
  extrapolated) and ``mean`` (mean of the context);
* baseline intervals from each baseline's own residuals on the preceding window: the baseline is
  run from every origin in the ``CALIBRATION`` (one context) steps before the forecast origin, and its
  h-step errors that are already observable at the origin give, per horizon step h, the empirical
  10 % and 90 % error quantiles; p10/p90 = point + those quantiles, p50 = the point forecast;
* scores per window, averaged over all windows: MASE = MAE / s, pinball = mean pinball loss over
  p10/p50/p90 / s, where s is the in-sample one-step naive MAE of the series before the origin
  (the training part: everything before the first test origin, see ``scale``); coverage = share
  of observed targets inside [p10, p90]. Missing buckets (NaN) are never scored.

The TFT is scored twice: raw (``tft``) and as served (``tft_calibrated``), its quantiles scaled by
the adaptive conformal calibration of ``engine.calibration`` — one ``OnlineCalibrator`` per series
and metric, origins in time order, each origin calibrated from the earlier origins' targets already
observed at it (step h of origin o is known from o + h + 1 on: no look-ahead). ``calibration`` in
the result compares both per series family (``series_family``) and pooled. ``served`` is what a
server is served: the TFT blended per band with persistence (``engine.blend``, weights from the
model folder's blend.json moved online by the series' own known targets), then calibrated the same
way. ``per_band`` & co. (``engine.bands``) score every method per horizon band, families weighted
equally.

Incident probabilities (``probability_evaluation``): prob_30m / prob_8h at origins every hour of the
test part against what happened (PROBABILITY_RULES), as Brier score, Brier skill vs climatology and
a 10-bin reliability table; ``fit_probability_recalibration`` fits the isotonic map a model folder
may store, on the training part only. ``served`` is what the service serves: the folder's
probability (``event_model``, or the bound) through the live fleet and per-profile maps
(engine.live_calibration), replayed online per fleet (``live_served``); ``event_model`` (or
``prior``) is the folder's probability alone and ``bound`` the method before the event model.

Also a lead-time evaluation for simulated fleets: for each ``critical_issue`` episode, did a
forecast issued before it start have p90 of cpu_pct or mem_pct crossing the critical threshold,
and how far ahead.

Numpy only; the forecaster (``forecasting.engine.network.Forecaster``) is duck-typed: anything
with ``predict(windows)``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from forecasting.engine import event_model as em
from forecasting.engine import incidents
from forecasting.engine import live_calibration as lc
from forecasting.engine.bands import BandScores, band_scores, report_family
from forecasting.engine.blend import ServedSeries, default_blend
from forecasting.engine.calibration import GAMMAS, N_CAP, OnlineCalibrator
from forecasting.engine.metrics import naive_scale, pinball
from forecasting.engine.probability import (
    fit_isotonic,
    incident_probabilities,
    limits_batch,
    recalibrated,
)
from forecasting.engine.probability_scores import RELIABILITY_BINS, family_pooled, sources_equal
from forecasting.engine.probability_scores import probability_scores as _scores
from forecasting.engine.series import SeriesWindow, fill_series
from forecasting.engine.sources import source_rule
from forecasting.engine.spec import (
    CONTEXT,
    CRITICAL_PCT,
    DEFAULT_THRESHOLDS,
    HORIZON,
    METRICS,
    PERCENT_METRICS,
    STEP_MINUTES,
    STEPS_PER_DAY,
)

logger = logging.getLogger(__name__)

SEASON = STEPS_PER_DAY
LINEAR_STEPS = 60 // STEP_MINUTES  # one hour
ORIGIN_EVERY = HORIZON // 2
TEST_FRACTION = 0.4
CALIBRATION = CONTEXT
QUANTILE_LEVELS: tuple[float, ...] = (0.1, 0.5, 0.9)
QUANTILE_KEYS: tuple[str, ...] = ("p10", "p50", "p90")
BASELINES: tuple[str, ...] = ("naive", "seasonal_naive", "predict_linear", "mean")
CALIBRATED = "tft_calibrated"
SERVED = "served"  # blended with persistence (engine.blend), then calibrated: what a server is served
METHOD_ORDER: tuple[str, ...] = ("tft", CALIBRATED, SERVED, *BASELINES)
FAMILIES: tuple[str, ...] = ("cpu", "memory", "network/requests", "disk", "latency", "other")
_FAMILY_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cpu", ("cpu",)),
    ("network/requests", ("network", "twitter", "request")),
    ("disk", ("disk",)),
    ("latency", ("latency",)),
)
_METRIC_FAMILY = {"cpu_pct": "cpu", "disk_io_mb_s": "disk", "latency_ms": "latency", "mem_pct": "other"}
PREDICT_CHUNK = 512

_UPPER = {m: (100.0 if m in PERCENT_METRICS else math.inf) for m in METRICS}


def series_family(name: str, metric: str | None = None) -> str:
    """The family a series is reported in: from words of its name (NAB files: ``cpu``;
    ``network``/``NetworkIn``/``Twitter`` volumes/requests; ``disk``; ``latency``), else from
    ``metric`` for a contract server's own columns (cpu_pct, disk_io_mb_s, latency_ms; mem_pct
    is "other"), else "other" (a single-value file whose metric was only assigned to it). Files of
    the vendored date-less sources take their family from ``sources.source_rule`` (SMD m05 is
    "memory", m12 "disk", m18 "network/requests"; JumpStarter's unnamed metrics "other")."""
    rule = source_rule(name)
    if rule is not None:
        return rule.family
    lowered = name.lower()
    for family, words in _FAMILY_WORDS:
        if any(word in lowered for word in words):
            return family
    return _METRIC_FAMILY[metric] if metric is not None else "other"


# ---------------------------------------------------------------------------------------------
# Building blocks
def rolling_origins(
    n_steps: int,
    *,
    test_fraction: float = TEST_FRACTION,
    every: int = ORIGIN_EVERY,
    horizon: int = HORIZON,
    context: int = CONTEXT,
) -> np.ndarray:
    """Forecast origins (index of the first forecast step) over the last ``test_fraction``.

    The first origin is the first step of the test part (or ``context`` if the series is too short
    for a full context there); then every ``every`` steps while a full horizon fits.
    """
    first = max(math.ceil((1.0 - test_fraction) * n_steps), context)
    last = n_steps - horizon
    if last < first:
        return np.zeros(0, dtype=np.int64)
    return np.arange(first, last + 1, every, dtype=np.int64)


def history_needed(method: str) -> int:
    return {"naive": 1, "seasonal_naive": SEASON, "predict_linear": LINEAR_STEPS, "mean": CONTEXT}[method]


def baseline_point(method: str, y: np.ndarray, origins: np.ndarray, horizon: int = HORIZON) -> np.ndarray:
    """Point forecasts (len(origins), horizon) of a baseline from a gap-free series ``y``.

    An origin ``t`` forecasts y[t], …, y[t+horizon-1] from y[:t]. Origins with too little history
    give NaN rows.
    """
    y = np.asarray(y, dtype=np.float64)
    origins = np.asarray(origins, dtype=np.int64)
    out = np.full((len(origins), horizon), np.nan)
    ok = origins >= history_needed(method)
    o = origins[ok]
    if len(o) == 0:
        return out
    h = np.arange(horizon)
    if method == "naive":
        out[ok] = y[o - 1][:, None]
    elif method == "seasonal_naive":
        # y[t + h - SEASON] for h < SEASON; further ahead repeats the last observed day
        lag = o[:, None] + (h[None, :] % SEASON) - SEASON
        out[ok] = y[lag]
    elif method == "predict_linear":
        x = np.arange(LINEAR_STEPS, dtype=np.float64)
        xc = x - x.mean()
        win = y[o[:, None] - LINEAR_STEPS + x.astype(np.int64)[None, :]]  # (n, 12)
        slope = (win - win.mean(axis=1, keepdims=True)) @ xc / (xc @ xc)
        intercept = win.mean(axis=1) - slope * x.mean()
        out[ok] = intercept[:, None] + slope[:, None] * (LINEAR_STEPS + h)[None, :]
    elif method == "mean":
        cs = np.concatenate([[0.0], np.cumsum(y)])
        out[ok] = ((cs[o] - cs[o - CONTEXT]) / CONTEXT)[:, None]
    else:
        raise ValueError(f"unknown baseline {method!r}")
    return out


def _residual_matrix(method: str, y_raw: np.ndarray, y_filled: np.ndarray, horizon: int) -> np.ndarray:
    """E[t, h] = y[t+h] − forecast from origin t at step h, NaN where unavailable."""
    n = len(y_raw)
    t = np.arange(n)
    pred = baseline_point(method, y_filled, t, horizon)
    tgt_idx = t[:, None] + np.arange(horizon)[None, :]
    tgt = np.where(tgt_idx < n, y_raw[np.minimum(tgt_idx, n - 1)], np.nan)
    return tgt - pred


def _masked_quantiles(samples: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Quantiles along axis 1 of (B, N, H) ignoring NaN (linear interpolation) → (B, len(levels), H)."""
    srt = np.sort(samples, axis=1)  # NaN sort last
    count = np.sum(~np.isnan(samples), axis=1)  # (B, H)
    out = np.full((samples.shape[0], len(levels), samples.shape[2]), np.nan)
    b_idx = np.arange(samples.shape[0])[:, None]
    h_idx = np.arange(samples.shape[2])[None, :]
    for k, q in enumerate(levels):
        pos = q * np.maximum(count - 1, 0)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, np.maximum(count - 1, 0))
        frac = pos - lo
        v = srt[b_idx, lo, h_idx] * (1 - frac) + srt[b_idx, hi, h_idx] * frac
        out[:, k, :] = np.where(count > 0, v, np.nan)
    return out


def _fill_along_horizon(q: np.ndarray) -> np.ndarray:
    """Fill NaN error quantiles (B, K, H) from the nearest shorter horizon, then with 0."""
    out = q.copy()
    for h in range(1, out.shape[2]):
        gap = np.isnan(out[:, :, h])
        out[:, :, h][gap] = out[:, :, h - 1][gap]
    return np.nan_to_num(out, nan=0.0)


def baseline_quantiles(
    method: str,
    y: np.ndarray,
    origins: np.ndarray,
    *,
    horizon: int = HORIZON,
    calibration: int = CALIBRATION,
    upper: float = math.inf,
    residuals: np.ndarray | None = None,
) -> np.ndarray:
    """(len(origins), 3, horizon) p10/p50/p90 of a baseline, intervals from its own past errors.

    For origin o, the baseline is run from every t in [o − calibration, o); its error at step h
    counts only if y[t+h] was observed before o (t + h < o). p10/p90 = point + the 10 %/90 %
    quantile of those errors at that h; p50 = point. Clipped to [0, upper].
    """
    y_raw = np.asarray(y, dtype=np.float64)
    y_filled = fill_series(y_raw)
    origins = np.asarray(origins, dtype=np.int64)
    point = baseline_point(method, y_filled, origins, horizon)
    if residuals is None:
        residuals = _residual_matrix(method, y_raw, y_filled, horizon)
    err_q = np.zeros((len(origins), 2, horizon))
    for i in range(0, len(origins), 128):  # bounded memory: (128, calibration, horizon) at a time
        o = origins[i : i + 128]
        cal_t = o[:, None] + np.arange(-calibration, 0)[None, :]  # (B, C)
        samples = residuals[np.clip(cal_t, 0, len(y_raw) - 1)]  # (B, C, H)
        observable = (cal_t[:, :, None] + np.arange(horizon)[None, None, :]) < o[:, None, None]
        samples = np.where(observable & (cal_t >= 0)[:, :, None], samples, np.nan)
        err_q[i : i + 128] = _fill_along_horizon(_masked_quantiles(samples, (QUANTILE_LEVELS[0], QUANTILE_LEVELS[2])))
    p10 = np.minimum(point + err_q[:, 0, :], point)
    p90 = np.maximum(point + err_q[:, 1, :], point)
    out = np.stack([p10, point, p90], axis=1)
    return np.clip(out, 0.0, upper)


def score_window(y: np.ndarray, quantiles: np.ndarray, scale: float) -> dict[str, float] | None:
    """Scores of one forecast window: y (H,), quantiles (3, H) p10/p50/p90.

    MASE = mean |y − p50| / scale; pinball = mean over the 3 levels and H of the pinball loss /
    scale; coverage = share of y inside [p10, p90]. None when nothing is observed or scale ≤ 0.
    """
    obs = ~np.isnan(y)
    if not obs.any() or not (scale > 0) or not np.isfinite(scale):
        return None
    yo = y[obs]
    q = quantiles[:, obs]
    mase = float(np.mean(np.abs(yo - q[1])) / scale)
    pin = float(np.mean([pinball(yo, q[k], lvl).mean() for k, lvl in enumerate(QUANTILE_LEVELS)]) / scale)
    cov = float(np.mean((yo >= q[0]) & (yo <= q[2])))
    return {"mase": mase, "pinball": pin, "coverage": cov}


# ---------------------------------------------------------------------------------------------
# The backtest
def _metric_tuple(metrics: str | Sequence[str] | None) -> tuple[str, ...]:
    if metrics is None:
        return METRICS
    out = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    for m in out:
        if m not in METRICS:
            raise ValueError(f"unknown metric {m!r}")
    return out


@dataclass(frozen=True)
class _Protocol:
    horizon: int
    context: int
    calibration: int
    scale: str  # "train" or "context"
    mapped: bool = False  # single-value files mapped onto a metric: the family comes from the name only
    blend: Mapping | None = None  # the model folder's blend (engine.blend); None: the model alone


def _scored_metrics(series: list[SeriesWindow], metrics) -> dict[str, tuple[str, ...]]:
    if isinstance(metrics, Mapping):
        return {w.server: _metric_tuple(metrics.get(w.server)) for w in series}
    return {w.server: _metric_tuple(metrics) for w in series}


def _scales(y: np.ndarray, origins: np.ndarray, protocol: _Protocol) -> np.ndarray:
    if protocol.scale == "train":
        return np.full(len(origins), naive_scale(y[: int(origins[0])]))
    return np.array([naive_scale(y[max(0, o - protocol.context) : o]) for o in origins])


def _score_metric(scores, protocol: _Protocol, w: SeriesWindow, m: str, origins: np.ndarray, preds) -> None:
    """Every method's scores of one series and metric at its origins (``preds``: the TFT's, or None)."""
    y = w.values[:, METRICS.index(m)].astype(np.float64)
    scales = _scales(y, origins, protocol)
    targets = np.stack([y[o : o + protocol.horizon] for o in origins])
    family = (
        series_family(w.server, None if protocol.mapped else m),
        report_family(w.server, m, mapped=protocol.mapped),
    )
    for method in BASELINES:
        q = baseline_quantiles(
            method, y, origins, horizon=protocol.horizon, calibration=protocol.calibration, upper=_UPPER[m]
        )
        for k in range(len(origins)):
            scores.add_window(method, m, family, targets[k], q[k], scales[k])
    if preds is None:
        return
    _score_tft(scores, (w, m, family, protocol), origins, targets, scales, preds)


def _score_tft(scores, what: tuple, origins: np.ndarray, targets: np.ndarray, scales: np.ndarray, preds) -> None:
    """The TFT raw and as served: calibrated at each origin (in time order) by the errors of earlier
    origins' targets known by then (see calibration.OnlineCalibrator)."""
    w, m, family, protocol = what
    y = w.values[:, METRICS.index(m)].astype(np.float64)
    calibrator = OnlineCalibrator()
    served_series = ServedSeries(protocol.blend or default_blend(), OnlineCalibrator(), m)
    for k, o in enumerate(origins):
        raw = _forecaster_quantiles(preds[f"{w.server}#{int(o)}"], m, targets.shape[1])
        calibrated = calibrator.serve(int(o), raw.T, QUANTILE_LEVELS, lower=0.0, upper=_UPPER[m]).T
        calibrator.record(int(o), targets[k], calibrated[0], calibrated[2])
        context = y[max(0, int(o) - protocol.context) : int(o)]
        served = served_series.serve(int(o), raw.T, context, QUANTILE_LEVELS, lower=0.0, upper=_UPPER[m])
        served_series.record(int(o), targets[k], served, scales[k], QUANTILE_LEVELS)
        scores.add_window("tft", m, family, targets[k], raw, scales[k])
        scores.add_window(CALIBRATED, m, family, targets[k], calibrated, scales[k])
        scores.add_window(SERVED, m, family, targets[k], served.T, scales[k])


class _Scores:
    def __init__(self) -> None:
        self.rows: dict[str, list[tuple[str, str, dict[str, float]]]] = {}
        self.bands = BandScores()  # per horizon band and report family (engine.bands)

    def add(self, method: str, metric: str, score: dict[str, float] | None, family: str = "other") -> None:
        if score is not None:
            self.rows.setdefault(method, []).append((metric, family, score))

    def add_window(self, method: str, metric: str, families: tuple[str, str], y, q, scale) -> None:
        """One window's scores, whole (series family) and per band (report family)."""
        score = score_window(y, q, scale)
        self.add(method, metric, score, families[0])
        self.bands.add(method, families[1], score, band_scores(y, q, scale, QUANTILE_LEVELS))

    def summary(self, methods: Iterable[str]) -> dict[str, dict[str, float]]:
        return {method: _mean_scores([s for _, _, s in self.rows.get(method, [])]) for method in methods}

    def _grouped(self, methods: Iterable[str], key: int) -> dict[str, dict[str, dict[str, float]]]:
        out: dict[str, dict[str, dict[str, float]]] = {}
        for method in methods:
            groups: dict[str, list[dict[str, float]]] = {}
            for row in self.rows.get(method, []):
                groups.setdefault(row[key], []).append(row[2])
            out[method] = {g: _mean_scores(v) for g, v in groups.items()}
        return out

    def per_metric(self, methods: Iterable[str]) -> dict[str, dict[str, dict[str, float]]]:
        return self._grouped(methods, 0)

    def per_family(self, methods: Iterable[str]) -> dict[str, dict[str, dict[str, float]]]:
        """family → method → scores (every method on the same windows of that family)."""
        grouped = self._grouped(methods, 1)
        families = {f for by_family in grouped.values() for f in by_family}
        order = [f for f in FAMILIES if f in families] + sorted(families - set(FAMILIES))
        return {f: {m: grouped[m][f] for m in grouped if f in grouped[m]} for f in order}

    def calibration_report(self) -> dict[str, Any]:
        """Raw vs calibrated TFT coverage and pinball per series family and pooled."""
        by_family = self._grouped(("tft", CALIBRATED), 1)
        pooled = self.summary(("tft", CALIBRATED))
        families = {
            f: {"raw": by_family["tft"][f], "calibrated": by_family[CALIBRATED][f]}
            for f in FAMILIES
            if f in by_family["tft"]
        }
        return {
            "gammas": list(GAMMAS),
            "n_cap": N_CAP,
            "families": families,
            "pooled": {"raw": pooled["tft"], "calibrated": pooled[CALIBRATED]},
        }


def _mean_scores(rows: list[dict[str, float]]) -> dict[str, float]:
    if not rows:
        return {"mase": math.nan, "pinball": math.nan, "coverage": math.nan, "windows": 0}
    return {
        "mase": float(np.mean([r["mase"] for r in rows])),
        "pinball": float(np.mean([r["pinball"] for r in rows])),
        "coverage": float(np.mean([r["coverage"] for r in rows])),
        "windows": len(rows),
    }


def context_window(w: SeriesWindow, origin: int, context: int = CONTEXT, key: str | None = None) -> SeriesWindow:
    """The SeriesWindow a forecaster sees at ``origin``: the ``context`` buckets before it."""
    lo = max(0, origin - context)
    return SeriesWindow(
        server=key or f"{w.server}#{origin}",
        profile=w.profile,
        start=w.start + timedelta(minutes=w.step_minutes * lo),
        step_minutes=w.step_minutes,
        values=w.values[lo:origin],
        states=w.states[lo:origin],
        calendar=w.calendar,
    )


def _predict_chunks(forecaster, windows: list[SeriesWindow], chunk_size: int) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for i in range(0, len(windows), chunk_size):
        out.update(forecaster.predict(windows[i : i + chunk_size]))
        logger.info("tft: predicted %d/%d windows", min(i + chunk_size, len(windows)), len(windows))
    return out


def _forecaster_quantiles(pred: dict, metric: str, horizon: int) -> np.ndarray:
    m = pred[metric]
    return np.stack([np.asarray(m[k], dtype=np.float64)[:horizon] for k in QUANTILE_KEYS])


def run_backtest(
    series: list[SeriesWindow],
    forecaster=None,
    *,
    metrics: Sequence[str] | Mapping[str, str | Sequence[str]] | None = None,
    test_fraction: float = TEST_FRACTION,
    every: int = ORIGIN_EVERY,
    horizon: int = HORIZON,
    context: int = CONTEXT,
    calibration: int = CALIBRATION,
    scale: str = "train",
    chunk_size: int = PREDICT_CHUNK,
    per_metric: bool = False,
    blend: Mapping | None = None,
) -> dict[str, Any]:
    """Rolling-origin backtest of ``forecaster`` (optional) and the four baselines.

    ``metrics``: the METRICS columns to score (default all four), or a mapping server → metric(s)
    (e.g. NAB series mapped onto different metrics). ``scale``: "train" divides by the
    one-step naive MAE of the series before its first test origin (the in-sample part), "context"
    by that of each window's own context. Returns ``{"methods": {name: {"mase", "pinball",
    "coverage", "windows"}}, "per_family": {family: {name: …}}}`` (plus "per_metric" when asked, and "calibration" — raw vs calibrated
    TFT per family and pooled — with a forecaster).
    """
    if scale not in ("train", "context"):
        raise ValueError("scale must be 'train' or 'context'")
    scored = _scored_metrics(series, metrics)
    origins = [
        rolling_origins(len(w.values), test_fraction=test_fraction, every=every, horizon=horizon, context=context)
        for w in series
    ]
    logger.info("backtest: %d series, %d origins", len(series), sum(len(o) for o in origins))
    preds: dict[str, dict] = {}
    if forecaster is not None:
        windows = [context_window(w, int(o), context) for w, os in zip(series, origins, strict=True) for o in os]
        preds = _predict_chunks(forecaster, windows, chunk_size) if windows else {}
    scores = _Scores()
    protocol = _Protocol(horizon, context, calibration, scale, mapped=isinstance(metrics, Mapping), blend=blend)
    for w, os in zip(series, origins, strict=True):
        for m in scored[w.server] if len(os) else ():
            _score_metric(scores, protocol, w, m, os, preds if forecaster is not None else None)
    methods = [m for m in METHOD_ORDER if m not in ("tft", CALIBRATED, SERVED) or forecaster is not None]
    result: dict[str, Any] = {"methods": scores.summary(methods), "per_family": scores.per_family(methods)}
    result.update(scores.bands.report(methods))  # per_band & co. (engine.bands)
    if per_metric:
        result["per_metric"] = scores.per_metric(methods)
    if forecaster is not None:
        result["calibration"] = scores.calibration_report()
    return result


# ---------------------------------------------------------------------------------------------
# Lead time before simulated incidents
WARN_METRICS: tuple[str, ...] = ("cpu_pct", "mem_pct")


@dataclass
class _EpisodeOrigins:
    episode: Any  # simulator.Episode (duck-typed: server, start, end, precursor_start, recovery_end)
    start: int  # bucket index of the critical_issue start
    end: int
    origins: list[int]


@dataclass
class _LeadTimePlan:
    by_server: dict[str, SeriesWindow]
    episodes: list[_EpisodeOrigins]
    quiet: list[tuple[str, int]]
    skipped: int

    def wanted(self) -> dict[str, list[int]]:
        """Every server's forecast origins (episodes and quiet), sorted."""
        out: dict[str, set[int]] = {}
        for job in self.episodes:
            out.setdefault(job.episode.server, set()).update(job.origins)
        for server, o in self.quiet:
            out.setdefault(server, set()).add(o)
        return {server: sorted(origins) for server, origins in out.items()}


def _bucket(w: SeriesWindow, when: datetime) -> int:
    return round((when - w.start).total_seconds() / (w.step_minutes * 60))


def _busy(windows: list[SeriesWindow], episodes: list, by_server: dict[str, SeriesWindow]) -> dict[str, np.ndarray]:
    """Per server, the buckets from each episode's precursor (or start) to its recovery end."""
    busy = {w.server: np.zeros(len(w.values), bool) for w in windows}
    for e in episodes:
        w = by_server.get(e.server)
        if w is None:
            continue
        p0 = _bucket(w, e.precursor_start if e.precursor_start is not None else e.start)
        busy[e.server][max(p0, 0) : max(_bucket(w, e.recovery_end), 0)] = True
    return busy


def _episode_origins(
    episodes: list, by_server: dict[str, SeriesWindow], context: int, lookback: int, every: int
) -> tuple[list[_EpisodeOrigins], int]:
    """Forecast origins before each episode (never before the previous one's recovery end or with
    less than ``context`` history); episodes without a full lookback are skipped and counted."""
    prev_end: dict[str, int] = {}
    jobs, skipped = [], 0
    for e in sorted(episodes, key=lambda e: (e.server, e.start)):
        w = by_server.get(e.server)
        if w is None:
            continue
        s, end = _bucket(w, e.start), _bucket(w, e.end)
        floor = max(context, prev_end.get(e.server, 0))
        prev_end[e.server] = _bucket(w, e.recovery_end)
        if s - lookback < floor or s >= len(w.values):
            skipped += 1
            continue
        origins = [s - k for k in range(every, lookback + 1, every) if s - k >= floor]
        jobs.append(_EpisodeOrigins(e, s, end, origins))
    return jobs, skipped


def _quiet_origins(
    windows: list[SeriesWindow], busy: dict[str, np.ndarray], context: int, every: int
) -> list[tuple[str, int]]:
    """Origins with no episode (precursor to recovery end) within their context or horizon."""
    quiet = []
    for w in windows:
        b = busy[w.server]
        for o in range(context, len(w.values) - HORIZON + 1, every):
            if not b[o - context : o + HORIZON].any():
                quiet.append((w.server, o))
    return quiet


def _tft_p90(forecaster, plan: _LeadTimePlan, context: int, chunk_size: int) -> dict[tuple[str, int], np.ndarray]:
    """(server, origin) → (2, H) p90 of cpu and mem, forecast by ``forecaster``."""
    keys = [(srv, o) for srv, origins in plan.wanted().items() for o in origins]
    wins = [context_window(plan.by_server[srv], o, context, key=f"{srv}#{o}") for srv, o in keys]
    preds = _predict_chunks(forecaster, wins, chunk_size) if wins else {}
    return {
        (srv, o): np.stack([np.asarray(preds[f"{srv}#{o}"][m]["p90"], dtype=np.float64) for m in WARN_METRICS])
        for srv, o in keys
    }


def _baseline_p90(method: str, plan: _LeadTimePlan, calibration: int) -> dict[tuple[str, int], np.ndarray]:
    """(server, origin) → (2, H) p90 of cpu and mem from a baseline's own-residual intervals."""
    out: dict[tuple[str, int], np.ndarray] = {}
    cols = [METRICS.index(m) for m in WARN_METRICS]
    for srv, wanted in plan.wanted().items():
        w = plan.by_server[srv]
        origins = np.array(wanted, dtype=np.int64)
        per_metric = [
            baseline_quantiles(method, w.values[:, c], origins, calibration=calibration, upper=100.0)[:, 2, :]
            for c in cols
        ]
        for k, o in enumerate(origins):
            out[(srv, int(o))] = np.stack([pm[k] for pm in per_metric])
    return out


def _nan_stat(fn, values: list[float]) -> float:
    return float(fn(values)) if values else math.nan


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else math.nan


def _warning_origins(job: _EpisodeOrigins, p90: dict, threshold: float) -> list[int]:
    """The job's origins whose p90 reaches ``threshold`` at a forecast step before the episode ends."""
    warned = []
    for o in job.origins:
        upto = min(job.end - o, HORIZON)
        if upto > 0 and p90[(job.episode.server, o)][:, :upto].max() >= threshold:
            warned.append(o)
    return warned


def _lead_scores(p90: dict, plan: _LeadTimePlan, threshold: float, step: int) -> dict[str, Any]:
    leads: list[float] = []
    detected = precursor_detected = n_pre = 0
    for job in plan.episodes:
        has_pre = job.episode.precursor_start is not None
        n_pre += has_pre
        warned = _warning_origins(job, p90, threshold)
        if warned:
            detected += 1
            precursor_detected += has_pre
            leads.append(float((job.start - min(warned)) * step))
    alarms = sum(1 for key in plan.quiet if p90[key].max() >= threshold)
    return {
        "detected": detected,
        "detection_rate": _ratio(detected, len(plan.episodes)),
        "detection_rate_with_precursor": _ratio(precursor_detected, n_pre),
        "median_lead_minutes": _nan_stat(np.median, leads),
        "mean_lead_minutes": _nan_stat(np.mean, leads),
        "false_alarm_rate": _ratio(alarms, len(plan.quiet)),
        "quiet_origins": len(plan.quiet),
    }


def lead_time_evaluation(
    windows: list[SeriesWindow],
    episodes: list,
    forecaster=None,
    *,
    baselines: Sequence[str] = BASELINES,
    threshold: float = CRITICAL_PCT,
    lookback: int = HORIZON,
    origin_every: int = 3,
    context: int = CONTEXT,
    calibration: int = CALIBRATION,
    quiet_every: int = ORIGIN_EVERY,
    chunk_size: int = PREDICT_CHUNK,
) -> dict[str, Any]:
    """Did a forecast issued before each ``critical_issue`` episode warn of it, and how early?

    For each episode starting at bucket s, forecasts are issued at origins s − k·origin_every
    (k ≥ 1, up to ``lookback`` steps before), never earlier than the previous episode's
    recovery end or with less than ``context`` history. An origin *warns* when the p90 of cpu_pct
    or mem_pct reaches ``threshold`` at some forecast step before the episode ends. Lead time =
    minutes from the earliest warning origin to the episode start. ``false_alarm_rate``: share of
    quiet origins (every ``quiet_every`` steps, no episode — precursor to recovery end — within
    the context or the horizon) that warn anyway.
    """
    by_server = {w.server: w for w in windows}
    step = windows[0].step_minutes if windows else STEP_MINUTES
    jobs, skipped = _episode_origins(episodes, by_server, context, lookback, origin_every)
    quiet = _quiet_origins(windows, _busy(windows, episodes, by_server), context, quiet_every)
    plan = _LeadTimePlan(by_server, jobs, quiet, skipped)
    result: dict[str, Any] = {
        "threshold": threshold,
        "episodes": len(jobs),
        "episodes_skipped": skipped,
        "lookback_minutes": lookback * step,
        "methods": {},
    }
    if forecaster is not None:
        result["methods"]["tft"] = _lead_scores(_tft_p90(forecaster, plan, context, chunk_size), plan, threshold, step)
    for method in baselines:
        result["methods"][method] = _lead_scores(_baseline_p90(method, plan, calibration), plan, threshold, step)
    return result


# ---------------------------------------------------------------------------------------------
# Are the incident probabilities calibrated?
PROB_EVERY = 12  # one origin an hour: many more forecasts than the interval scores need
PROB_WINDOWS: dict[str, int] = dict(incidents.WINDOWS)
PRIOR_EVENT_MODEL = "event_model"  # the folder's event model alone (the live maps' prior)
PRIOR_BOUND = "prior"  # the same without an event model: the folder's (recalibrated) bound
BOUND = "bound"  # the method before the event model: the calibrated bound through the folder's isotonic map
PROBABILITY_RULES = {
    **incidents.DEFINITION,
    "anomaly": "a labelled anomaly window [start, end] overlaps the forecast window [origin, origin + W·step)",
}
SERVED = "served"


def probability_scores(p: np.ndarray, event: np.ndarray, bins: int = RELIABILITY_BINS) -> dict[str, Any]:
    """Brier score, Brier skill vs climatology (the sample's own event rate), AUC and a reliability
    table of forecast probabilities ``p`` against 0/1 outcomes ``event`` (engine.probability_scores)."""
    return _scores(p, event, bins=bins)


@dataclass(frozen=True)
class ProbabilitySetup:
    """What the probability evaluation needs besides the series: the forecast's quantile levels,
    the served limits, the incident definition, labelled anomalies, and what is served (the folder's
    isotonic ``recalibration`` of the bound, or its ``event_model``, which wins when both exist)."""

    levels: tuple[float, ...]
    thresholds: Mapping[str, dict]
    anomalies: Mapping[str, Sequence] | None = None
    recalibration: Mapping[str, dict] | None = None
    event_model: dict | None = None
    min_buckets: int = incidents.DEFAULT_MIN_BUCKETS
    incident_states: tuple[str, ...] = incidents.REPORTED_STATES
    clocks: Mapping[str, tuple[str, bool]] | None = None  # series → (its fleet, whether the fleet is dated)
    every: int = PROB_EVERY  # steps between origins: each replayed outcome stands for this many of the service's
    live: lc.LiveMapConfig = field(default_factory=lc.LiveMapConfig)
    blend: Mapping | None = None  # the folder's blend.json: serving blends before it calibrates (None: model alone)

    @property
    def prior_key(self) -> str:
        return PRIOR_EVENT_MODEL if self.event_model is not None else PRIOR_BOUND


def fleet_clocks(series: Sequence[SeriesWindow], fleets: Mapping[str, str] | None) -> dict[str, tuple[str, bool]]:
    """Series → (fleet, dated): a fleet is dated when every one of its series carries wall-clock
    dates (``calendar``); without ``fleets`` all series are one fleet."""
    fleet_of = {w.server: (fleets or {}).get(w.server, "fleet") for w in series}
    dated: dict[str, bool] = {}
    for w in series:
        dated[fleet_of[w.server]] = dated.get(fleet_of[w.server], True) and bool(w.calendar)
    return {name: (fleet, dated[fleet]) for name, fleet in fleet_of.items()}


def origin_clock(w: SeriesWindow, origins: np.ndarray, dated: bool) -> np.ndarray:
    """Each origin's time on its fleet's clock, in seconds: the wall-clock time when the fleet is
    dated; else (step counters, not dates) the time since the series' first test origin, so that the
    series of a date-less set run side by side from the start of their test parts."""
    step_s = w.step_minutes * 60.0
    if dated:
        return w.start.timestamp() + origins.astype(np.float64) * step_s
    return (origins - origins[0]).astype(np.float64) * step_s


class _ProbSamples:
    def __init__(self, recalibration: Mapping[str, dict] | None = None, setup: ProbabilitySetup | None = None) -> None:
        self.recalibration = recalibration
        self.setup = setup
        self.p: dict[tuple[str, str], list[np.ndarray]] = {}  # (raw/calibrated/prior/bound, window) → probabilities
        self.events: dict[tuple[str, str], list[np.ndarray]] = {}  # (rule, window) → outcomes
        self.family: dict[str, list[np.ndarray]] = {}  # window → each sample's family
        self.clock: dict[tuple[str, str], list[np.ndarray]] = {}  # (fleet/time/close/profile, window) → per sample

    def add(self, kind: str, window: str, p: np.ndarray) -> None:
        self.p.setdefault((kind, window), []).append(p)

    def add_events(self, rule: str, window: str, e: np.ndarray) -> None:
        self.events.setdefault((rule, window), []).append(e)

    def add_family(self, window: str, family: str, n: int) -> None:
        self.family.setdefault(window, []).append(np.full(n, family, dtype=object))

    def add_clock(self, window: str, **per_sample: np.ndarray) -> None:
        for key, values in per_sample.items():
            self.clock.setdefault((key, window), []).append(values)

    def live_served(self, window: str) -> np.ndarray:
        """The served probabilities of one window: the priors through the live maps, replayed online
        per fleet (engine.live_calibration.live_map_replay, learning from the "incident" outcomes
        the service records)."""
        setup = self.setup
        prior = np.concatenate(self.p[(setup.prior_key, window)])
        clock = {key: np.concatenate(self.clock[(key, window)]) for key in ("fleet", "time", "close", "profile")}
        events = np.concatenate(self.events[("incident", window)]).astype(np.float64)
        served = prior.copy()
        for fleet in sorted(set(clock["fleet"].tolist())):
            sel = clock["fleet"] == fleet
            served[sel] = lc.live_map_replay(times=clock["time"][sel], closes=clock["close"][sel],
                                             profiles=clock["profile"][sel], p_prior=prior[sel], events=events[sel],
                                             cfg=setup.live, weight=float(setup.every))  # fmt: skip
        return served

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        live: dict[str, np.ndarray] = {}
        for (rule, window), events in self.events.items():
            e = np.concatenate(events)
            kinds = {kind: np.concatenate(self.p[(kind, window)]) for kind in ("raw", "calibrated")}
            if self.recalibration and window in self.recalibration:
                kinds["recalibrated"] = recalibrated(kinds["calibrated"], self.recalibration[window])
            for kind, p in kinds.items():
                out.setdefault(rule, {}).setdefault(window, {})[kind] = probability_scores(p, e)
            if self.setup is None or self.setup.clocks is None:
                continue
            family = np.concatenate(self.family[window])
            if window not in live:
                live[window] = self.live_served(window)
            served = {SERVED: live[window], self.setup.prior_key: np.concatenate(self.p[(self.setup.prior_key, window)]),
                      BOUND: recalibrated(kinds["calibrated"], (self.recalibration or {}).get(window))}  # fmt: skip
            fleet = np.concatenate(self.clock[("fleet", window)])
            for kind, p in served.items():
                out[rule][window][kind] = served_scores(p, e, family, fleet)
        return out


def served_scores(p: np.ndarray, event: np.ndarray, family: np.ndarray, fleet: np.ndarray | None = None) -> dict[str, Any]:
    """The served probabilities' scores pooled over families weighted equally, with
    ``per_family`` beside them (each family's own unweighted scores); with samples of more than one
    ``fleet`` (a --csv-dir, a simulated fleet), also ``per_fleet`` (each fleet's own, its families
    weighted equally) and ``fleets_equal`` (their mean: probability_scores.sources_equal)."""
    family = np.asarray(family).astype(str)
    groups = {f: (p[family == f], event[family == f]) for f in sorted(set(family.tolist()))}
    out = {**family_pooled(groups), "per_family": {f: _scores(a, b) for f, (a, b) in groups.items()}}
    fleet = None if fleet is None else np.asarray(fleet).astype(str)
    if fleet is not None and len(set(fleet.tolist())) > 1:
        per_fleet = {}
        for name in sorted(set(fleet.tolist())):
            sel = fleet == name
            own = {f: (p[sel & (family == f)], event[sel & (family == f)]) for f in sorted(set(family[sel].tolist()))}
            per_fleet[name] = {k: v for k, v in family_pooled(own).items() if k != "reliability"}
        out |= {"fleets_equal": sources_equal(per_fleet), "per_fleet": per_fleet}
    return out


def _anomaly_events(w: SeriesWindow, origins: np.ndarray, spans: Sequence, steps: int) -> np.ndarray:
    step = timedelta(minutes=w.step_minutes)
    starts = [w.start + step * int(o) for o in origins]
    return np.array([any(t <= b and a < t + step * steps for a, b in spans) for t in starts], dtype=bool)


def served_inputs(w: SeriesWindow, cols: list[int], origins: np.ndarray, q: np.ndarray, setup: ProbabilitySetup):
    """What serving sees at each origin: contexts (n, CONTEXT, M), states (n, CONTEXT), critical
    limits (n, M) and the forecast (n, H, M, K) with the scored metrics' quantiles served as the
    prediction run serves them — blended with persistence by the online weights (``setup.blend``),
    then interval-calibrated online (blend.ServedSeries; no look-ahead)."""
    y = w.values.astype(np.float64)
    context = np.stack([y[o - CONTEXT : o] for o in origins])
    states = np.stack([w.states[o - CONTEXT : o] for o in origins])
    _, critical = limits_batch(context, dict(setup.thresholds), METRICS)
    served = np.asarray(q, dtype=np.float64).copy()
    levels, horizon = list(setup.levels), served.shape[1]
    ahead = np.concatenate([y, np.full((horizon, y.shape[1]), np.nan)])  # targets past the end are unknown
    for c in cols:
        series = ServedSeries(setup.blend or default_blend(), OnlineCalibrator(), METRICS[c])
        for k, o in enumerate(origins):
            served[k, :, c] = series.serve(int(o), q[k, :, c], context[k, :, c], levels, lower=0.0,
                                           upper=_UPPER[METRICS[c]])  # fmt: skip
            series.record(int(o), ahead[o : o + horizon, c], served[k, :, c], naive_scale(context[k, :, c]), levels)
    return context, states, critical, served


_HISTORY_CHUNK = 2048  # contexts whose limits are computed at once (memory: 2048 × 288 × 4 floats)


def incident_history(w: SeriesWindow, cols: list[int], origins: np.ndarray, setup: ProbabilitySetup) -> dict:
    """Window → (n, 2) the series' own incident history at each origin (event_model.history_inputs):
    the incident labels of origins on the origins' grid back to the series' start whose windows
    closed before each origin, decayed as the service decays its resolved outcomes."""
    origins = np.asarray(origins, dtype=np.int64)
    step = max(int(np.diff(origins).min()), 1) if len(origins) > 1 else setup.every
    grid = np.arange(origins[0] - step * ((origins[0] - CONTEXT) // step), origins[-1] + 1, step, dtype=np.int64)
    y = w.values.astype(np.float64)
    critical = np.concatenate([
        limits_batch(np.stack([y[g - CONTEXT : g] for g in part]), dict(setup.thresholds), METRICS)[1]
        for part in np.array_split(grid, max(1, -(-len(grid) // _HISTORY_CHUNK)))
    ])  # fmt: skip
    labels = incidents.incident_labels(y[:, cols], w.states, critical[:, cols], grid, min_buckets=setup.min_buckets,
                                       incident_states=setup.incident_states)["incident"]  # fmt: skip
    at = np.searchsorted(grid, origins, side="right") - 1
    out = {}
    for name, steps in incidents.WINDOWS.items():
        events, hours = em.series_history(labels[name], every=step, steps=steps, min_buckets=setup.min_buckets)
        out[name] = em.history_inputs(events[at], hours[at], name)
    return out


def served_probabilities(w: SeriesWindow, cols: list[int], origins: np.ndarray, inputs: tuple,
                         setup: ProbabilitySetup, history: dict | None = None) -> dict[str, np.ndarray]:  # fmt: skip
    """Window → the served P(incident) at each origin: the event model's when the folder has one
    (with the series' own incident history, as the service keeps it: ``incident_history``, or
    `history` when the caller already has it), else the bound through the folder's recalibration
    map, else the bound."""
    context, states, critical, served = inputs
    if setup.event_model is not None:
        scored = np.zeros((len(origins), len(METRICS)), dtype=bool)
        scored[:, cols] = True
        feats = em.event_features(context, states, served, setup.levels, critical, [w.profile] * len(origins),
                                  scored=scored, min_buckets=setup.min_buckets,
                                  history=history if history is not None
                                  else incident_history(w, cols, origins, setup))  # fmt: skip
        return em.model_probabilities(setup.event_model, feats)
    bound = incident_probabilities(served[:, :, cols], np.array(setup.levels), critical[:, cols])
    out = {"30m": bound["prob_30m"], "8h": bound["prob_8h"]}
    return {name: recalibrated(p, (setup.recalibration or {}).get(name)) for name, p in out.items()}


def probability_family(w: SeriesWindow, cols: list[int]) -> str:
    """A single-value file's name family (cpu, disk, …); "servers" for contract servers scored on all
    their metrics (a simulated fleet)."""
    return series_family(w.server) if len(cols) == 1 else "servers"


def _series_probabilities(samples: _ProbSamples, w: SeriesWindow, cols: list[int], origins, q,
                          setup: ProbabilitySetup) -> None:  # fmt: skip
    """One series' raw, calibrated and served incident probabilities and its events, per window."""
    inputs = served_inputs(w, cols, origins, q, setup)
    _, _, critical, served = inputs
    crit = critical[:, cols]
    levels = np.array(setup.levels)
    probs = {
        "raw": incident_probabilities(q[:, :, cols].astype(np.float64), levels, crit),
        "calibrated": incident_probabilities(served[:, :, cols], levels, crit),
    }
    labels = incidents.incident_labels(
        w.values[:, cols].astype(np.float64), w.states, crit, origins,
        min_buckets=setup.min_buckets, incident_states=setup.incident_states,
    )  # fmt: skip
    served_p = served_probabilities(w, cols, origins, inputs, setup)
    family = probability_family(w, cols)
    fleet, dated = (setup.clocks or {}).get(w.server, ("fleet", True))
    times = origin_clock(w, origins, dated)
    for name, steps in PROB_WINDOWS.items():
        key = "prob_30m" if name == "30m" else "prob_8h"
        for kind, p in probs.items():
            samples.add(kind, name, p[key])
        samples.add(setup.prior_key, name, served_p[name])
        samples.add_family(name, family, len(origins))
        # the service resolves an outcome once the window and the buckets confirming a run have passed
        close = times + (steps + setup.min_buckets - 1) * w.step_minutes * 60.0
        samples.add_clock(name, fleet=np.full(len(origins), fleet, dtype=object), time=times, close=close,
                          profile=np.full(len(origins), w.profile, dtype=object))  # fmt: skip
        for rule in incidents.KINDS:
            samples.add_events(rule, name, labels[rule][name])
        if setup.anomalies is not None:
            samples.add_events("anomaly", name, _anomaly_events(w, origins, setup.anomalies.get(w.server, ()), steps))


def _probability_origins(n_steps: int, part: str, every: int, test_fraction: float) -> np.ndarray:
    """Origins of the test part (as the scores), or of the training part with every target before
    the test part starts ("train": where a recalibration is fitted, never on what it is judged on)."""
    if part == "test":
        return rolling_origins(n_steps, test_fraction=test_fraction, every=every)
    first_test = max(math.ceil((1.0 - test_fraction) * n_steps), CONTEXT)
    return np.arange(CONTEXT, first_test - HORIZON + 1, every, dtype=np.int64)


def probability_evaluation(
    series: list[SeriesWindow],
    forecaster,
    *,
    metrics: Sequence[str] | Mapping[str, str | Sequence[str]] | None = None,
    anomalies: Mapping[str, Sequence[tuple[datetime, datetime]]] | None = None,
    recalibration: Mapping[str, dict] | None = None,
    thresholds: Mapping[str, dict] | None = None,
    event_model: dict | None = None,
    min_buckets: int = incidents.DEFAULT_MIN_BUCKETS,
    every: int = PROB_EVERY,
    test_fraction: float = TEST_FRACTION,
    part: str = "test",
    fleets: Mapping[str, str] | None = None,
    live: lc.LiveMapConfig | None = None,
    blend: Mapping | None = None,
) -> dict[str, Any]:
    """Reliability of prob_30m / prob_8h at origins every ``every`` steps over the test part against
    the incidents of engine.incidents ("threshold", "reported", "incident" = either kind starts in
    the window) and labelled anomalies ("anomaly", when ``anomalies`` maps series → [start, end]
    spans): the bound of engine.probability raw, with the served interval calibration
    ("calibrated") and through a folder's isotonic ``recalibration`` ("recalibrated"), pooled over
    all samples; and what is served ("served": the folder's ``event_model`` when it has one, else
    the recalibrated or calibrated bound) with families weighted equally and per family.
    ``served`` is that probability through the service's live maps (engine.live_calibration,
    settings ``live``, default the service's defaults) replayed online: each fleet (``fleets``: series
    → fleet name, e.g. its --csv-dir; default one fleet) on its own clock (``origin_clock``), an
    outcome joining the maps at the first hourly refit after its window closed and counting ``every``
    times (the service records an outcome every 5-minute origin); ``event_model`` (or
    ``prior`` without one) is the folder's probability alone, ``bound`` the method before the event
    model (the calibrated bound through the folder's isotonic map, if any), both scored the same way.
    ``forecaster`` must give all its quantiles: ``predict_array(windows)`` (B, H, M, K) and
    ``quantiles`` (K levels). ``part="train"`` samples the training part instead (see
    ``fit_probability_recalibration``)."""
    setup = ProbabilitySetup(
        tuple(forecaster.quantiles),
        thresholds or DEFAULT_THRESHOLDS,
        anomalies,
        recalibration,
        event_model,
        min_buckets,
        clocks=fleet_clocks(series, fleets),
        every=every,
        live=live or lc.LiveMapConfig(),
        blend=blend,
    )
    samples = _ProbSamples(recalibration, setup)
    n = _sample_probabilities(
        samples, series, forecaster, _scored_metrics(series, metrics), setup, (part, every, test_fraction)
    )
    served_by = "event_model" if event_model is not None else ("recalibrated" if recalibration else "calibrated")
    live_map = {"prior_weight": setup.live.prior_weight, "half_life_hours": setup.live.half_life_hours,
                "profile_min_outcomes": setup.live.profile_min_outcomes,
                "slope_prior_factor": setup.live.slope_prior_factor, "refit_every_s": lc.REPLAY_REFIT_SECONDS,
                "outcome_weight": every,
                "fleets": sorted({f for f, _ in setup.clocks.values()}),
                "date_less_fleets": sorted({f for f, dated in setup.clocks.values() if not dated})}  # fmt: skip
    return {"origins": n, "every_minutes": every * STEP_MINUTES, "rules": PROBABILITY_RULES, "min_buckets": min_buckets,
            "served_by": f"{served_by} + live map", "live_map": live_map, **samples.report()}  # fmt: skip


def _sample_probabilities(samples: _ProbSamples, series, forecaster, scored: dict, setup: ProbabilitySetup,
                          where: tuple) -> int:  # fmt: skip
    """Forecast every series at its probability origins and add their probabilities and events."""
    part, every, test_fraction = where
    n = 0
    for w in series:
        origins = _probability_origins(len(w.values), part, every, test_fraction)
        if not len(origins):
            continue
        q = forecaster.predict_array([context_window(w, int(o)) for o in origins])
        _series_probabilities(samples, w, [METRICS.index(m) for m in scored[w.server]], origins, q, setup)
        n += len(origins)
    logger.info("probabilities: %d origins (%s part)", n, part)
    return n


def fit_probability_recalibration(
    series: list[SeriesWindow], forecaster, *, part: str = "train", fraction: float = TEST_FRACTION, **kwargs
) -> dict[str, Any]:
    """The isotonic maps (window → {"x", "y"}) from served (interval-calibrated) probabilities to
    the observed frequency of the "incident" event (engine.incidents); what a model folder stores
    as probability_calibration.json. ``part="train"``: origins before the last ``fraction`` of each
    series (the backtest's test part stays unseen); ``part="test"`` with the training's
    val_fraction: the validation tail a training run held out."""
    samples = _ProbSamples(None)
    setup = ProbabilitySetup(tuple(forecaster.quantiles), kwargs.get("thresholds") or DEFAULT_THRESHOLDS)
    where = (part, kwargs.get("every", PROB_EVERY), fraction)
    n = _sample_probabilities(samples, series, forecaster, _scored_metrics(series, kwargs.get("metrics")), setup, where)
    windows = {}
    for name in PROB_WINDOWS:
        p = np.concatenate(samples.p[("calibrated", name)])
        e = np.concatenate(samples.events[("incident", name)])
        windows[name] = fit_isotonic(p, e)
    return {"rule": PROBABILITY_RULES["incident"], "origins": n, "part": part, "fraction": fraction, "windows": windows}
