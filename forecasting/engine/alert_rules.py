"""Alert rules and their messages, from forecast quantiles and limits. Pure numpy.

Alert rules, per server and metric, over the forecast horizon:
- `p50_critical` (critical): the median forecast reaches the critical threshold;
- `p50_warning` (warning): the median forecast reaches the warning threshold;
- `p90_early_warning` (warning): the pessimistic p90 reaches the critical threshold while the
  median stays below warning — an early warning that trouble is plausible, not expected.
`steps_ahead` is the first step (1 = the next 5 minutes) at which the rule's quantile reaches its
threshold; `predicted_value` is that quantile's peak over the horizon.

Incident probabilities and the limits maths are pure engine code: forecasting.engine.probability.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Limits:
    warning: float
    critical: float


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


MESSAGE_MAX = 300  # Alert.message's length


def with_drivers(message: str, drivers: str) -> str:
    """The message with what drove the forecast appended ("…; driven by mem_pct history and the
    heavy_load state; attends to the same time yesterday"), within the message field; a clause
    that does not fit is left out whole rather than cut mid-word."""
    if not drivers:
        return message
    out = f"{message}; {drivers}"
    return out if len(out) <= MESSAGE_MAX else message


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
