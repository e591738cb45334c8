"""Incident probabilities and alert limits from forecast quantiles. Pure numpy.

Incident probability. For each step t the forecast gives quantiles q_1 < … < q_K at levels
τ_1 < … < τ_K. Its CDF F_t is interpolated linearly between them, with exponential tails beyond
the outer ones whose scale matches the two outermost quantiles on each side
(b = (q_K − q_{K−1}) / ln((1 − τ_{K−1}) / (1 − τ_K)), so P(X > c) = (1 − τ_K)·exp(−(c − q_K)/b)).
P(metric m crosses its critical threshold c_m within a window W) = max over t in W of
(1 − F_t(c_m)): steps of one forecast are strongly dependent, so we take the comonotone bound
rather than multiplying steps as if independent (which would drive every long window to 1).
A server's probability combines its metrics as independent:
p_server(W) = 1 − Π_m (1 − p_m(W)). The fleet's is the probability that at least one server has an
incident, with servers independent: p_fleet(W) = 1 − Π_s (1 − p_server,s(W)).
W = the first STEPS_30M steps for prob_30m and the whole horizon for prob_8h.

Recalibration. How well these probabilities match what happens is measured by the backtest
(`backtest.probability_evaluation`: event = an observed bucket of the server reaches a critical
limit within the window). The comonotone bound is conservative for the 30-minute window and
underconfident over 8 hours, so a model folder may carry `probability_calibration.json`: per window,
an isotonic (monotone, pool-adjacent-violators) map from this raw server probability to the observed
frequency, fitted on validation forecasts. Serving applies it to each server's prob_30m / prob_8h
(`recalibrated`); folders without the file serve the raw probabilities. Per-metric probabilities in
the forecast summary stay raw (they rank metrics, they are not the calibrated figure).

Fleet figures (issue 22). The headline is the expected number of servers with an incident,
``expected_incidents_W = Σ_s p_s(W)`` over the served (calibrated) probabilities; the fleet product
P(any server) saturates at 100 % on any large fleet, healthy or not, and is kept as a secondary figure.
Fleet health is derived from the expected incidents, the per-server probabilities and the open
alerts, so the tiles never contradict the alert count (`fleet_health`):
``critical`` when a critical alert is open, some server's prob_30m ≥ 0.5, or the fleet expects
≥ 1 incident within 30 minutes; else ``warning`` when a warning alert is open, some server's
prob_8h ≥ 0.5, or the fleet expects ≥ max(1, servers / 20) incidents within 8 hours (more than
one per 20 servers); else ``healthy``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from forecasting.engine.spec import STEP_MINUTES

STEPS_30M = 30 // STEP_MINUTES
HIGH_RISK_PROB = 0.5
CRITICAL_PROB_30M = 0.5
RELATIVE_PERCENTILE = 95  # relative limits are multiples of a server's 95th percentile over its context


def _percentile_rows(values: np.ndarray, q: float) -> np.ndarray:
    """(N,) the q-th percentile of each row of values (N, T), ignoring NaN, 0 for a row with none:
    np.nanpercentile's value, but np.percentile (vectorised) for the rows without gaps — nanpercentile
    goes row by row, 0.15 s of a 500-server chunk's alert phase for the relative limits alone."""
    level = np.percentile(values, q, axis=1)
    gaps = np.isnan(level)
    if gaps.any():
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a row with no value at all: 0 below
            level[gaps] = np.nanpercentile(values[gaps], q, axis=1)
    return np.nan_to_num(level, nan=0.0)


