"""Generic synthetic series for training: varied, real-looking single-metric behaviour (level
shifts, spikes, heavy-tailed and autocorrelated noise, optional daily/weekly cycles, trends, idle
zeros), so the model generalises beyond the simulator's fleet and a handful of real series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from forecasting.engine.inputs import UNKNOWN
from forecasting.engine.series import SeriesWindow
from forecasting.engine.spec import CRITICAL_PCT, METRICS, PERCENT_METRICS, STEP_MINUTES


def _generic_path(rng: np.random.Generator, n: int, step_minutes: int, bounded: bool) -> np.ndarray:
    per_day = 1440 // step_minutes
    t = np.arange(n)
    level = rng.uniform(0.5, 85.0) if bounded else float(np.exp(rng.uniform(np.log(1e-2), np.log(1e6))))
    if bounded and rng.random() < 0.3:
        level = rng.uniform(0.05, 3.0)  # nearly idle CPU
    rel_sd = float(np.exp(rng.uniform(np.log(0.005), np.log(0.4))))
    phi = rng.uniform(0.0, 0.97)
    eps = rng.standard_t(df=rng.uniform(2.5, 30.0), size=n)
    noise = np.empty(n)
    acc = 0.0
    for i in range(n):  # AR(1), n is a few thousand
        acc = phi * acc + eps[i]
        noise[i] = acc
    noise *= np.sqrt(1 - phi**2) * rel_sd
    mult = np.ones(n)
    if rng.random() < 0.6:  # daily cycle, optionally lighter weekends
        amp = rng.uniform(0.05, 0.7)
        phase = rng.uniform(0, 2 * np.pi)
        shape = np.sin(2 * np.pi * t / per_day + phase)
        if rng.random() < 0.5:
            shape = np.maximum(shape, rng.uniform(-1, 0.3))  # business-hours plateau
        mult *= 1 + amp * shape
        if rng.random() < 0.3:
            day = (t // per_day + rng.integers(7)) % 7
            mult *= np.where(day >= 5, rng.uniform(0.4, 0.95), 1.0)
    shifts = rng.poisson(rng.uniform(0, 4) * n / (7 * per_day))
    for _ in range(shifts):  # persistent level shifts
        at = rng.integers(n)
        mult[at:] *= float(np.exp(rng.normal(0, 0.6)))
    if rng.random() < 0.25:  # slow trend
        mult *= np.exp(np.linspace(0, rng.normal(0, 0.5), n))
    x = level * mult * (1 + noise)
    spike_rate = float(np.exp(rng.uniform(np.log(1e-4), np.log(0.05))))
    starts = np.nonzero(rng.random(n) < spike_rate)[0]
    for s in starts:  # transient spikes
        d = int(rng.integers(1, 8))
        x[s : s + d] *= float(np.exp(rng.uniform(0.3, 3.0)))
    if not bounded and rng.random() < 0.2:  # idle periods at exactly zero
        x[rng.random(n) < rng.uniform(0.05, 0.6)] = 0.0
    return _finish(rng, np.maximum(x, 0.0), level, bounded)


def _finish(rng: np.random.Generator, x: np.ndarray, level: float, bounded: bool) -> np.ndarray:
    """Saturation kept occasional for percentages, and optionally quantised readings."""
    if bounded:
        p90 = float(np.quantile(x, 0.9))
        if p90 > CRITICAL_PCT:  # keep saturation occasional, not the norm
            x *= rng.uniform(0.5, 0.95) * CRITICAL_PCT / p90
        x = np.minimum(x, 100.0)
    if rng.random() < 0.3:  # quantised readings
        q = 10 ** np.floor(np.log10(max(level, 1e-6)) - rng.integers(1, 3))
        x = np.round(x / q) * q
    return x.astype(np.float32)


def load_generic_series(
    n_series: int, days: float, seed: int, step_minutes: int = STEP_MINUTES
) -> list[SeriesWindow]:
    """``n_series`` generic synthetic series (profile "generic"); about half carry a single metric
    (the others 0.0, like NAB-layout CSVs), the rest all four (independent behaviours)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7919]))
    n = int(days * 1440 // step_minutes)
    end = datetime(2026, 1, 5, tzinfo=UTC)
    start = end - timedelta(minutes=step_minutes * n)
    out = []
    for _ in range(n_series):
        values = np.zeros((n, len(METRICS)), dtype=np.float32)
        slots = [int(rng.integers(len(METRICS)))] if rng.random() < 0.5 else list(range(len(METRICS)))
        for m in slots:
            values[:, m] = _generic_path(rng, n, step_minutes, METRICS[m] in PERCENT_METRICS)
        if rng.random() < 0.2:  # some gaps
            for _ in range(int(rng.integers(1, 5))):
                at = int(rng.integers(n))
                values[at : at + int(rng.integers(1, 30))] = np.nan
        # anonymous: no server embedding to learn, they train the "unknown server" path
        out.append(SeriesWindow(UNKNOWN, "generic", start, step_minutes, values))
    return out
