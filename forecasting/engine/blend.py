"""Never worse than the last value: a per-band combination of the model's quantiles with persistence.

Persistence (``persistence_quantiles``) is the last observed value with its own empirical spread:
at forecast step h (0-based: the target is h + 1 steps after the last observed bucket) its
quantile τ is last + the τ-quantile of the (h + 1)-step changes y[t + h + 1] − y[t] seen in the
context (p50 is the last value itself). It needs only the context a forecast is made from.

The served forecast at step h of band b is the quantile average

    q(τ) = w_b · q_model(τ) + (1 − w_b) · q_persistence(τ)

(both sides sorted, so the blend is sorted). Pinball loss is convex in the quantile, so for any w
the blend's loss is at most the w-weighted mean of the two losses; with w = 0 and w = 1 on the
grid, the weight fitted on a set of windows is never worse there than the better component.

Served, w_b is not a step function of the horizon: across each band edge it ramps linearly from one
band's weight to the next (spec.BAND_RAMP_STEPS / BAND_RAMP_LEAD: from 3 steps before the 30-minute
edge to 3 after, 6 either side of the 2-hour one), because a step made 85–95 % of served forecasts
jump 15–60 × a usual step at 30 minutes. The ramp gives up the guarantee above where the better
component switches abruptly at an edge; chosen on development series' test parts, it scored as well
or better in every band (bench.blend_strength --ramps, bench/results/blend_ramps_dev.json).

Weights (``fit_weights``): per band and per metric (a fleet's mem_pct drifts where cpu_pct jumps),
the grid value with the lowest scaled pinball loss over p10/p50/p90 on validation windows,
families weighted equally (each family's mean loss relative to persistence's, then the mean over
families). They are stored as JSON in the model folder (``folders.read_blend``).

Online, per server × metric (``OnlineBlend``): each band's weight moves with the evidence of that
server's own served forecasts, from exactly the sums the live scorer keeps per server × metric ×
band (engine.scoring: n, abs_err = Σ|y − served p50|, naive_abs_err = Σ|y − last|, scale = Σ s
over the same targets). d = (abs_err − naive_abs_err) / scale is how much worse (in units of the
series' one-step naive error) the served median did than the last value, and

    w = sigmoid(logit(w_fit) − STRENGTH · min(n, RAMP) / RAMP · d)

so a server whose served forecast loses to the last value in a band leans further on the last
value there, one where it wins leans back towards the model, and neither before about RAMP
targets of evidence. As w falls the served median nears the last value and d nears 0: the move
settles instead of running away.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from forecasting.engine import spec
from forecasting.engine.spec import BAND_NAMES, HORIZON, HORIZON_BANDS

BAND_OF_STEP = np.asarray(spec.BAND_OF_STEP, dtype=np.int64)  # spec's, as an index array
STEP_MIX = np.asarray(spec.STEP_MIX, dtype=np.float64)  # (bands, HORIZON): each band's share of each step
GRID = np.round(np.linspace(0.0, 1.0, 21), 2)  # weights of the model, 0 = persistence only
BLEND_FORMAT = "tftsite-blend/1"
# Online move (chosen on development series only, see the README): the logit shift per unit of
# scaled MAE difference once RAMP targets have been seen; the weight stays in [W_MIN, 1 − W_MIN].
STRENGTH = 4.0
RAMP = 144
W_MIN = 0.02
SUMS: tuple[str, ...] = ("n", "abs_err", "naive_abs_err", "scale")  # names as in engine.scoring.SUMS


def persistence_quantiles(
    context: np.ndarray,
    levels: Sequence[float],
    horizon: int = HORIZON,
    *,
    lower: float | np.ndarray = 0.0,
    upper: float | np.ndarray = math.inf,
    workers: int = 1,
) -> np.ndarray:
    """(..., horizon, K) quantiles at ``levels`` of the last value with the context's own (h+1)-step
    changes (module docstring), for one context (C,) or many (..., C); NaN gaps are skipped, no
    observed value gives NaN. lower/upper broadcast against the leading shape. Many contexts at once
    give exactly what each gives alone (the prediction run serves a chunk, the backtest a series);
    ``workers`` threads share the contexts (numpy sorts without the GIL), the result is the same."""
    y = np.asarray(context, dtype=np.float64)
    lead = y.shape[:-1]
    flat = y.reshape(math.prod(lead), y.shape[-1])
    tau = np.asarray(levels, dtype=np.float64)
    out = np.full((len(flat), horizon, len(tau)), np.nan)
    starts = range(0, len(flat), _PERSISTENCE_BATCH)

    def fill(part: range) -> None:
        shape = (min(len(flat), _PERSISTENCE_BATCH), horizon, max(flat.shape[-1] - 1, 1))
        buffer = np.empty(shape, dtype=_CHANGES_DTYPE)  # one per thread, reused: no page faults
        for start in part:
            batch = flat[start : start + _PERSISTENCE_BATCH]
            out[start : start + _PERSISTENCE_BATCH] = _persistence_batch(batch, tau, horizon, buffer[: len(batch)])

    workers = max(1, min(workers, len(starts)))
    if workers == 1:
        fill(starts)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(fill, [starts[i::workers] for i in range(workers)]))
    out = out.reshape(*lead, horizon, len(tau))
    lo = np.asarray(lower, dtype=np.float64)[..., None, None]
    hi = np.asarray(upper, dtype=np.float64)[..., None, None]
    return np.minimum(np.maximum(out, lo, out=out), hi, out=out)  # np.clip, in place


_PERSISTENCE_BATCH = 32  # contexts sorted at once: (32, H, C) changes stay in cache
# The changes are sorted as float32: numpy's SIMD sort of 4-byte floats is ~3.5 × faster than of
# 8-byte ones, and the sort is most of a prediction run's blend phase (96 steps × 287 changes per
# series). Rounding is monotone, so the float32 order statistics are exactly the float64 ones
# rounded (relative error ≤ 6e-8, far below the 2 decimals a forecast is served with); the
# interpolation between them and the last value stay float64.
_CHANGES_DTYPE = np.float32


def _persistence_batch(y: np.ndarray, tau: np.ndarray, horizon: int, changes: np.ndarray) -> np.ndarray:
    """(B, horizon, K) unclipped persistence quantiles of the contexts y (B, n); ``changes`` is
    scratch space (B, horizon, max(n − 1, 1)), of _CHANGES_DTYPE."""
    b, n = y.shape
    out = np.full((b, horizon, len(tau)), np.nan)
    finite = np.isfinite(y)
    has = finite.any(axis=1)
    if not n or not has.any():
        return out
    last = y[np.arange(b), n - 1 - np.argmax(finite[:, ::-1], axis=1)]
    # changes[:, h, t] = y[t + h + 1] − y[t] for t < n − h − 1, NaN past the context's end; built
    # in (B, horizon, n − 1) order so each step's changes are sorted along contiguous memory.
    rows = changes.shape[-1]
    padded = np.concatenate([y, np.full((b, horizon + rows), np.nan)], axis=1)
    later = np.lib.stride_tricks.sliding_window_view(padded[:, 1:], rows, axis=1)[:, :horizon]  # (B, horizon, rows)
    np.subtract(later, padded[:, None, :rows], out=changes)
    # observed changes per step: n − 1 − h without gaps, else the pairs of finite values (0/1 sums, exact)
    count = np.broadcast_to(np.maximum(n - 1 - np.arange(horizon), 0), (b, horizon)).copy()
    gaps = ~finite.all(axis=1)
    if gaps.any():
        seen = np.concatenate([finite[gaps], np.zeros((int(gaps.sum()), horizon + rows), dtype=bool)], axis=1)
        seen = seen.astype(np.float64)
        pairs = np.lib.stride_tricks.sliding_window_view(seen[:, 1:], rows, axis=1)[:, :horizon]
        count[gaps] = np.matmul(pairs, seen[:, :rows, None])[..., 0].astype(np.int64)
    changes.sort(axis=-1)  # NaN last
    with np.errstate(all="ignore"):
        spread = _sorted_quantiles(changes, count, tau)  # (B, horizon, K)
    spread = _fill_forward(spread)
    spread[..., np.isclose(tau, 0.5)] = 0.0
    below = tau < 0.5
    spread[..., below] = np.minimum(spread[..., below], 0.0)
    spread[..., ~below] = np.maximum(spread[..., ~below], 0.0)
    q = np.sort(last[:, None, None] + spread, axis=-1)
    out[has] = q[has]
    return out


def _sorted_quantiles(srt: np.ndarray, count: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """Quantiles (..., K) of sorted rows srt (..., N) whose first ``count`` (...) values are the
    observed ones (NaN after them), linear interpolation; NaN where none is observed."""
    count = count[..., None]
    pos = tau * np.maximum(count - 1, 0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(count - 1, 0))
    v = np.take_along_axis(srt, lo, axis=-1) * (1 - (pos - lo)) + np.take_along_axis(srt, hi, axis=-1) * (pos - lo)
    return np.where(count > 0, v, np.nan)


def _fill_forward(q: np.ndarray) -> np.ndarray:
    """Steps without any observed change take the nearest shorter step's spread (else 0); q is
    (B, horizon, K)."""
    out = q.copy()
    if not np.isnan(out).any():  # a context longer than the horizon without gaps
        return out
    for h in range(1, out.shape[1]):
        gap = np.isnan(out[:, h])
        out[:, h][gap] = out[:, h - 1][gap]
    return np.nan_to_num(out, nan=0.0)


def step_weights(weights: Sequence[float], horizon: int = HORIZON) -> np.ndarray:
    """(horizon,) the model's weight at each forecast step from the per-band weights (ramped
    between bands: spec.BAND_RAMP_STEPS)."""
    return np.asarray(weights, dtype=np.float64) @ STEP_MIX[:, :horizon]


def blend_quantiles(model: np.ndarray, persistence: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """The served combination (..., H, K) of model and persistence quantiles (..., H, K) with the
    model's per-band ``weights`` (broadcast against the leading shape: (..., bands)), ramped from
    one band's weight to the next across each band edge (spec.STEP_MIX)."""
    model = np.asarray(model, dtype=np.float64)
    w = (np.asarray(weights, dtype=np.float64) @ STEP_MIX[:, : model.shape[-2]])[..., None]  # (..., H, 1)
    return w * model + (1.0 - w) * np.asarray(persistence, dtype=np.float64)


