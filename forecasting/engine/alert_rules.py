"""Alert rules and their messages, from forecast quantiles and limits. Pure numpy.

Alert rules, per server and metric, over the forecast horizon:
- `p50_critical` (critical): the median forecast reaches the critical threshold;
- `p50_warning` (warning): the median forecast reaches the warning threshold;
- `p90_early_warning` (warning): the pessimistic p90 reaches the critical threshold while the
  median stays below warning — an early warning that trouble is plausible, not expected.
`steps_ahead` is the first step (1 = the next 5 minutes) at which the rule's quantile reaches its
threshold; `predicted_value` is that quantile's peak over the horizon.

And rules per server, not per metric:
- `trend_projection` (warning, ``TREND_METRIC``): the line through a metric's recent values, projected
  a few hours ahead, reaches its critical threshold and has for the last few buckets
  (``trend_crossing``; read from the values, not the forecast: the held linear projection a
  Prometheus rule would make, tuned on the development replays). One alert per server, naming the
  metric that reaches its limit first, under the forecast rules' hysteresis. (``INCIDENT_METRIC``):
- `incident_prob` (warning): the probability that an incident starts within 8 h (the folder's event
  model, before the live map: what the replay measured) is at or above ``incident_prob_threshold``
  — ``PROB_TAU``, raised to ``PROB_LIFT`` × the server's own incident base rate and to ``PROB_RISE``
  × its usual P (its mean over the last day). It warns of an incident on any metric (or a reported
  one), so it is the server's alert, under its own hysteresis.

Incident probabilities and the limits maths are pure engine code: forecasting.engine.probability.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forecasting.engine.inputs import METRIC_RANGES
from forecasting.engine.spec import STATE_INDEX, STATES


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


def alert_message(
    *, server: str, metric: str, rule: str, peak: float, threshold: float, minutes: int, source: str = "served"
) -> str:
    """e.g. "ppdb001: mem_pct p90 forecast peaks at 96.1, crossing in 2 h 15 min (early warning: p90 ≥
    critical 95.0)": the quantile's peak, when it first reaches the threshold, the rule and the
    threshold it used. A rule that read the model's own quantiles (``source="model"``) says "model
    forecast", since its peak is not the one the chart shows."""
    quantile, threshold_name, title = RULES[rule]
    forecast = "model forecast" if source == "model" else "forecast"
    return (
        f"{server}: {metric} {quantile} {forecast} peaks at {peak:.1f}, crossing in {lead_time(minutes)} "
        f"({title}: {quantile} ≥ {threshold_name} {threshold:.1f})"
    )


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


def alert_candidates(
    server: str, metric: str, p50: np.ndarray, p90: np.ndarray, limits: Limits, step_minutes: int,
    *, early_steps: int | None = None, source: str = "served",
) -> list[dict]:  # fmt: skip
    """The alerts the rules in the module docstring call for (at most one per severity); the p90
    early warning looks at the first ``early_steps`` steps only (None: the whole horizon; 0: none);
    ``source``: which forecast p50 / p90 are (FORECAST_SOURCES), named in the message."""
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
            "message": alert_message(
                server=server, metric=metric, rule=rule, peak=value, threshold=threshold,
                minutes=step * step_minutes, source=source,
            ),
        }

    step = first_crossing(p50, limits.critical)
    if step is not None:
        out.append(candidate("critical", "p50_critical", p50, limits.critical, step))
    step = first_crossing(p50, limits.warning)
    if step is not None:
        out.append(candidate("warning", "p50_warning", p50, limits.warning, step))
    else:
        step = first_crossing(p90[:early_steps], limits.critical) if early_steps != 0 else None
        if step is not None:
            out.append(candidate("warning", "p90_early_warning", p90, limits.critical, step))
    return out


