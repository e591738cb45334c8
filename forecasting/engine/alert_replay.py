"""Alert replay: the served alert rules, with the hysteresis, run at rolling origins over the test
part of each series and scored against incidents (engine.incidents, the one definition). Numpy only.

Protocol, per series (its scored metrics) and per rule:

* origins every ``every`` steps (default 1 = every 5 minutes, as the live beat runs) from the first
  test bucket (the last ``TEST_FRACTION`` of the series) while a full horizon of truth follows;
  one rule evaluation per origin, stepped through ``alert_rules.hysteresis_step`` (so K and M count
  origins: with ``every`` > 1 they span ``every`` times more time than live runs). An alert still
  open after the last origin is closed there.
* limits: ``probability.limits_batch`` over the context before the first test origin (what the
  service knew when the test part began), fixed for the series: the same limits for the incidents
  and for every rule, so no rule gains from a different definition.
* incidents: threshold incidents of each scored metric (``incidents.threshold_incident_buckets``
  with ``min_buckets``; an incident starts at the first bucket of its run) and reported ones
  (``incidents.reported_buckets``: critical_issue). Counted when they start in
  [first origin + WARN_STEPS, last origin].
* **warned ≥ 15 min**: an alert was open ``WARN_STEPS`` (15 min) before the start, on the same
  metric for a threshold incident, on any metric of the server for a reported one, and it opened
  within the horizon before the start (an alert open for days is not a forecast of this incident);
  its lead time is the start minus the opening of that alert. ``recall_15m`` = warned / incidents; median and p25
  lead over warned incidents.
* **false alert**: an alert episode with no incident bucket (of any kind or metric of the server)
  while it is open or within the horizon after it opened; ``false_alerts_per_server_day``.
* ``alert_minutes_per_server_day``: minutes with at least one alert open on the server.

Rules: ``served_forecast`` (``alert_rules.severity_codes`` of the forecast's p50 / p90 as served:
blended with persistence and interval-calibrated online, ``backtest.served_inputs``; ``raw_forecast``:
the same rules on the model's own quantiles, a diagnostic),
``static_threshold`` (the metric at or above critical for the last 10 minutes, as a Prometheus rule
``… >= critical for 10m``: it fires only once the incident is under way, so its lead is <= 0 by
construction; it opens and resolves at once) and ``predict_linear`` (least-squares line over the last
hour projected ``HORIZON`` ahead reaching critical: Prometheus' ``predict_linear(x[1h], 8h) >=
critical``, under the same hysteresis as served, i.e. as ``for`` / ``keep_firing_for``). Also
``served_p50``: the served rules without the p90 early warning (a diagnostic: what the early
warning costs in false alerts and alert-minutes), and ``served_p50_prob``: its alerts with
``incident_prob``'s (what ``served`` would be without the early warning). With an event model (``probability``), also
``incident_prob``: the served P(an incident starts within 8 h) at the origin
(``backtest.served_probabilities``, the one the service computes for that window from the folder's
event model, without the live map) at or above its threshold (``alert_rules.incident_prob_threshold``:
``tau``, raised to ``lift`` times the series' own incident base rate at the origin, from the same
incident history the event model reads) predicts an alert (critical) for the
**series** (the event model scores the server, not a metric), under the same hysteresis: one alert
per series, which warns an incident of any of its metrics, and counts as false when no incident of
the series follows (as a reported incident is matched), under its own hysteresis (the service's
``TFT_ALERT_INCIDENT_*``). ``served`` is what the service serves: the alerts of ``served_forecast``
and, with an event model and ``serve_prob``, those of ``incident_prob`` together (each episode of
either counts; an incident is warned when either warned it).

Per family the counts are summed; ``pooled`` weighs families equally (the mean of the family figures,
recall and leads over families with incidents).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from forecasting.engine import live_calibration as lc
from forecasting.engine.alert_rules import (
    FORECAST_SOURCE,
    FORECAST_SOURCES,
    IMMEDIATE,
    INCIDENT_RULE,
    INCIDENT_WINDOW,
    PROB_LIFT,
    PROB_RISE,
    PROB_SOURCES,
    PROB_TAU,
    TREND_METRIC,
    TREND_RULE,
    Hysteresis,
    Trend,
    alert_episodes,
    expected_climb,
    incident_prob_codes,
    recent_mean,
    recent_states,
    severity_codes,
    trend_crossing,
)
from forecasting.engine.backtest import (
    PROB_WINDOWS,
    TEST_FRACTION,
    ProbabilitySetup,
    context_window,
    incident_history,
    origin_clock,
    rolling_origins,
    served_inputs,
    served_probabilities,
)
from forecasting.engine.event_model import history_share
from forecasting.engine.incidents import (
    DEFAULT_MIN_BUCKETS,
    incident_labels,
    reported_buckets,
    threshold_incident_buckets,
)
from forecasting.engine.probability import limits_batch
from forecasting.engine.series import SeriesWindow
from forecasting.engine.spec import CONTEXT, DEFAULT_THRESHOLDS, HORIZON, METRICS, STEP_MINUTES, STEPS_PER_DAY

logger = logging.getLogger(__name__)

WARN_STEPS = 15 // STEP_MINUTES  # "warned at least 15 minutes before"
STATIC_FOR = 10 // STEP_MINUTES  # static threshold: `for: 10m`
LINEAR_STEPS = 60 // STEP_MINUTES  # predict_linear over the last hour
REPLAY_EVERY = 1  # every 5 minutes, as the live runs
PROB_RULE = INCIDENT_RULE
PROB_WINDOW = INCIDENT_WINDOW
PROB_SOURCE_MODEL, PROB_SOURCE_SERVED = PROB_SOURCES
FORECAST_MODEL = FORECAST_SOURCES[1]
# The default threshold on P(incident within 8 h) (--alert-prob-tau) is alert_rules.PROB_TAU, raised
# to PROB_LIFT × the series' own incident base rate (--alert-prob-lift), as served.
PROB_TAUS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5)  # what --alert-frontier sweeps
PROB_LIFTS: tuple[float, ...] = (0.0, 1.5)  # the lifts --alert-frontier sweeps with each tau (--alert-prob-lifts)
RAW_RULE = "raw_forecast"  # the forecast rules on the model's own quantiles (before the blend and calibration)
# The trend rule (with a trend): served as the server's own alert (``TREND_SERVER``: one per series
# for any metric trending to its limit, under the forecast rules' hysteresis), beside the forecast
# rules' alerts and incident_prob's. Also replayed: per metric alone (``TREND_RULE``), and the ways of
# serving it that were compared on the development replays (README "The trend rule"): on each metric's
# own alert with the forecast rules (``TREND_MERGED``, and served with it, "served_trend_merged"), as
# a separate alert per metric ("served_trend_per_metric"), without the forecast rules ("trend_prob"),
# and served without it ("served_without_trend").
TREND_SERVER = TREND_METRIC
TREND_MERGED = "forecast_and_trend"
TREND_UNIONS: dict[str, tuple[str, ...]] = {
    "served_without_trend": ("served_forecast", PROB_RULE),
    "served_trend_per_metric": ("served_forecast", TREND_RULE, PROB_RULE),
    "served_trend_merged": (TREND_MERGED, PROB_RULE),
    "trend_prob": (TREND_SERVER, PROB_RULE),
}
REPLAY_RULES: tuple[str, ...] = (
    "served",
    "served_forecast",
    TREND_SERVER,
    TREND_RULE,
    TREND_MERGED,
    *TREND_UNIONS,
    RAW_RULE,
    "static_threshold",
    "predict_linear",
    "served_p50",
    PROB_RULE,
    "served_p50_prob",
)
SERIES_RULES = frozenset({PROB_RULE, TREND_SERVER})  # rules that raise one alert per series, not per metric (and "rule@tau")
SERVED_PARTS: tuple[str, ...] = ("served_forecast", PROB_RULE)  # "served": their alerts together
# A diagnostic: served without the p90 early warning (what incident_prob leaves it to add).
P50_PROB_PARTS: tuple[str, ...] = ("served_p50", PROB_RULE)
PREDICT_CHUNK = 512


@dataclass
class Counts:
    """One rule's raw counts over some series (summed; ratios are taken at the end)."""

    incidents: int = 0
    warned: int = 0
    leads: list[float] = field(default_factory=list)  # minutes, warned incidents
    episodes: int = 0
    false_alerts: int = 0
    alert_minutes: float = 0.0
    server_days: float = 0.0

    def add(self, other: Counts) -> None:
        self.incidents += other.incidents
        self.warned += other.warned
        self.leads += other.leads
        self.episodes += other.episodes
        self.false_alerts += other.false_alerts
        self.alert_minutes += other.alert_minutes
        self.server_days += other.server_days

    def report(self) -> dict[str, Any]:
        leads = np.asarray(self.leads, dtype=np.float64)
        days = self.server_days or float("nan")
        return {
            "recall_15m": self.warned / self.incidents if self.incidents else float("nan"),
            "median_lead_minutes": float(np.median(leads)) if leads.size else float("nan"),
            "p25_lead_minutes": float(np.percentile(leads, 25)) if leads.size else float("nan"),
            "false_alerts_per_server_day": self.false_alerts / days,
            "alert_minutes_per_server_day": self.alert_minutes / days,
            "incidents": self.incidents,
            "warned_15m": self.warned,
            "alerts": self.episodes,
            "false_alerts": self.false_alerts,
            "server_days": round(self.server_days, 3),
        }


