"""What a run serves for each forecast, from its quantiles and context: the per-metric payload (p10,
p50, p90, current value, trend), the summary, the alert limits, the incident probabilities and the
alert candidates. Numpy only, vectorised across servers so serving 1,000 forecasts costs about as
much as a few dozen numpy calls."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import orjson

from forecasting.engine import alert_rules as rules
from forecasting.engine.blend import served_weights
from forecasting.engine.calibration import served_factors
from forecasting.engine.metrics import last_observed
from forecasting.engine.probability import incident_probabilities, limits_batch
from forecasting.engine.spec import CONTEXT, QUANTILES, SERVED_QUANTILES, STEP_MINUTES, TARGETS

RISING_SHARE = 0.5  # see _FleetArrays.rising


def _payload_text(payload: dict) -> str:
    """The payload as compact JSON text. orjson, not json: its float formatting is 8 × faster (the
    same shortest round-trip digits), and a non-finite value becomes null, never JSON's invalid NaN."""
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY).decode()


_SERVED_INDEX = {label: QUANTILES.index(q) for label, q in SERVED_QUANTILES.items()}


@dataclass
class ServedForecast:
    """What one forecast serves: stored with it and returned by the API."""

    payload: str  # the served JSON
    summary: dict
    candidates: list[dict]
    prob_30m: float
    prob_8h: float
    explain: bool = False  # rising toward a limit or calling for an alert: worth the explanation pass


def _slopes(series: np.ndarray) -> np.ndarray:
    """Least-squares slope along axis 1 of (N, H, M): the trend, in metric units per step."""
    h = series.shape[1]
    t = np.arange(h, dtype=np.float64) - (h - 1) / 2
    return np.einsum("h,nhm->nm", t, series) / float((t * t).sum())


def padded_context(windows: list) -> np.ndarray:
    """(N, CONTEXT, M) float64 with the most recent buckets right-aligned and NaN elsewhere."""
    out = np.full((len(windows), CONTEXT, len(TARGETS)), np.nan)
    for i, window in enumerate(windows):
        values = window.values[-CONTEXT:]
        out[i, CONTEXT - len(values) :] = values
    return out


def _trending(context: np.ndarray, critical: np.ndarray, trend_rule: rules.Trend | None,
              windows: list) -> np.ndarray:  # fmt: skip
    """(N, M) the trend rule on each server's recent values, every server × metric at once (each a
    column of one (CONTEXT, N × M) array), quiet where the server declares its climb expected
    (``alert_rules.expected_climb``); all False without a rule."""
    n, steps, m = context.shape
    if trend_rule is None or not n:
        return np.zeros((n, m), dtype=bool)
    columns = context.transpose(1, 0, 2).reshape(steps, n * m)
    crossing = rules.trend_crossing(columns, np.array([steps]), critical.reshape(n * m), trend_rule).reshape(n, m)
    recent = np.full((n, trend_rule.hold), -1, dtype=np.int16)  # -1: no bucket (a short history)
    for i, w in enumerate(windows):  # a slice each: 1,000 servers in about a millisecond
        tail = w.states[-trend_rule.hold :]
        recent[i, trend_rule.hold - len(tail) :] = tail
    return crossing & ~rules.expected_climb(recent, trend_rule)[:, None]


def _rounded(a: np.ndarray) -> np.ndarray:
    """The payload's values: 3 decimals, as float64 (rounded once per chunk, listed per server)."""
    return np.round(a.astype(np.float64), 3)