# How far ahead the p90 early warning looks (TFT_ALERT_EARLY_WARNING_MINUTES' default; 0: no early
# warning; the p50 rules always look over the whole horizon). Chosen in round 5 on the development
# replays of the served forecast (README "Early warnings and the forecast the rules read",
# bench/results/alert_replay/early_warning_r5.json): over the whole horizon the early warning doubled
# the false alerts (mean over the 5 development sets 0.98 a server-day vs 0.43 without it) for no
# recall (0.384 vs 0.380).
EARLY_WARNING_MINUTES = 0
# The forecast the rules read (TFT_ALERT_FORECAST_SOURCE): the one served (blended with the last value
# and interval-calibrated: what the charts and /predictions show) or the model's own quantiles (the
# TFT's before the blend and calibration; the heuristic fallback's are served as they are).
FORECAST_SOURCES: tuple[str, str] = ("served", "model")
FORECAST_SOURCE = "served"


# --- Served severity, vectorised (the replay's form of alert_candidates) ---------------------------

SEVERITIES: tuple[str, ...] = ("warning", "critical")  # by rank: code 1, 2 (0: nothing predicted)
SEVERITY_CODE: dict[str, int] = {"warning": 1, "critical": 2}


def severity_codes(p50: np.ndarray, p90: np.ndarray, warning: np.ndarray, critical: np.ndarray, *,
                   early_steps: int | None = None) -> np.ndarray:  # fmt: skip
    """The highest severity alert_candidates calls for, as a code (0 none, 1 warning, 2 critical), for
    forecasts (..., H) against limits (...): critical when the p50 reaches critical within the horizon;
    warning when the p50 reaches warning or the p90 reaches critical within its first ``early_steps``
    steps (the early warning; None: the whole horizon; 0: none)."""
    with np.errstate(invalid="ignore"):
        p50_peak = np.nanmax(np.nan_to_num(p50, nan=-np.inf), axis=-1)
        p90_peak = (
            np.nanmax(np.nan_to_num(p90[..., :early_steps], nan=-np.inf), axis=-1) if early_steps != 0
            else np.full(p50_peak.shape, -np.inf)
        )  # fmt: skip
    code = np.where((p50_peak >= warning) | (p90_peak >= critical), 1, 0)
    return np.where(p50_peak >= critical, 2, code)


# --- The incident-probability rule --------------------------------------------------------------
#
# Chosen on the development replays (README "The new real sources" and "`incident_prob` is served",
# bench/results/alert_replay/new_sources_r1.json, incident_prob_rise_r4.json): P(8 h) >= max(0.05,
# 1.5 × the server's own base rate, 3 × its usual P(8 h)), opening on the first origin and resolving
# after 12 origins 15 minutes apart (3 h) without. These are the defaults of
# TFT_ALERT_INCIDENT_PROB_TAU / _LIFT / _RISE (tftsite.settings) and of the replay (engine.alert_replay).
INCIDENT_METRIC = "incident"  # the alert's "metric": the server as a whole
INCIDENT_RULE = "incident_prob"
INCIDENT_WINDOW = "8h"  # the event model's window the rule reads
PROB_TAU = 0.05
PROB_LIFT = 1.5  # 0: tau alone
# The probability the rule reads: the model's (before the live map: what the thresholds above were
# chosen on) or the one served (after the live map, which moves it toward the fleet's own rates).
PROB_SOURCES: tuple[str, str] = ("model", "served")
# The server's usual P: its mean over the last RECENT_HOURS, known from RECENT_MIN_HOURS of it; the
# threshold's rise above it (0: none). Chosen in round 4 on the development replays with the quiet
# development fleet as a constraint (README "`incident_prob` is served";
# bench/results/alert_replay/incident_prob_rise_r4.json): without it a fleet whose P(8 h) all sit above
# tau (the quiet fleet the model over-rates: median 0.116) has the alert open on every server all the time.
PROB_RISE = 3.0
RECENT_HOURS = 24.0
RECENT_MIN_HOURS = 6.0