def served_blend(
    model: np.ndarray,
    context: np.ndarray,
    levels: Sequence[float],
    weights: np.ndarray,
    *,
    lower: float | np.ndarray = 0.0,
    upper: float | np.ndarray = math.inf,
    workers: int = 1,
) -> np.ndarray:
    """What is served before the interval calibration, in the backtest (``ServedSeries``) and in the
    prediction run alike: the model's quantiles (..., H, K) blended per band by ``weights``
    (..., bands) with the persistence quantiles of each series' context (..., C). A series without
    any observed value in its context, or whose weights are all 1, is served the model alone
    (1 · model + 0 · persistence is the model: persistence is not computed for it). ``workers``:
    threads for the persistence quantiles (the same result)."""
    model = np.asarray(model, dtype=np.float64)
    lead = model.shape[:-2]
    weights = np.broadcast_to(np.asarray(weights, dtype=np.float64), (*lead, len(BAND_NAMES)))
    context = np.asarray(context, dtype=np.float64).reshape(*lead, -1)
    need = (weights < 1.0).any(axis=-1) & np.isfinite(context).any(axis=-1)
    persistence = model.copy()
    if need.any():
        lo, hi = (np.broadcast_to(np.asarray(b, dtype=np.float64), lead)[need] for b in (lower, upper))
        persistence[need] = persistence_quantiles(context[need], levels, model.shape[-2], lower=lo, upper=hi,
                                                  workers=workers)
    return blend_quantiles(model, persistence, weights)


