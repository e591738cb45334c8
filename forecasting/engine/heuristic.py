"""The fallback forecast, used when there is no model, it fails to load, or it cannot handle a server.

Per metric: level = mean of the last 6 buckets (30 min); trend = least-squares slope over the
last 12 buckets (1 h), damped by φ = 0.95 per step so it flattens out instead of running away;
spread = standard deviation of one-step changes over the context, widening with √h (capped at
√HORIZON). Quantile τ at step h is median + z_τ · spread · √h. Values are clipped to each metric's range.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from forecasting.engine.inputs import METRIC_RANGES
from forecasting.engine.series import SeriesWindow
from forecasting.engine.spec import HORIZON, QUANTILES, TARGETS

PHI = 0.95
LEVEL_STEPS = 6
TREND_STEPS = 12
_Z = np.array([NormalDist().inv_cdf(q) for q in QUANTILES])
_DAMPED = np.cumsum(PHI ** np.arange(1, HORIZON + 1))  # Σ φ^i, i = 1..h
_WIDEN = np.sqrt(np.minimum(np.arange(1, HORIZON + 1), HORIZON))


def heuristic_quantiles(window: SeriesWindow) -> np.ndarray:
    """(HORIZON, n_metrics, n_quantiles) at spec.QUANTILES."""
    out = np.empty((HORIZON, len(TARGETS), len(QUANTILES)), dtype=np.float64)
    for m, metric in enumerate(TARGETS):
        x = window.values[:, m].astype(np.float64)
        x = x[np.isfinite(x)]
        if x.size == 0:
            x = np.zeros(1)
        level = x[-LEVEL_STEPS:].mean()
        recent = x[-TREND_STEPS:]
        slope = np.polyfit(np.arange(recent.size), recent, 1)[0] if recent.size >= 3 else 0.0
        diffs = np.diff(x)
        spread = diffs.std() if diffs.size >= 2 else 0.0
        spread = max(spread, 0.02 * abs(level), 1e-3)
        median = level + slope * _DAMPED
        out[:, m, :] = median[:, None] + _Z[None, :] * spread * _WIDEN[:, None]
        low, high = METRIC_RANGES[metric]
        np.clip(out[:, m, :], low, high if math.isfinite(high) else None, out=out[:, m, :])
    return out