def incident_prob_threshold(share: np.ndarray | None, *, tau: float, lift: float = 0.0,
                            recent: np.ndarray | None = None, rise: float = 0.0) -> np.ndarray | float:  # fmt: skip
    """The threshold of the incident-probability rule: ``tau``, raised to ``lift`` times the server's
    own base rate ``share`` (event_model.history_share: its smoothed share of windows with an
    incident) where that is higher. A server that is often in incident carries a standing P(8 h)
    near its base rate: a state, not a warning, so it alerts only on a rise above it; a quiet
    server alerts from ``tau``. ``lift`` 0 (or no ``share``): ``tau`` alone.

    With ``rise`` > 0 it is also at least ``rise`` × ``recent``, the server's own mean P over the last
    day (``RECENT_HOURS``), and infinite where that is unknown (under ``RECENT_MIN_HOURS`` of it): the
    alert says the server's risk rose well above its usual, which a fleet whose probabilities all sit
    high (a quiet one the model over-rates, one more incident-prone than the training data) does not
    set off, and it waits until it knows the server's usual."""
    out = tau if share is None or lift <= 0 else np.maximum(tau, lift * np.asarray(share, dtype=np.float64))
    if rise > 0 and recent is not None:
        r = np.asarray(recent, dtype=np.float64)
        out = np.maximum(out, np.where(np.isfinite(r), rise * r, np.inf))
    return out


def incident_prob_codes(p: np.ndarray, share: np.ndarray | None, *, tau: float, lift: float = 0.0,
                        recent: np.ndarray | None = None, rise: float = 0.0) -> np.ndarray:  # fmt: skip
    """(n,) 2 (critical) where the incident probability `p` is at or above its threshold
    (``incident_prob_threshold``), else 0."""
    threshold = incident_prob_threshold(share, tau=tau, lift=lift, recent=recent, rise=rise)
    return np.where(np.asarray(p, dtype=np.float64) >= threshold, 2, 0)


def recent_mean(p: np.ndarray, *, every: int, step_minutes: int) -> np.ndarray:
    """(n,) at each of one server's origins (``every`` steps apart, in time order) the mean of its P
    over the origins of the previous ``RECENT_HOURS`` (the current one excluded); NaN where they span
    under ``RECENT_MIN_HOURS`` (what the service's query gives from its kept probabilities)."""
    p = np.asarray(p, dtype=np.float64)
    per_hour = 60.0 / (every * step_minutes)
    span, need = round(RECENT_HOURS * per_hour), round(RECENT_MIN_HOURS * per_hour)
    sums = np.concatenate(([0.0], np.cumsum(p)))
    j = np.arange(len(p))
    lo = np.maximum(j - span, 0)
    n = j - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (sums[j] - sums[lo]) / n
    return np.where(n >= max(need, 1), mean, np.nan)


def incident_candidate(*, server: str, p: float, share: float | None, tau: float, lift: float,
                       horizon_steps: int, step_minutes: int, recent: float | None = None,
                       rise: float = 0.0) -> dict | None:  # fmt: skip
    """The server's `incident_prob` alert candidate (the same keys as alert_candidates') when `p`, its
    P(an incident starts within the window of `horizon_steps`), is at or above its threshold; else None."""
    shares = None if share is None else np.array([share], dtype=np.float64)
    recents = None if recent is None else np.array([recent], dtype=np.float64)
    threshold = float(
        np.asarray(incident_prob_threshold(shares, tau=tau, lift=lift, recent=recents, rise=rise)).reshape(-1)[0]
    )
    if not p >= threshold:
        return None
    minutes = horizon_steps * step_minutes
    own = f", {lift:g} × its own {share:.1%} rate" if share is not None and lift > 0 and lift * share > tau else ""
    if rise > 0 and recent is not None and rise * recent >= threshold:
        own = f", {rise:g} × its usual {recent:.1%}"
    return {
        "metric": INCIDENT_METRIC,
        "severity": "warning",
        "rule": INCIDENT_RULE,
        "predicted_value": round(100.0 * p, 2),
        "threshold": round(100.0 * threshold, 2),
        "steps_ahead": horizon_steps,
        "minutes_ahead": minutes,
        "message": f"{server}: P(incident within {lead_time(minutes)}) is {p:.0%} (≥ {threshold:.1%}{own})",
    }


def first_trend(candidates: list[dict]) -> list[dict]:
    """The server's one trend candidate: the metric that reaches its limit first, naming the others
    that trend too; [] without any."""
    if not candidates:
        return []
    first = min(candidates, key=lambda c: c["steps_ahead"])
    others = [c["trending"] for c in candidates if c is not first]
    if others:
        first = {**first, "message": with_drivers(first["message"], f"also trending: {', '.join(others)}")}
    return [first]