@dataclass
class _FleetArrays:
    """Per-server, per-metric arrays of a chunk's forecasts, computed once for all servers."""

    p10: np.ndarray
    p50: np.ndarray
    p90: np.ndarray
    current: np.ndarray
    trend: np.ndarray
    warning: np.ndarray
    critical: np.ndarray
    probs: dict
    # (N, H, M) the p50 / p90 the alert rules read: the served ones, or the model's own where given
    rule_p50: np.ndarray
    rule_p90: np.ndarray
    rule_source: list[str]  # per server: "model" where the rules read the model's own, else "served"
    context: np.ndarray  # (N, CONTEXT, M) the recent values, right-aligned (padded_context)
    trending: np.ndarray  # (N, M) bool: the trend rule calls for a warning (alert_rules.trend_crossing)
    trend_rule: rules.Trend | None = None
    shown: dict = field(default_factory=dict)  # p10 / p50 / p90 as the payload lists them (_rounded)

    @classmethod
    def of(cls, windows: list, quantiles: np.ndarray, thresholds: dict,
           rule_quantiles: np.ndarray | None = None, trend_rule: rules.Trend | None = None) -> _FleetArrays:  # fmt: skip
        context = padded_context(windows)
        warning, critical = limits_batch(context, thresholds, TARGETS)
        p10, p50, p90 = (quantiles[..., _SERVED_INDEX[label]] for label in ("p10", "p50", "p90"))
        probs = incident_probabilities(quantiles, np.array(QUANTILES), critical)
        trend = _slopes(p50.astype(np.float64))
        current = last_observed(context)
        rule_p50, rule_p90, own = p50, p90, np.zeros(len(windows), dtype=bool)
        if rule_quantiles is not None:  # a row of NaN (a fallback forecast) reads the served forecast
            own = np.isfinite(rule_quantiles).all(axis=(1, 2, 3))
            rule_p50 = np.where(own[:, None, None], rule_quantiles[..., 0], p50)
            rule_p90 = np.where(own[:, None, None], rule_quantiles[..., 1], p90)
        return cls(p10, p50, p90, np.where(np.isnan(current), 0.0, current), trend, warning, critical, probs,
                   rule_p50, rule_p90, ["model" if o else "served" for o in own], context,
                   _trending(context, critical, trend_rule, windows), trend_rule)  # fmt: skip

    def metric_payload(self, i: int, m: int) -> dict:
        return {
            "p10": self._shown("p10")[i, :, m].tolist(),
            "p50": self._shown("p50")[i, :, m].tolist(),
            "p90": self._shown("p90")[i, :, m].tolist(),
            "current": round(float(self.current[i, m]), 3),
            "trend": round(float(self.trend[i, m]), 4),
        }

    def _shown(self, label: str) -> np.ndarray:
        if label not in self.shown:
            self.shown[label] = _rounded(getattr(self, label))
        return self.shown[label]

    def metric_summary(self, i: int, m: int) -> dict:
        return {
            "current": round(float(self.current[i, m]), 3),
            "peak_p50": round(float(self.p50[i, :, m].max()), 3),
            "peak_p90": round(float(self.p90[i, :, m].max()), 3),
            "peak_step": int(self.p50[i, :, m].argmax()) + 1,
            "warning": round(float(self.warning[i, m]), 3),
            "critical": round(float(self.critical[i, m]), 3),
            "prob_30m": round(float(self.probs["metric_30m"][i, m]), 4),
            "prob_8h": round(float(self.probs["metric_8h"][i, m]), 4),
        }

    def flagged(self) -> np.ndarray:
        """Servers whose forecast reaches a limit somewhere, or whose trend does: only they need the
        alert rules."""
        reached = (self.rule_p50.max(axis=1) >= self.warning) | (self.rule_p90.max(axis=1) >= self.critical)
        return (reached | self.trending).any(axis=1)

    def rising(self) -> np.ndarray:
        """Servers whose median forecast closes at least half the gap from the current value to the
        warning limit: the forecasts an operator asks "why?" about, before any alert. (The p90 did so
        for 97 % of a simulated fleet: its spread alone reaches halfway.)"""
        gap = self.warning - self.current
        climb = self.p50.max(axis=1) - self.current
        return ((gap > 0) & (climb >= RISING_SHARE * gap)).any(axis=1)

    def candidates(self, i: int, server: str, early_steps: int | None = None) -> list[dict]:
        out, trends = [], []
        for m, metric in enumerate(TARGETS):
            limits = rules.Limits(float(self.warning[i, m]), float(self.critical[i, m]))
            out += rules.alert_candidates(server, metric, self.rule_p50[i, :, m], self.rule_p90[i, :, m], limits,
                                          STEP_MINUTES, early_steps=early_steps,
                                          source=self.rule_source[i])  # fmt: skip
            if self.trending[i, m]:
                candidate = rules.trend_candidate(server=server, metric=metric, values=self.context[i, :, m],
                                                  limits=limits, trend=self.trend_rule, step_minutes=STEP_MINUTES)  # fmt: skip
                trends += [candidate] if candidate is not None else []
        return out + trends  # one per trending metric: the lifecycle leaves silenced ones out, then merges


def peak_ratios(summary: dict) -> tuple[dict[str, float], str | None, float]:
    """Median peak ÷ critical limit per metric of a forecast's summary, the metric that comes closest
    to (or furthest past) its limit, and that ratio (≥ 0): how the fleet table orders servers after
    P(8 h). Stored with each forecast (ServerForecast.peak_ratio) so the table orders a fleet without
    decoding every summary."""
    ratios, worst, top = {}, None, -1.0
    for metric in TARGETS:
        s = summary.get(metric)
        critical = s.get("critical") if s else None
        r = s["peak_p50"] / critical if critical else 0.0
        ratios[metric] = r
        if critical and r > top:
            worst, top = metric, r
    return ratios, worst, max(top, 0.0)


def serve_forecasts(
    windows: list,
    quantiles: np.ndarray,
    thresholds: dict,
    log_factors: np.ndarray | None = None,
    blend_weights: np.ndarray | None = None,
    *,
    early_steps: int | None = None,
    rule_quantiles: np.ndarray | None = None,
    trend: rules.Trend | None = None,
) -> list[ServedForecast]:
    """Payload, summary, probabilities and alert candidates for N forecasts (N, H, M, K), vectorised
    across servers so scoring 1,000 servers costs about as much as a few dozen numpy calls. The
    payload records the interval calibration (log_factors, (N, M, bands, 2)) and the blend with the
    last value (blend_weights, the model's weight (N, M, bands)) each forecast was served with.
    ``early_steps``: how far ahead the p90 early warning looks (None: the whole horizon);
    ``rule_quantiles`` (N, H, M, 2): the p50 / p90 the alert rules read instead of the served ones
    (the model's own, TFT_ALERT_FORECAST_SOURCE=model; a row of NaN reads the served forecast);
    ``trend``: the trend rule on each server's recent values (None: off)."""
    scores = _FleetArrays.of(windows, quantiles, thresholds, rule_quantiles, trend)
    flagged = scores.flagged()
    explain = flagged | scores.rising()
    out = []
    for i, window in enumerate(windows):
        payload = {metric: scores.metric_payload(i, m) for m, metric in enumerate(TARGETS)}
        for m, metric in enumerate(TARGETS):
            payload[metric]["calibration"] = served_factors(None if log_factors is None else log_factors[i, m])
            payload[metric]["blend"] = served_weights(None if blend_weights is None else blend_weights[i, m])
        out.append(
            ServedForecast(
                payload=_payload_text(payload),
                summary={metric: scores.metric_summary(i, m) for m, metric in enumerate(TARGETS)},
                candidates=scores.candidates(i, window.server, early_steps) if flagged[i] else [],
                prob_30m=round(float(scores.probs["prob_30m"][i]), 4),
                prob_8h=round(float(scores.probs["prob_8h"][i]), 4),
                explain=bool(explain[i]),
            )
        )
    return out


