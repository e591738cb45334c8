"""Thresholds, alert rules and incident probabilities from forecast quantiles. Pure numpy.

Alert rules, per server and metric, over the 96-step horizon:
- `p50_critical` (critical): the median forecast reaches the critical threshold;
- `p50_warning` (warning): the median forecast reaches the warning threshold;
- `p90_early_warning` (warning): the pessimistic p90 reaches the critical threshold while the
  median stays below warning — an early warning that trouble is plausible, not expected.
`steps_ahead` is the first step (1 = the next 5 minutes) at which the rule's quantile reaches its
threshold; `predicted_value` is that quantile's peak over the horizon.

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
W = the first 6 steps for prob_30m and all 96 for prob_8h.

Fleet health looks at servers, not at the fleet product (which grows with fleet size even when
every server is fine): `critical` when some server's prob_30m ≥ 0.5, `warning` when some server is
high-risk (its prob_8h ≥ 0.5), else `healthy`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

STEPS_30M = 6
HIGH_RISK_PROB = 0.5
CRITICAL_PROB_30M = 0.5

DEFAULT_THRESHOLDS: dict[str, dict] = {
    "cpu_pct": {"warning": 85.0, "critical": 95.0, "relative": False, "floor": 0.0},
    "mem_pct": {"warning": 85.0, "critical": 95.0, "relative": False, "floor": 0.0},
    "disk_io_mb_s": {"warning": 1.5, "critical": 2.0, "relative": True, "floor": 10.0},
    "latency_ms": {"warning": 1.5, "critical": 2.0, "relative": True, "floor": 20.0},
}


@dataclass(frozen=True, slots=True)
class Limits:
    warning: float
    critical: float


def limits_batch(context: np.ndarray, thresholds: dict, metrics: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Warning and critical limits (N, M) for contexts (N, T, M) with NaN gaps: absolute, or
    relative rules times each server's 95th percentile of its context, never below `floor`."""
    n = context.shape[0]
    warning = np.empty((n, len(metrics)))
    critical = np.empty((n, len(metrics)))
    for m, metric in enumerate(metrics):
        rule = thresholds[metric]
        if rule["relative"]:
            with np.errstate(all="ignore"):
                level = np.nan_to_num(np.nanpercentile(context[:, :, m], 95, axis=1), nan=0.0)
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


# Each rule: the quantile it watches, the threshold (by name) it compares with, and its name in
# messages. The message names both so "warning" can never be read as the threshold an early
# warning used (it compares p90 with the *critical* threshold).
RULES: dict[str, tuple[str, str, str]] = {
    "p50_critical": ("p50", "critical", "critical"),
    "p50_warning": ("p50", "warning", "warning"),
    "p90_early_warning": ("p90", "critical", "early warning"),
}


def lead_time(minutes: int) -> str:
    """Minutes as an operator reads them: "40 min", "2 h", "2 h 15 min"."""
    hours, rest = divmod(int(minutes), 60)
    if not hours:
        return f"{rest} min"
    return f"{hours} h {rest} min" if rest else f"{hours} h"


def alert_message(*, server: str, metric: str, rule: str, peak: float, threshold: float, minutes: int) -> str:
    """e.g. "ppdb001: mem_pct p90 forecast peaks at 96.1, crossing in 2 h 15 min (early warning: p90 ≥
    critical 95.0)": the quantile's peak, when it first reaches the threshold, the rule and the
    threshold it used."""
    quantile, threshold_name, title = RULES[rule]
    return (f"{server}: {metric} {quantile} forecast peaks at {peak:.1f}, crossing in {lead_time(minutes)} "
            f"({title}: {quantile} ≥ {threshold_name} {threshold:.1f})")


def first_crossing(values: np.ndarray, threshold: float) -> int | None:
    hits = np.flatnonzero(values >= threshold)
    return int(hits[0]) + 1 if hits.size else None


def alert_candidates(server: str, metric: str, p50: np.ndarray, p90: np.ndarray, limits: Limits,
                     step_minutes: int) -> list[dict]:
    """The alerts the rules in the module docstring call for (at most one per severity)."""
    out = []

    def candidate(severity, rule, series, threshold, step):
        value = float(series.max())
        return {
            "metric": metric,
            "severity": severity,
            "rule": rule,
            "predicted_value": round(value, 2),
            "threshold": round(threshold, 2),
            "steps_ahead": step,
            "minutes_ahead": step * step_minutes,
            "message": alert_message(server=server, metric=metric, rule=rule, peak=value, threshold=threshold,
                                     minutes=step * step_minutes),
        }

    step = first_crossing(p50, limits.critical)
    if step is not None:
        out.append(candidate("critical", "p50_critical", p50, limits.critical, step))
    step = first_crossing(p50, limits.warning)
    if step is not None:
        out.append(candidate("warning", "p50_warning", p50, limits.warning, step))
    else:
        step = first_crossing(p90, limits.critical)
        if step is not None:
            out.append(candidate("warning", "p90_early_warning", p90, limits.critical, step))
    return out


def fleet_environment(server_probs: list[tuple[float, float]]) -> dict:
    """The contract's `environment` from each server's (prob_30m, prob_8h)."""
    p30 = np.array([p[0] for p in server_probs], dtype=np.float64)
    p8h = np.array([p[1] for p in server_probs], dtype=np.float64)
    fleet_30m = float(1 - np.prod(1 - p30)) if p30.size else 0.0
    fleet_8h = float(1 - np.prod(1 - p8h)) if p8h.size else 0.0
    high_risk = int((p8h >= HIGH_RISK_PROB).sum())
    if (p30 >= CRITICAL_PROB_30M).any():
        health = "critical"
    elif high_risk:
        health = "warning"
    else:
        health = "healthy"
    return {
        "prob_30m": round(fleet_30m, 4),
        "prob_8h": round(fleet_8h, 4),
        "high_risk_servers": high_risk,
        "total_servers": len(server_probs),
        "fleet_health": health,
    }