def top_severity(candidates: list[dict]) -> str | None:
    """The highest severity among a server × metric's candidates (None: none)."""
    codes = [SEVERITY_CODE[c["severity"]] for c in candidates]
    return SEVERITIES[max(codes) - 1] if codes else None


# --- Hysteresis: when an alert opens and resolves ---------------------------------------------------
#
# One alert per server × metric. It opens once K consecutive runs predict it (K = open_after of the
# severity the K-th run predicts: a critical can be allowed to open sooner than a warning) and
# resolves once M consecutive runs do not (M = resolve_after of its severity). While open, a run
# predicting another severity changes the alert's severity (a transition, not a new alert); a run
# predicting nothing only counts towards M. The live service (alerts.services) and the backtest's
# replay (engine.alert_replay) both step this one function.


@dataclass(frozen=True, slots=True)
class Hysteresis:
    open_after: dict[str, int]  # severity → K consecutive predicting runs
    resolve_after: dict[str, int]  # severity → M consecutive runs not predicting

    def __post_init__(self):
        for name, table in (("open_after", self.open_after), ("resolve_after", self.resolve_after)):
            if set(table) != set(SEVERITIES) or min(table.values()) < 1:
                raise ValueError(f"{name} needs a count >= 1 for each of {SEVERITIES}, got {table}")


IMMEDIATE = Hysteresis({"warning": 1, "critical": 1}, {"warning": 1, "critical": 1})  # the old behaviour


@dataclass(frozen=True, slots=True)
class Streak:
    severity: str | None = None  # the open alert's severity; None while no alert is open
    hits: int = 0  # consecutive predicting runs while none is open
    misses: int = 0  # consecutive runs not predicting while one is open


OPENED, CHANGED, RESOLVED = "opened", "severity_changed", "resolved"


def hysteresis_step(streak: Streak, predicted: str | None, rule: Hysteresis) -> tuple[Streak, str | None]:
    """The streak after one run predicting `predicted` (a severity, or None), and what happened to the
    alert: OPENED, CHANGED (its severity), RESOLVED or None (nothing an operator sees)."""
    if streak.severity is None:
        if predicted is None:
            return Streak(), None
        hits = streak.hits + 1
        if hits >= rule.open_after[predicted]:
            return Streak(severity=predicted), OPENED
        return Streak(hits=hits), None
    if predicted is None:
        misses = streak.misses + 1
        if misses >= rule.resolve_after[streak.severity]:
            return Streak(), RESOLVED
        return Streak(severity=streak.severity, misses=misses), None
    if predicted != streak.severity:
        return Streak(severity=predicted), CHANGED
    return Streak(severity=streak.severity), None


def alert_episodes(codes: np.ndarray, rule: Hysteresis) -> list[tuple[int, int]]:
    """(first, end) run indices of the alerts a sequence of predicted severity codes (0 none, 1
    warning, 2 critical), one per run, opens under `rule`: opened at run `first`, resolved at run
    `end` (len(codes) when still open after the last run)."""
    streak, out, first = Streak(), [], 0
    for i, code in enumerate(np.asarray(codes, dtype=np.int64)):
        streak, event = hysteresis_step(streak, SEVERITIES[code - 1] if code else None, rule)
        if event == OPENED:
            first = i
        elif event == RESOLVED:
            out.append((first, i))
    if streak.severity is not None:
        out.append((first, len(codes)))
    return out


