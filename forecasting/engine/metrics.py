"""The forecast metrics that live scoring and the backtest share, in one place: pinball loss, the
in-sample naive scale (the MASE denominator) and the last observed value (the naive forecast).
Numpy only. NaN marks a missing bucket everywhere."""

from __future__ import annotations

import math

import numpy as np


def pinball(y: np.ndarray, q_pred: np.ndarray, level: float) -> np.ndarray:
    """Pinball (quantile) loss, elementwise."""
    diff = y - q_pred
    return np.maximum(level * diff, (level - 1.0) * diff)


def naive_scale(y: np.ndarray) -> float:
    """In-sample one-step naive MAE (mean |y[t] − y[t−1]| over observed pairs); NaN if none."""
    d = np.abs(np.diff(np.asarray(y, dtype=np.float64)))
    d = d[~np.isnan(d)]
    return float(d.mean()) if len(d) else math.nan


def naive_scales(values: np.ndarray) -> np.ndarray:
    """(T, M) with NaN gaps → (M,) in-sample 1-step naive MAE: mean |y[t] − y[t−1]| over pairs
    of consecutive observed buckets (NaN where there is no pair). `naive_scale`, per column."""
    d = np.abs(np.diff(np.asarray(values, dtype=np.float64), axis=0))
    ok = np.isfinite(d)
    count = ok.sum(axis=0)
    total = np.where(ok, d, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def last_observed(values: np.ndarray) -> np.ndarray:
    """(..., T, M) with NaN gaps → (..., M): the last finite value along T (NaN where none)."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    last_idx = values.shape[-2] - 1 - np.argmax(np.flip(finite, axis=-2), axis=-2)
    last = np.take_along_axis(values, np.expand_dims(last_idx, -2), axis=-2)[..., 0, :]
    return np.where(finite.any(axis=-2), last, np.nan)