def default_blend() -> dict:
    """The blend of a folder without blend.json: the model alone (every weight 1)."""
    return {"format": BLEND_FORMAT, "weights": dict.fromkeys(BAND_NAMES, 1.0), "strength": 0.0, "ramp": RAMP}


def weights_of(blend: Mapping, metric: str | None = None) -> np.ndarray:
    """(bands,) the model's weights in BAND_NAMES order: the metric's own where the blend has them,
    else those fitted over every metric."""
    weights = blend.get("per_metric", {}).get(metric) or blend["weights"]
    return np.array([float(weights[name]) for name in BAND_NAMES])


def blend_weights(blend: Mapping, metric: str | None, sums: np.ndarray) -> np.ndarray:
    """(…, bands) the weights served for ``metric`` given the evidence ``sums`` (…, bands, 4): the
    blend's fitted weights moved by its strength and ramp (``online_weights``). The backtest's
    OnlineBlend passes the sums it gathered, the prediction run the live scorer's."""
    return online_weights(weights_of(blend, metric), sums, strength=float(blend.get("strength", STRENGTH)),
                          ramp=int(blend.get("ramp", RAMP)))


def served_weights(weights: np.ndarray | None) -> dict[str, list[float]]:
    """The blend a forecast was served with, per band (BAND_NAMES order), as the API shows it:
    {"model": [3], "last_value": [3]} (the weights of the model and of persistence); None (a
    forecast served without a blend: the heuristic) → the model alone."""
    w = np.ones(len(BAND_NAMES)) if weights is None else np.asarray(weights, dtype=np.float64)
    return {"model": np.round(w, 4).tolist(), "last_value": np.round(1.0 - w, 4).tolist()}