# --- The trend rule: a held linear projection of the recent values ------------------------------------
#
# `trend_projection` (warning, per metric): the least-squares line through the last ``fit`` buckets
# (missing ones skipped; at least 2 present, as Prometheus), drawn ``reach`` buckets past the last one,
# reaches the critical limit — and did so at each of the last ``hold`` bucket ends (a projection that
# held for that long, not one noisy bucket's). Prometheus' ``predict_linear(x[1h], 8h) >= critical``
# is fit 12, reach 96, hold 1 (the replay's ``predict_linear`` reference). Read from the values
# alone, so the service (from the forecast's context) and the replay (at any stride) compute the same
# thing. Its alert is the server's (metric ``TREND_METRIC``; on each metric's own alert, merged with
# the forecast rules', it warned less: a forecast rule's standing alert swallowed the trend's warning).
# Defaults chosen on the development replays only (README "The trend rule",
# bench/results/alert_replay/trend_choice_r9.json: `python -m bench.trend_choice`, 240 settings): the
# highest recall, as a mean over the 5 development sources, within the false alerts the 0.5-a-day
# bound leaves after the other served rules (0.25 a day) — fit 2 h, reach 4 h, hold 15 min, near 0:
# 0.400 recall at 0.247 false alerts a day alone, and served with the others 0.474 at 0.497 (0.300
# at 0.250 without it), where predict_linear's best point within 0.5 (over every K / M of the
# replay's frontier) warned 0.103.
TREND_RULE = "trend_projection"
TREND_METRIC = "trend"  # the alert's "metric": the server's trend alert, for whichever metric trends
TREND_FIT_STEPS = 24
TREND_REACH_STEPS = 48
TREND_HOLD_STEPS = 3
TREND_NEAR = 0.0
# The states in which a server's feeder declares its climb expected — the contract's `heavy_load`
# ("high utilization but stable") and `morning_spike` ("expected morning traffic surge"): no trend
# warning is drawn through a climb the server reports as one of them at any bucket of the hold. The
# forecast rules and incident_prob still read the level. Chosen on the development replays (round 10,
# README "The trend rule"): the warned incidents of every development source unchanged, the false
# alerts 0.247 → 0.158 a server-day (mean of 5) and 1.30 → 0.71 on the quiet fleet, where a batch
# job's step to 80 % CPU drew a line to 95 % (TFT_ALERT_TREND_EXPECTED_STATES).
TREND_EXPECTED_STATES: tuple[str, ...] = ("heavy_load", "morning_spike")


@dataclass(frozen=True, slots=True)
class Trend:
    fit: int = TREND_FIT_STEPS  # buckets the line is fitted on
    reach: int = TREND_REACH_STEPS  # buckets past the last one the line is drawn to
    hold: int = TREND_HOLD_STEPS  # consecutive bucket ends at which it must reach the limit
    near: float = TREND_NEAR  # and the line at the next bucket must be at least this share of the limit
    expected: tuple[str, ...] = ()  # states that declare a climb expected (TREND_EXPECTED_STATES served)

    def __post_init__(self):
        if min(self.fit, self.reach, self.hold) < 1 or self.fit < 2 or not 0.0 <= self.near < 1.0:
            raise ValueError(f"trend needs fit >= 2, reach >= 1, hold >= 1, 0 <= near < 1, got {self}")
        if unknown := set(self.expected) - set(STATES):
            raise ValueError(f"trend: unknown expected states {sorted(unknown)}; each must be one of {', '.join(STATES)}")


def recent_states(states: np.ndarray, ends: np.ndarray, steps: int) -> np.ndarray:
    """(n, steps) the states (STATES indices, -1 missing) of the `steps` buckets before each end of
    `ends` (n,), oldest first; -1 before the series starts."""
    idx = np.asarray(ends, dtype=np.int64)[:, None] + np.arange(-steps, 0)[None, :]
    return np.where(idx >= 0, np.asarray(states)[np.clip(idx, 0, max(len(states) - 1, 0))], -1)


def expected_climb(recent: np.ndarray, trend: Trend) -> np.ndarray:
    """(...) bool from `recent` states (..., k), newest last: the server reported one of
    ``trend.expected`` at one of its last ``trend.hold`` buckets, so the trend rule stays quiet."""
    if not trend.expected:
        return np.zeros(recent.shape[:-1], dtype=bool)
    return np.isin(recent[..., -trend.hold :], [STATE_INDEX[s] for s in trend.expected]).any(axis=-1)