@dataclass(frozen=True)
class Incidents:
    """A series' incidents over its scored columns: starts (bucket, column or -1 for a reported one)
    and the buckets where any incident is going on."""

    starts: list[tuple[int, int]]
    active: np.ndarray  # (T,) bool


def series_incidents(
    values: np.ndarray, states: np.ndarray, critical: np.ndarray, *, min_buckets: int = DEFAULT_MIN_BUCKETS
) -> Incidents:
    """Incidents of `values` (T, C) against fixed `critical` limits (C,) and of `states` (T,)."""
    thr = threshold_incident_buckets(values, np.asarray(critical, dtype=np.float64)[None, :], min_buckets)
    rep = reported_buckets(states)
    starts = []
    for col in range(thr.shape[1]):
        run = thr[:, col]
        starts += [(int(t), col) for t in np.flatnonzero(run & ~np.concatenate(([False], run[:-1])))]
    starts += [(int(t), -1) for t in np.flatnonzero(rep & ~np.concatenate(([False], rep[:-1])))]
    return Incidents(sorted(starts), thr.any(axis=1) | rep)


def static_codes(values: np.ndarray, origins: np.ndarray, critical: np.ndarray) -> np.ndarray:
    """(n, C) 2 where every bucket of the last STATIC_FOR before the origin is at or above critical."""
    idx = origins[:, None] + np.arange(-STATIC_FOR, 0)[None, :]
    seg = values[np.clip(idx, 0, len(values) - 1)]  # (n, STATIC_FOR, C)
    with np.errstate(invalid="ignore"):
        hot = (np.nan_to_num(seg, nan=-np.inf) >= critical[None, None, :]).all(axis=1)
    return np.where(hot, 2, 0)