# ---------------------------------------------------------------------------------------------
# Fitting on validation windows
class BlendFit:
    """Loss of every grid weight on validation windows, per family and band."""

    def __init__(self, grid: np.ndarray = GRID) -> None:
        self.grid = np.asarray(grid, dtype=np.float64)
        self._sum: dict[tuple[str, int], np.ndarray] = {}  # (family, band) → (G,) Σ window losses
        self._n: dict[tuple[str, int], int] = {}

    def add(self, family: str, y: np.ndarray, model: np.ndarray, persistence: np.ndarray, levels, scale: float) -> None:
        """One window: targets y (H,), model and persistence quantiles (H, K) at ``levels``."""
        if not (scale > 0) or not math.isfinite(scale):
            return
        tau = np.asarray(levels, dtype=np.float64)
        g = self.grid[:, None, None]
        q = g * model[None] + (1.0 - g) * persistence[None]  # (G, H, K)
        diff = y[None, :, None] - q
        loss = np.maximum(tau * diff, (tau - 1.0) * diff).mean(axis=2) / scale  # (G, H)
        for b, (_, first, end) in enumerate(HORIZON_BANDS):
            lb = loss[:, first:end]
            obs = np.isfinite(y[first:end])
            if not obs.any():
                continue
            key = (family, b)
            self._sum[key] = self._sum.get(key, 0.0) + lb[:, obs].mean(axis=1)
            self._n[key] = self._n.get(key, 0) + 1

    def losses(self) -> dict[str, dict[str, list[float]]]:
        """band → family → mean loss per grid weight."""
        out: dict[str, dict[str, list[float]]] = {}
        for (family, b), total in self._sum.items():
            out.setdefault(BAND_NAMES[b], {})[family] = (total / self._n[(family, b)]).tolist()
        return out

    def windows(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for (family, _), n in self._n.items():
            out[family] = max(out.get(family, 0), n)
        return out


def _group(name: str) -> tuple[str, str | None]:
    """A fit group's family and metric: "cpu (simulated) [cpu_pct]" → ("cpu", "cpu_pct")."""
    family, _, metric = name.partition(" [")
    return family.split(" (")[0], (metric.rstrip("]") or None)


def _best(fit: BlendFit, curves: list) -> tuple[float, list[float]]:
    """The grid weight of lowest mean relative loss: each group's loss relative to persistence
    alone (w = 0), so a family whose scale makes its losses tiny still counts as much as any other."""
    rel = [np.asarray(v) / v[0] if v[0] > 0 else np.asarray(v) for v in curves]
    curve = np.mean(np.array(rel), axis=0)
    return float(fit.grid[int(np.argmin(curve))]), [round(float(c), 5) for c in curve]


def fit_weights(fit: BlendFit, families: Iterable[str] | None = None) -> dict:
    """Per band, the grid weight whose loss, families weighted equally (``families``, default all
    present), is lowest — over every group ("weights") and per metric over that metric's groups
    ("per_metric"); returns the blend JSON (weights, the curves they were chosen from, windows).
    A group is a family of one kind ("cpu" and "cpu (simulated)" are two) on one metric."""
    losses = fit.losses()
    weights: dict[str, float] = {}
    per_metric: dict[str, dict[str, float]] = {}
    curves: dict[str, list[float]] = {}
    wanted = set(families) if families is not None else None
    for band in BAND_NAMES:
        groups = {g: v for g, v in losses.get(band, {}).items() if wanted is None or _group(g)[0] in wanted}
        if not groups:
            weights[band] = 1.0
            continue
        weights[band], curves[band] = _best(fit, list(groups.values()))
        for metric in sorted({_group(g)[1] for g in groups} - {None}):
            own = [v for g, v in groups.items() if _group(g)[1] == metric]
            per_metric.setdefault(metric, {})[band] = _best(fit, own)[0]
    return {
        "format": BLEND_FORMAT,
        "weights": weights,
        "per_metric": {m: {band: w.get(band, weights[band]) for band in BAND_NAMES} for m, w in per_metric.items()},
        "strength": STRENGTH,
        "ramp": RAMP,
        "grid": fit.grid.tolist(),
        "families_equal_loss": curves,
        "families_loss": losses,
        "windows": fit.windows(),
    }


# ---------------------------------------------------------------------------------------------
# Online, per server × metric
def online_weights(
    prior: Sequence[float], sums: np.ndarray, *, strength: float = STRENGTH, ramp: int = RAMP
) -> np.ndarray:
    """(…, bands) weights moved from the fitted ``prior`` (bands,) by the evidence ``sums``
    (…, bands, 4) in SUMS order: n, Σ|y − served p50|, Σ|y − last|, Σ scale (module docstring)."""
    sums = np.asarray(sums, dtype=np.float64)
    n, served_err, naive_err, scale = (sums[..., i] for i in range(4))
    with np.errstate(all="ignore"):
        d = np.where(scale > 0, (served_err - naive_err) / scale, 0.0)
    confidence = np.minimum(n, ramp) / ramp
    prior = np.asarray(prior, dtype=np.float64)
    shift = strength * confidence * d
    p = np.clip(prior, W_MIN, 1.0 - W_MIN)
    moved = 1.0 / (1.0 + np.exp(-(np.log(p / (1.0 - p)) - shift)))
    return np.where(shift == 0, prior, moved)  # no evidence (or no move): the fitted weight as it is


def band_sums(y: np.ndarray, p50: np.ndarray, last: float, scale: float, mask: np.ndarray) -> np.ndarray:
    """(bands, 4) sums (SUMS order) of the targets y (H,) selected by ``mask``, against the served
    median ``p50`` (H,) and the last value."""
    ok = mask & np.isfinite(y) & np.isfinite(p50)
    out = np.zeros((len(BAND_NAMES), len(SUMS)))
    if not math.isfinite(last) or not math.isfinite(scale):
        return out
    band = BAND_OF_STEP[: len(y)]
    yv = np.where(ok, y, 0.0)
    cols = (
        ok.astype(np.float64),
        np.where(ok, np.abs(yv - np.nan_to_num(p50)), 0.0),
        np.where(ok, np.abs(yv - last), 0.0),
        np.where(ok, scale, 0.0),
    )
    for c, values in enumerate(cols):
        out[:, c] = np.bincount(band, weights=values, minlength=len(BAND_NAMES))[: len(BAND_NAMES)]
    return out


class OnlineBlend:
    """The backtest's blend of one series × metric, fed in time order without look-ahead.

    ``weights(origin)`` first takes in every target of earlier forecasts known at ``origin``
    (step h of origin o is known once o + h < origin) and not taken in yet, then returns the
    per-band weights to serve at ``origin``; ``record`` hands over a forecast and its targets."""

    def __init__(self, blend: Mapping, metric: str | None = None) -> None:
        self.blend, self.metric = blend, metric
        self.sums = np.zeros((len(BAND_NAMES), len(SUMS)))
        self._pending: list[tuple[int, np.ndarray, np.ndarray, float, float, np.ndarray]] = []

    def weights(self, origin: int) -> np.ndarray:
        keep = []
        for o, y, p50, last, scale, used in self._pending:
            fresh = ((o + np.arange(len(y))) < origin) & ~used
            if fresh.any():
                self.sums += band_sums(y, p50, last, scale, fresh)
                used = used | fresh
            if not used.all():
                keep.append((o, y, p50, last, scale, used))
        self._pending = keep
        return blend_weights(self.blend, self.metric, self.sums)

    def record(self, origin: int, y: np.ndarray, p50: np.ndarray, last: float, scale: float) -> None:
        """The served median (H,) of the forecast at ``origin``, its targets y (H,), the last value
        and the series scale it was served with."""
        y = np.asarray(y, dtype=np.float64)
        self._pending.append((origin, y, np.asarray(p50, dtype=np.float64), last, scale, ~np.isfinite(y)))


class ServedSeries:
    """What a server is served for one metric, origin after origin (the backtest's live rule): the
    model's quantiles blended with persistence by the online weights, then interval-calibrated by
    the calibrator fed with the served intervals' misses; nothing later than the origin is used."""

    def __init__(self, blend: Mapping, calibrator, metric: str | None = None) -> None:
        self.blend = OnlineBlend(blend, metric)
        self.calibrator = calibrator  # calibration.OnlineCalibrator (duck-typed: serve / record)
        self._last: dict[int, tuple[np.ndarray, float]] = {}

    def serve(self, origin: int, model: np.ndarray, context: np.ndarray, levels: Sequence[float], **clip) -> np.ndarray:
        """Served quantiles (H, K) at ``origin`` from the model's (H, K) and the context before it."""
        finite = np.isfinite(np.asarray(context, dtype=np.float64))
        last = float(np.asarray(context, dtype=np.float64)[np.flatnonzero(finite)[-1]]) if finite.any() else math.nan
        mixed = served_blend(model, context, levels, self.blend.weights(origin), **clip)
        median = int(np.argmin(np.abs(np.asarray(levels, dtype=np.float64) - 0.5)))
        self._last[origin] = (mixed[:, median], last)  # the calibration keeps the median
        return self.calibrator.serve(origin, mixed, levels, **clip)

    def record(self, origin: int, y: np.ndarray, served: np.ndarray, scale: float, levels: Sequence[float]) -> None:
        """The served quantiles (H, K) of ``origin`` and its targets y (H,), taken in once known."""
        tau = np.asarray(levels, dtype=np.float64)
        lo, hi = int(np.argmin(np.abs(tau - 0.1))), int(np.argmin(np.abs(tau - 0.9)))
        self.calibrator.record(origin, y, served[:, lo], served[:, hi])
        p50, last = self._last.pop(origin)
        self.blend.record(origin, y, p50, last, scale)