def trend_projection(values: np.ndarray, ends: np.ndarray, trend: Trend) -> np.ndarray:
    """(n, C) the line through ``values[e - fit : e]`` (values (T, C), missing as NaN) at bucket
    ``e - 1 + reach``, for each end ``e`` of `ends` (n,); NaN where fewer than 2 buckets are present."""
    x = np.arange(-trend.fit, 0, dtype=np.float64)
    idx = np.asarray(ends, dtype=np.int64)[:, None] + x[None, :].astype(np.int64)
    seg = np.where((idx >= 0)[:, :, None], values[np.clip(idx, 0, len(values) - 1)], np.nan)  # (n, fit, C)
    ok = np.isfinite(seg)
    n_ok = ok.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = np.where(ok, x[None, :, None], 0.0).sum(axis=1) / n_ok
        my = np.where(ok, seg, 0.0).sum(axis=1) / n_ok
        dx = np.where(ok, x[None, :, None] - mx[:, None, :], 0.0)
        sxx = (dx**2).sum(axis=1)
        slope = np.where(sxx > 0, (dx * np.where(ok, seg - my[:, None, :], 0.0)).sum(axis=1) / sxx, 0.0)
        line = my + slope * (trend.reach - 1 - mx)
    return np.where(n_ok >= 2, line, np.nan)


def trend_crossing(values: np.ndarray, ends: np.ndarray, critical: np.ndarray, trend: Trend) -> np.ndarray:
    """(n, C) bool: the projection reached `critical` (C,) at each of the ``hold`` bucket ends up to
    each end of `ends`."""
    ends = np.asarray(ends, dtype=np.int64)
    held = np.ones((len(ends), values.shape[1]), dtype=bool)
    for back in range(trend.hold):
        line = trend_projection(values, ends - back, trend)
        with np.errstate(invalid="ignore"):
            held &= np.nan_to_num(line, nan=-np.inf) >= critical[None, :]
    if trend.near > 0:
        now = trend_projection(values, ends, Trend(trend.fit, 1, 1))
        with np.errstate(invalid="ignore"):
            held &= np.nan_to_num(now, nan=-np.inf) >= trend.near * critical[None, :]
    return held


def trend_candidate(*, server: str, metric: str, values: np.ndarray, limits: Limits, trend: Trend,
                    step_minutes: int) -> dict | None:  # fmt: skip
    """The trend rule's alert candidate (warning, the server's ``TREND_METRIC`` alert) for one metric's
    recent values (oldest first), or None. ``steps_ahead``: when the current line reaches the critical
    limit."""
    ends = np.array([len(values)])
    col = np.asarray(values, dtype=np.float64)[:, None]
    if not trend_crossing(col, ends, np.array([limits.critical]), trend)[0, 0]:
        return None
    projected = float(trend_projection(col, ends, trend)[0, 0])
    now = float(trend_projection(col, ends, Trend(trend.fit, 1, 1))[0, 0])  # the line at the next bucket
    per_step = (projected - now) / max(trend.reach - 1, 1)
    step = 1 if now >= limits.critical or per_step <= 0 else 1 + int(np.ceil((limits.critical - now) / per_step))
    step = min(step, trend.reach)
    minutes = step * step_minutes
    # A percent metric cannot pass 100: the line can (a step of memory drawn 4 h on read "232.1"),
    # and an SRE who reads that stops trusting the rest of the message.
    ceiling = METRIC_RANGES.get(metric, (0.0, np.inf))[1]
    capped = projected > ceiling
    shown = ceiling if capped else projected
    reach = f"{shown:.1f}, its ceiling, within" if capped else f"{shown:.1f} in"
    return {
        "metric": TREND_METRIC,
        "trending": metric,  # the metric whose line reaches its limit (named in the message)
        "severity": "warning",
        "rule": TREND_RULE,
        "predicted_value": round(shown, 2),
        "threshold": round(limits.critical, 2),
        "steps_ahead": step,
        "minutes_ahead": minutes,
        "message": (f"{server}: {metric} trending to its critical limit {limits.critical:.1f} in {lead_time(minutes)} "
                    f"(the last {trend.fit * step_minutes} min projected: {reach} "
                    f"{lead_time(trend.reach * step_minutes)})")[:MESSAGE_MAX],
    }  # fmt: skip