def linear_codes(values: np.ndarray, origins: np.ndarray, critical: np.ndarray, horizon: int = HORIZON) -> np.ndarray:
    """(n, C) 2 where the least-squares line over the last hour (missing buckets skipped), projected
    `horizon` steps past the origin, is at or above critical (Prometheus predict_linear: the trend
    rule's form with fit 1 h, reach `horizon`, hold 1)."""
    return np.where(trend_crossing(values, origins, critical, Trend(LINEAR_STEPS, horizon, 1)), 2, 0)


def trend_codes(values: np.ndarray, origins: np.ndarray, critical: np.ndarray, trend: Trend,
                states: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """(n, C) 1 (warning, as served) where ``alert_rules.trend_crossing`` calls for the trend rule and
    the series' `states` (T,) do not declare the climb expected (``alert_rules.expected_climb``)."""
    crossing = trend_crossing(values, origins, critical, trend)
    if states is not None:
        crossing &= ~expected_climb(recent_states(states, origins, trend.hold), trend)[:, None]
    return np.where(crossing, 1, 0)


def score_alerts(
    episodes: Sequence[Sequence[tuple[int, int]]],
    incidents: Incidents,
    *,
    first: int,
    end: int,
    horizon: int = HORIZON,
    wide: Sequence[tuple[int, int]] = (),
) -> Counts:
    """Counts for alert episodes per column ([open, close) buckets) against `incidents`, over the
    replayed span [first, end) (incidents counted when they start in [first + WARN_STEPS, end)).
    `wide`: the series' own alerts (not a column's), which warn any of its incidents."""
    counts = Counts(server_days=(end - first) / STEPS_PER_DAY)
    open_mask = np.zeros(len(incidents.active), dtype=bool)
    for col_episodes in (*episodes, wide):
        for a, b in col_episodes:
            open_mask[a:b] = True
            counts.episodes += 1
            if not incidents.active[a : max(b, a + horizon)].any():
                counts.false_alerts += 1
    counts.alert_minutes = float(open_mask[first:end].sum() * STEP_MINUTES)
    for start, col in incidents.starts:
        if not first + WARN_STEPS <= start < end:
            continue
        counts.incidents += 1
        at = start - WARN_STEPS
        cols = (col,) if 0 <= col < len(episodes) else range(len(episodes))  # a reported one: any column
        candidates = [*(e for c in cols for e in episodes[c]), *wide]
        opened = [a for a, b in candidates if a <= at < b and start - a <= horizon]
        if opened:
            counts.warned += 1
            counts.leads.append(float((start - min(opened)) * STEP_MINUTES))
    return counts


def _as_buckets(runs: list[tuple[int, int]], origins: np.ndarray, every: int) -> list[tuple[int, int]]:
    """Episodes in run indices → [open, close) buckets (an alert open after the last origin closes
    one stride after it)."""
    ends = np.append(origins, origins[-1] + every)
    return [(int(origins[a]), int(ends[b])) for a, b in runs]


def replay_series(
    values: np.ndarray,
    states: np.ndarray,
    origins: np.ndarray,
    codes: Mapping[str, np.ndarray],
    critical: np.ndarray,
    hysteresis: Mapping[str, Hysteresis],
    *,
    every: int = REPLAY_EVERY,
    min_buckets: int = DEFAULT_MIN_BUCKETS,
    unions: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Counts]:
    """Each rule's counts on one series: `values` (T, C) its scored columns, `codes` rule → (n, C)
    severity codes at `origins` ((n, 1) for a rule of SERIES_RULES), `critical` (C,) the fixed
    limits, `hysteresis` rule → its rule; `unions` name → rules of `codes` whose alerts are served
    together (each keeps its own hysteresis)."""
    incidents = series_incidents(values, states, critical, min_buckets=min_buckets)
    first, end = int(origins[0]), int(origins[-1]) + every
    episodes: dict[str, tuple[list, list]] = {}  # rule → (per column, the series' own)
    for rule, c in codes.items():
        runs = [_as_buckets(alert_episodes(c[:, col], hysteresis[rule]), origins, every) for col in range(c.shape[1])]
        episodes[rule] = ([], runs[0]) if rule.split("@")[0] in SERIES_RULES else (runs, [])
    for name, parts in (unions or {}).items():
        columns = [episodes[p][0] for p in parts if episodes[p][0]]
        per_col = [[e for col in cols for e in col] for cols in zip(*columns, strict=True)]
        episodes[name] = (per_col, [e for p in parts for e in episodes[p][1]])
    return {
        rule: score_alerts(per_col, incidents, first=first, end=end, wide=wide)
        for rule, (per_col, wide) in episodes.items()
    }


def forecast_codes(q: np.ndarray, cols: list[int], limits, levels, *, early_steps: int | None = None,
                   p50_only: bool = False) -> np.ndarray:  # fmt: skip
    """Severity codes (n, C) of the forecast rules (``alert_rules.severity_codes``) on forecasts
    ``q`` (n, H, M, K) at quantile ``levels``, for the scored columns against ``limits`` (warning,
    critical: (C,) each); ``early_steps``: the p90 early warning's reach; ``p50_only``: without the
    early warning (p90 := p50)."""
    warning, critical = limits
    i50, i90 = list(levels).index(0.5), list(levels).index(0.9)
    p50 = q[..., cols, i50].swapaxes(1, 2)
    p90 = p50 if p50_only else q[..., cols, i90].swapaxes(1, 2)
    return severity_codes(p50, p90, warning[None, :], critical[None, :], early_steps=early_steps)


def _forecasts(predict: Callable, w: SeriesWindow, origins: np.ndarray) -> np.ndarray:
    """The forecaster's quantiles (n, H, M, K) at each origin (in chunks of PREDICT_CHUNK contexts)."""
    return np.concatenate([
        np.asarray(predict([context_window(w, int(o)) for o in origins[i : i + PREDICT_CHUNK]]), dtype=np.float64)
        for i in range(0, len(origins), PREDICT_CHUNK)
    ])  # fmt: skip


def early_rule(steps: int, rule: str = "served_forecast") -> str:
    """The name of the diagnostic forecast rules (``served_forecast`` on the served forecast, ``RAW_RULE``
    on the model's) whose p90 early warning reaches ``steps`` steps ahead."""
    return f"{rule}@ew{steps * STEP_MINUTES}m"


def probability_codes(p: np.ndarray, tau: float, share: np.ndarray | None = None, lift: float = 0.0,
                      recent: np.ndarray | None = None, rise: float = 0.0) -> np.ndarray:  # fmt: skip
    """(n, 1) 2 (critical) where the incident probability at the origin is at or above its threshold
    (`tau`, raised to `lift` × the series' own base rate `share` and to `rise` × its mean P of the last
    day `recent`: alert_rules.incident_prob_threshold)."""
    return incident_prob_codes(p, share, tau=tau, lift=lift, recent=recent, rise=rise)[:, None]


def served_forecasts(setup: ProbabilitySetup) -> Callable:
    """(w, cols, origins, q) → what serving sees at each origin (``backtest.served_inputs``: contexts,
    states, critical limits and the forecast with the scored metrics' quantiles blended with
    persistence and interval-calibrated online, as the prediction run serves them)."""

    def serving(w: SeriesWindow, cols: list[int], origins: np.ndarray, q: np.ndarray):
        return served_inputs(w, cols, origins, q, setup)

    return serving


def event_probability(setup: ProbabilitySetup, window: str = PROB_WINDOW) -> Callable:
    """(w, cols, origins, q[, inputs]) → ((n,) the served P(an incident starts within `window`) at each origin,
    exactly as the probability evaluation replays what the service serves for that window
    (``backtest.served_inputs`` / ``served_probabilities``: the folder's event model on the served,
    online-calibrated forecast), without the live map; (n,) the series' own incident base rate for
    that window at each origin (``event_model.history_share`` of the history the model read); (n,)
    whether an incident started in the window (the outcome the service records, for the live map)).
    ``inputs``: ``served_forecasts``' for the same origins, when already computed."""

    def probability(w: SeriesWindow, cols: list[int], origins: np.ndarray, q: np.ndarray, inputs=None):
        history = incident_history(w, cols, origins, setup)
        inputs = served_inputs(w, cols, origins, q, setup) if inputs is None else inputs
        p = served_probabilities(w, cols, origins, inputs, setup, history=history)[window]
        labels = incident_labels(
            w.values[:, cols].astype(np.float64), w.states, inputs[2][:, cols], origins,
            min_buckets=setup.min_buckets, incident_states=setup.incident_states,
        )  # fmt: skip
        return p, history_share(history[window], window), labels["incident"][window]

    return probability


@dataclass
class _Case:
    """One series' replay inputs: its scored columns, origins, fixed limits and rule codes, and the
    incident probability / base rate / outcome at each origin (with an event model)."""

    w: SeriesWindow
    cols: list[int]
    origins: np.ndarray
    y: np.ndarray
    critical: np.ndarray
    codes: dict[str, np.ndarray]
    p: np.ndarray | None = None
    share: np.ndarray | None = None
    outcome: np.ndarray | None = None


def _series_case(w: SeriesWindow, predict: Callable, metrics: Sequence[str], every: int, test_fraction: float,
                 thresholds: Mapping[str, dict] | None, levels: Sequence[float],
                 probability: Callable | None, serving: Callable | None = None,
                 early_steps: Sequence[int] = (), early: int | None = None,
                 source: str = FORECAST_SOURCE, trend: Trend | None = None) -> _Case | None:  # fmt: skip
    origins = rolling_origins(len(w.values), test_fraction=test_fraction, every=every)
    if not len(origins):
        return None
    cols = [METRICS.index(m) for m in metrics]
    ctx = w.values[max(0, int(origins[0]) - CONTEXT) : int(origins[0])].astype(np.float64)
    limits = tuple(a[0, cols] for a in limits_batch(ctx[None], dict(thresholds or DEFAULT_THRESHOLDS), METRICS))
    y = w.values[:, cols].astype(np.float64)
    q = _forecasts(predict, w, origins)
    inputs = serving(w, cols, origins, q) if serving is not None else None
    served = q if inputs is None else inputs[3]  # the forecast as served: blended and calibrated
    read = q if source == FORECAST_MODEL else served  # what the rules read (TFT_ALERT_FORECAST_SOURCE)
    codes = {
        "served_forecast": forecast_codes(read, cols, limits, levels, early_steps=early),
        "served_p50": forecast_codes(read, cols, limits, levels, p50_only=True),
        "static_threshold": static_codes(y, origins, limits[1]),
        "predict_linear": linear_codes(y, origins, limits[1]),
    }
    if trend is not None:
        codes[TREND_RULE] = trend_codes(y, origins, limits[1], trend, w.states)
        codes[TREND_SERVER] = codes[TREND_RULE].max(axis=1, keepdims=True)  # as served: the server's alert
        codes[TREND_MERGED] = np.maximum(codes["served_forecast"], codes[TREND_RULE])
    sources = {"served_forecast": served}
    if inputs is not None:
        codes[RAW_RULE] = forecast_codes(q, cols, limits, levels, early_steps=early)
        sources[RAW_RULE] = q
    codes.update({
        early_rule(s, rule): forecast_codes(f, cols, limits, levels, early_steps=s)
        for rule, f in sources.items() for s in early_steps
    })  # fmt: skip
    case = _Case(w, cols, origins, y, limits[1], codes)
    if probability is not None:
        case.p, case.share, *rest = probability(w, cols, origins, q, inputs)
        case.outcome = rest[0] if rest else None
    return case


def _map_probabilities(cases: list[_Case], clocks: Mapping[str, tuple[str, bool]], live: lc.LiveMapConfig, *,
                       every: int, min_buckets: int) -> None:  # fmt: skip
    """Each case's probability replaced by what the service serves after its live map: per fleet on
    its clock, the outcomes of the replay's origins joining the map once their window has closed
    (engine.live_calibration.live_map_replay, each outcome counting `every` times)."""
    steps = PROB_WINDOWS[PROB_WINDOW]
    fleets: dict[str, list[_Case]] = {}
    for case in cases:
        fleets.setdefault(clocks.get(case.w.server, ("fleet", True))[0], []).append(case)
    for members in fleets.values():
        dated = all(clocks.get(c.w.server, ("fleet", True))[1] for c in members)
        times = [origin_clock(c.w, c.origins, dated) for c in members]
        closes = [t + (steps + min_buckets - 1) * c.w.step_minutes * 60.0 for t, c in zip(times, members, strict=True)]
        served = lc.live_map_replay(
            times=np.concatenate(times),
            closes=np.concatenate(closes),
            profiles=np.concatenate([np.full(len(c.origins), c.w.profile, dtype=object) for c in members]),
            p_prior=np.concatenate([c.p for c in members]),
            events=np.concatenate([c.outcome for c in members]).astype(np.float64),
            cfg=live,
            weight=float(every),
        )
        for c, part in zip(members, np.split(served, np.cumsum([len(c.origins) for c in members])[:-1]), strict=True):
            c.p = part


def alert_replay(
    series: list[SeriesWindow],
    predict: Callable[[list[SeriesWindow]], np.ndarray],
    *,
    scored: Mapping[str, Sequence[str]],
    family_of: Callable[[SeriesWindow, Sequence[str]], str],
    hysteresis: Hysteresis,
    levels: Sequence[float],
    every: int = REPLAY_EVERY,
    test_fraction: float = TEST_FRACTION,
    thresholds: Mapping[str, dict] | None = None,
    min_buckets: int = DEFAULT_MIN_BUCKETS,
    frontier: Sequence[Hysteresis] = (),
    probability: Callable | None = None,
    tau: float = PROB_TAU,
    taus: Sequence[float] = PROB_TAUS,
    lift: float = PROB_LIFT,
    lifts: Sequence[float] = PROB_LIFTS,
    prob_hysteresis: Hysteresis | None = None,
    serve_prob: bool = True,
    prob_source: str = PROB_SOURCE_MODEL,
    clocks: Mapping[str, tuple[str, bool]] | None = None,
    live: lc.LiveMapConfig | None = None,
    rise: float = PROB_RISE,
    rises: Sequence[float] = (PROB_RISE,),
    serving: Callable | None = None,
    early_steps: Sequence[int] = (),
    early: int | None = None,
    forecast_source: str = FORECAST_SOURCE,
    trend: Trend | None = None,
) -> dict[str, Any]:
    """The replay of the module docstring. `predict(windows)` gives the forecasts (B, H, M, K) in
    METRICS order at quantile `levels`; `scored` maps a series to its metrics; `family_of` names a
    series' family; `probability` (``event_probability``), when given, the incident probability and
    the series' base rate the ``incident_prob`` rule compares with `tau` and `lift` under
    `prob_hysteresis` (default `hysteresis`); `serve_prob`: ``served`` includes its alerts;
    `prob_source`: the probability it reads, the model's (``PROB_SOURCE_MODEL``) or the one served after
    the live map (``PROB_SOURCE_SERVED``: each fleet of `clocks` replayed online with `live`, as the
    probability backtest's ``served``, learning from the outcomes of the replay's own origins); `rise`:
    the threshold is also at least that × the series' mean P over the previous day (and the frontier
    sweeps `rises` too). Returns {"per_family": family → rule → figures,
    "pooled": rule → figures, "protocol": …}; with `frontier` (other hysteresis settings) also
    "frontier": the pooled figures under each of ``served`` (the forecast rules and the trend at the
    point's K / M, incident_prob at its own), the trend, the forecast rules and predict_linear (and
    ``incident_prob`` at each of `taus` × `lifts`), from the same forecasts (to choose K, M and tau
    on development series).
    `serving` (``served_forecasts``): the forecast rules read the forecast as the service serves it
    (blended, calibrated) and ``raw_forecast`` the model's own; None: the forecaster's as served (the
    heuristic fallback is served as it is). `early_steps`: also replay the forecast rules with the p90
    early warning reaching only that many steps ahead (``early_rule``; on the served forecast and, with
    `serving`, on the model's), alone and served with ``incident_prob``, under "early_warning" (to
    choose its reach and the forecast the rules read on development series); `early`: the
    served early warning's reach in steps (``TFT_ALERT_EARLY_WARNING_MINUTES``; None: the horizon);
    `forecast_source`: the forecast ``served_forecast`` and ``served_p50`` read (``TFT_ALERT_FORECAST_SOURCE``:
    "served", or "model", the forecaster's own); `trend`: the served trend rule (``alert_rules.Trend``,
    ``TFT_ALERT_TREND``), whose alert (one per series, ``trend``) ``served`` counts with the others',
    beside the diagnostics of ``TREND_UNIONS``; None: off."""
    rules = {
        "served_forecast": hysteresis,
        "static_threshold": IMMEDIATE,
        "predict_linear": hysteresis,
        "served_p50": hysteresis,
        **({PROB_RULE: prob_hysteresis or hysteresis} if probability is not None else {}),
        **({RAW_RULE: hysteresis} if serving is not None else {}),
        **(dict.fromkeys((TREND_SERVER, TREND_RULE, TREND_MERGED), hysteresis) if trend is not None else {}),
    }
    variant_rules = ("served_forecast", RAW_RULE) if serving is not None else ("served_forecast",)
    rules.update({early_rule(s, r): hysteresis for s in early_steps for r in variant_rules})
    served_parts = (*SERVED_PARTS[:1], *((TREND_SERVER,) if trend is not None else ()),
                    *(SERVED_PARTS[1:] if probability is not None and serve_prob else ()))  # fmt: skip
    unions = {"served": served_parts, **({"served_p50_prob": P50_PROB_PARTS} if probability is not None else {})}
    if trend is not None:
        unions.update({name: tuple(p for p in parts if p in rules and (p != PROB_RULE or serve_prob))
                       for name, parts in TREND_UNIONS.items()})  # fmt: skip
    unions.update({
        _early_union(s, r): (early_rule(s, r), *served_parts[1:]) for s in early_steps for r in variant_rules
    })  # fmt: skip
    swept = tuple((t, lf, r) for t in taus for lf in lifts for r in rises) if probability is not None else ()
    by_family: dict[str, dict[str, Counts]] = {}
    sweep: list[dict[str, dict[str, Counts]]] = [{} for _ in frontier]
    n_origins = 0
    case_of = partial(_series_case, every=every, test_fraction=test_fraction, thresholds=thresholds, levels=levels,
                      probability=probability, serving=serving, early_steps=early_steps, early=early,
                      source=forecast_source, trend=trend)  # fmt: skip
    cases = [c for w in series if (c := case_of(w, predict, scored[w.server]))]
    if probability is not None and prob_source == PROB_SOURCE_SERVED:
        _map_probabilities(cases, clocks or {}, live or lc.LiveMapConfig(), every=every, min_buckets=min_buckets)
    for case in cases:
        w, codes, p, share = case.w, case.codes, case.p, case.share
        y, origins, critical = case.y, case.origins, case.critical
        recent = None
        if probability is not None:
            recent = recent_mean(p, every=every, step_minutes=w.step_minutes)
            codes[PROB_RULE] = probability_codes(p, tau, share, lift, recent, rise)
        counts = replay_series(
            y, w.states, origins, codes, critical, rules, every=every, min_buckets=min_buckets, unions=unions
        )
        name = family_of(w, scored[w.server])
        family = by_family.setdefault(name, {r: Counts() for r in counts})
        for rule, c in counts.items():
            family[rule].add(c)
        # At each frontier point the forecast rules and the trend take its K / M; incident_prob in
        # "served" keeps its own (as served), its swept thresholds take the point's.
        swept_codes = {r: codes[r] for r in ("served_forecast", "predict_linear", "served_p50", TREND_SERVER) if r in codes}
        swept_codes.update(
            {f"{PROB_RULE}@{_prob_key(t, lf, r)}": probability_codes(p, t, share, lf, recent, r) for t, lf, r in swept}
        )
        own = {PROB_RULE: codes[PROB_RULE]} if PROB_RULE in served_parts else {}
        for point, h in zip(sweep, frontier, strict=True):
            point_counts = replay_series(
                y,
                w.states,
                origins,
                {**swept_codes, **own},
                critical,
                {**dict.fromkeys(swept_codes, h), **{r: rules[r] for r in own}},
                every=every,
                min_buckets=min_buckets,
                unions={"served": served_parts},
            )
            fam = point.setdefault(name, {r: Counts() for r in point_counts})
            for rule, c in point_counts.items():
                fam[rule].add(c)
        n_origins += len(origins)
    logger.info("alert replay: %d series, %d origins", len(series), n_origins)
    reports = {f: {r: c.report() for r, c in rules_.items()} for f, rules_ in sorted(by_family.items())}
    variants = [name for r in variant_rules for s in early_steps for name in (early_rule(s, r), _early_union(s, r))]
    per_family = {f: {r: v for r, v in fam.items() if r not in variants} for f, fam in reports.items()}
    out_frontier = []
    for point, h in zip(sweep, frontier, strict=True):
        fams = {f: {r: c.report() for r, c in rules_.items()} for f, rules_ in point.items()}
        pool = pooled(fams)
        row = {
            "open_after": h.open_after,
            "resolve_after": h.resolve_after,
            "served": pool["served"],
            **({TREND_SERVER: pool[TREND_SERVER]} if TREND_SERVER in pool else {}),
            "served_forecast": pool["served_forecast"],
            "predict_linear": pool["predict_linear"],
            "served_p50": pool["served_p50"],
        }
        if swept:
            keys = [_prob_key(t, lf, r) for t, lf, r in swept]
            row[PROB_RULE] = {k: pooled(fams, rules=(f"{PROB_RULE}@{k}",))[f"{PROB_RULE}@{k}"] for k in keys}
        out_frontier.append(row)
    return {
        **({"frontier": out_frontier} if frontier else {}),
        **(
            {
                "early_warning": {
                    "pooled": pooled(reports, rules=variants),
                    "per_family": {f: {r: fam[r] for r in variants if r in fam} for f, fam in reports.items()},
                }
            }
            if early_steps
            else {}
        ),
        "per_family": per_family,
        "pooled": pooled(per_family),
        "protocol": {
            "every_minutes": every * STEP_MINUTES,
            "origins": n_origins,
            "open_after": hysteresis.open_after,
            "resolve_after": hysteresis.resolve_after,
            "served": list(served_parts),
            "forecast": _forecast_read(serving, forecast_source),
            "early_warning_minutes": (HORIZON if early is None else early) * STEP_MINUTES,
            "trend": None if trend is None else {
                "fit_minutes": trend.fit * STEP_MINUTES,
                "reach_minutes": trend.reach * STEP_MINUTES,
                "hold_minutes": trend.hold * STEP_MINUTES,
                "near": trend.near,
                "expected_states": list(trend.expected),
            },
            "min_buckets": min_buckets,
            "warn_minutes": WARN_STEPS * STEP_MINUTES,
            **(
                {
                    "incident_prob": {
                        "window": PROB_WINDOW,
                        "tau": tau,
                        "lift": lift,
                        "rise": rise,
                        "frontier_rises": list(rises),
                        "source": prob_source,
                        "open_after": (prob_hysteresis or hysteresis).open_after["critical"],
                        "resolve_after": (prob_hysteresis or hysteresis).resolve_after["critical"],
                        "frontier_taus": list(taus),
                        "frontier_lifts": list(lifts),
                    }
                }
                if probability is not None
                else {}
            ),
        },
    }


def _forecast_read(serving: Callable | None, source: str) -> str:
    """What the replay's forecast rules read, in words (the protocol's "forecast")."""
    if serving is not None and source != FORECAST_MODEL:
        return "served (blended, calibrated)"
    return "the forecaster's own"


def _early_union(steps: int, rule: str = "served_forecast") -> str:
    """The name of ``served`` with the forecast rules of ``early_rule(steps, rule)``."""
    return f"served@ew{steps * STEP_MINUTES}m" if rule == "served_forecast" else f"served_raw@ew{steps * STEP_MINUTES}m"


def _prob_key(tau: float, lift: float, rise: float = 0.0) -> str:
    """A frontier point's name: "0.3" (tau alone), "0.05x1.5" (tau raised to 1.5 × the base rate),
    "0.05x1.5r2" (and to 2 × the mean P of the last day)."""
    return (f"{tau:g}" if lift <= 0 else f"{tau:g}x{lift:g}") + (f"r{rise:g}" if rise > 0 else "")


# The K / M settings `backtest --alert-frontier` replays (same K and M for both severities, and
# critical opening sooner than warning).
FRONTIER: tuple[Hysteresis, ...] = tuple(
    Hysteresis({"warning": kw, "critical": kc}, {"warning": m, "critical": m})
    for kw, kc in ((1, 1), (2, 1), (2, 2), (3, 2), (3, 3), (4, 2), (6, 3), (6, 6))
    for m in (1, 3, 6, 12)
)

POOLED_KEYS = (
    "recall_15m",
    "median_lead_minutes",
    "p25_lead_minutes",
    "false_alerts_per_server_day",
    "alert_minutes_per_server_day",
)


def pooled(per_family: Mapping[str, Mapping[str, dict]], *, rules: Sequence[str] = REPLAY_RULES) -> dict[str, dict]:
    """Families weighted equally: the mean of each family's figure (NaN families, e.g. recall where a
    family had no incident, left out); counts summed. Rules no family has are left out."""
    out: dict[str, dict] = {}
    for rule in rules:
        rows = [fam[rule] for fam in per_family.values() if rule in fam]
        if not rows:
            continue
        figures = {}
        for key in POOLED_KEYS:
            vals = np.array([r[key] for r in rows], dtype=np.float64)
            vals = vals[np.isfinite(vals)]
            figures[key] = float(vals.mean()) if vals.size else float("nan")
        figures["incidents"] = int(sum(r["incidents"] for r in rows))
        figures["families"] = len(rows)
        out[rule] = figures
    return out


def quantile_predictor(forecaster) -> Callable[[list[SeriesWindow]], np.ndarray]:
    """The forecasts (B, H, M, K) of a forecaster with ``predict_array`` (the TFT), at its ``quantiles``."""

    def predict(windows):
        return np.asarray(forecaster.predict_array(windows), dtype=np.float64)

    return predict


def heuristic_predictor(quantiles_of: Callable[[SeriesWindow], np.ndarray]) -> Callable:
    """The forecasts (B, H, M, K) from a per-window forecast (H, M, K) (the service's heuristic fallback)."""

    def predict(windows):
        return np.stack([quantiles_of(w) for w in windows])

    return predict