def limits_batch(context: np.ndarray, thresholds: dict, metrics: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Warning and critical limits (N, M) for contexts (N, T, M) with NaN gaps: absolute, or
    relative rules times each server's 95th percentile of its context, never below `floor`."""
    n = context.shape[0]
    warning = np.empty((n, len(metrics)))
    critical = np.empty((n, len(metrics)))
    for m, metric in enumerate(metrics):
        rule = thresholds[metric]
        if rule["relative"]:
            level = _percentile_rows(context[:, :, m], RELATIVE_PERCENTILE)
            floor = float(rule.get("floor", 0.0))
            warning[:, m] = np.maximum(floor, rule["warning"] * level)
            critical[:, m] = np.maximum(floor, rule["critical"] * level)
        else:
            warning[:, m] = rule["warning"]
            critical[:, m] = rule["critical"]
    return warning, critical


def exceedance(quantiles: np.ndarray, levels: np.ndarray, threshold: float | np.ndarray) -> np.ndarray:
    """P(X > threshold) for each row of quantiles (..., K) at `levels` (K,), interpolated as documented."""
    q = np.asarray(quantiles, dtype=np.float64)
    tau = np.asarray(levels, dtype=np.float64)
    c = np.broadcast_to(np.asarray(threshold, dtype=np.float64), q.shape[:-1])[..., None]
    k = q.shape[-1]
    tiny = 1e-9
    # Interior: linear interpolation of the CDF between bracketing quantiles.
    idx = np.clip((q <= c).sum(axis=-1, keepdims=True), 1, k - 1)  # bracket (idx-1, idx)
    q_lo = np.take_along_axis(q, idx - 1, axis=-1)
    q_hi = np.take_along_axis(q, idx, axis=-1)
    t_lo = tau[idx - 1]
    t_hi = tau[idx]
    frac = np.clip((c - q_lo) / np.maximum(q_hi - q_lo, tiny), 0.0, 1.0)
    cdf = t_lo + (t_hi - t_lo) * frac
    # Upper tail beyond q_K.
    b_hi = np.maximum(q[..., -1:] - q[..., -2:-1], tiny) / math.log((1 - tau[-2]) / (1 - tau[-1]))
    upper = 1 - (1 - tau[-1]) * np.exp(-np.maximum(c - q[..., -1:], 0) / b_hi)
    cdf = np.where(c > q[..., -1:], upper, cdf)
    # Lower tail below q_1.
    b_lo = np.maximum(q[..., 1:2] - q[..., :1], tiny) / math.log(tau[1] / tau[0])
    lower = tau[0] * np.exp(-np.maximum(q[..., :1] - c, 0) / b_lo)
    cdf = np.where(c < q[..., :1], lower, cdf)
    return np.clip(1.0 - cdf[..., 0], 0.0, 1.0)


def incident_probabilities(quantiles: np.ndarray, levels: np.ndarray, critical: np.ndarray) -> dict:
    """Forecasts (N, H, M, K) and critical limits (N, M) → per-metric (N, M) and per-server (N,)
    probabilities for the 30-minute and 8-hour windows, as documented above."""
    per_step = exceedance(quantiles, levels, critical[:, None, :])  # (N, H, M)
    p30_metric = per_step[:, :STEPS_30M].max(axis=1)
    p8h_metric = per_step.max(axis=1)
    return {
        "metric_30m": p30_metric,
        "metric_8h": p8h_metric,
        "prob_30m": 1 - np.prod(1 - p30_metric, axis=1),
        "prob_8h": 1 - np.prod(1 - p8h_metric, axis=1),
    }



def fit_isotonic(p: np.ndarray, event: np.ndarray, *, knots: int = 50) -> dict[str, list[float]]:
    """Isotonic regression of 0/1 outcomes on probabilities (pool adjacent violators), as a
    piecewise-linear map {"x": […], "y": […]} of at most ``knots`` points (quantiles of p)."""
    p = np.asarray(p, dtype=np.float64)
    e = np.asarray(event, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    blocks: list[list[float]] = []  # [sum of outcomes, weight, sum of p]
    for pi, ei in zip(p[order], e[order], strict=True):
        blocks.append([ei, 1.0, pi])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
            last = blocks.pop()
            blocks[-1] = [blocks[-1][0] + last[0], blocks[-1][1] + last[1], blocks[-1][2] + last[2]]
    x = np.array([b[2] / b[1] for b in blocks])
    y = np.array([b[0] / b[1] for b in blocks])
    if len(x) > knots:
        keep = np.unique(np.linspace(0, len(x) - 1, knots).round().astype(np.int64))
        x, y = x[keep], y[keep]
    return {"x": np.round(x, 6).tolist(), "y": np.round(y, 6).tolist()}


def recalibrated(p: np.ndarray, table: dict | None) -> np.ndarray:
    """Probabilities through a fitted isotonic map (unchanged when ``table`` is None)."""
    p = np.asarray(p, dtype=np.float64)
    if not table or not table.get("x"):
        return p
    return np.clip(np.interp(p, table["x"], table["y"]), 0.0, 1.0)


EXPECTED_30M_CRITICAL = 1.0  # expected incidents within 30 min that make the fleet critical
SERVERS_PER_EXPECTED_8H = 20  # warning above one expected incident per this many servers within 8 h


def fleet_health(*, expected_30m: float, expected_8h: float, max_30m: float, max_8h: float, servers: int,
                 critical_alerts: int = 0, warning_alerts: int = 0) -> str:  # fmt: skip
    """The documented rule (module docstring): alerts, per-server and expected-incident cut-offs."""
    if critical_alerts > 0 or max_30m >= CRITICAL_PROB_30M or expected_30m >= EXPECTED_30M_CRITICAL:
        return "critical"
    if (warning_alerts > 0 or max_8h >= HIGH_RISK_PROB
            or expected_8h >= max(1.0, servers / SERVERS_PER_EXPECTED_8H)):  # fmt: skip
        return "warning"
    return "healthy"


def fleet_environment(server_probs: list[tuple[float, float]], *, critical_alerts: int = 0,
                      warning_alerts: int = 0) -> dict:  # fmt: skip
    """The contract's `environment` from each server's served (prob_30m, prob_8h) and the open
    alerts' counts by severity."""
    p30 = np.array([p[0] for p in server_probs], dtype=np.float64)
    p8h = np.array([p[1] for p in server_probs], dtype=np.float64)
    fleet_30m = float(1 - np.prod(1 - p30)) if p30.size else 0.0
    fleet_8h = float(1 - np.prod(1 - p8h)) if p8h.size else 0.0
    high_risk = int((p8h >= HIGH_RISK_PROB).sum())
    health = fleet_health(expected_30m=float(p30.sum()), expected_8h=float(p8h.sum()),
                          max_30m=float(p30.max(initial=0.0)), max_8h=float(p8h.max(initial=0.0)),
                          servers=len(server_probs), critical_alerts=critical_alerts,
                          warning_alerts=warning_alerts)  # fmt: skip
    return {
        "prob_30m": round(fleet_30m, 4),
        "prob_8h": round(fleet_8h, 4),
        "expected_incidents_30m": round(float(p30.sum()), 4),
        "expected_incidents_8h": round(float(p8h.sum()), 4),
        "high_risk_servers": high_risk,
        "total_servers": len(server_probs),
        "fleet_health": health,
    }
