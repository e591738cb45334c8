"""The served alert candidates include the trend rule on each server's recent values: one candidate
per server (metric "trend") naming the metric that trends (engine.serving.serve_forecasts with a trend)."""

import numpy as np

from forecasting.engine.alert_rules import TREND_EXPECTED_STATES, TREND_METRIC, TREND_RULE, Trend
from forecasting.engine.serving import serve_forecasts
from forecasting.engine.spec import DEFAULT_THRESHOLDS, HORIZON, METRICS, QUANTILES, STATE_INDEX
from tests.forecasting.engine.test_probability import _window

TREND = Trend(fit=24, reach=48, hold=3)
SERVED = Trend(fit=24, reach=48, hold=3, expected=TREND_EXPECTED_STATES)


def _flat_forecast(n: int = 1) -> np.ndarray:
    """A forecast flat at 40 (no forecast rule calls for anything)."""
    return np.full((n, HORIZON, len(METRICS), len(QUANTILES)), 40.0) + np.arange(len(QUANTILES)) * 0.01


def _climbing() -> np.ndarray:
    """cpu at 40 for 270 buckets, then +1.5 a bucket for the last 30 (85 at the end): the line through
    the last 2 h, drawn 4 h ahead, passes cpu's critical limit (95) and has for the last 15 min."""
    cpu = np.full(300, 40.0)
    cpu[270:] = 40.0 + 1.5 * np.arange(1, 31)
    return cpu


def _trends(cpu: np.ndarray, trend: Trend | None, last_states: tuple[str, ...] = ()) -> list[tuple]:
    """(metric, rule, trending metric) of the trend candidates of a server with that cpu (its last
    buckets reporting `last_states`, oldest first; healthy before)."""
    window = _window(cpu)
    for back, state in enumerate(reversed(last_states), start=1):
        window.states[-back] = STATE_INDEX[state]
    (served,) = serve_forecasts([window], _flat_forecast(), DEFAULT_THRESHOLDS, trend=trend)
    return [(c["metric"], c["rule"], c["trending"]) for c in served.candidates if c["rule"] == TREND_RULE]


def test_a_climb_the_forecast_damps_is_the_servers_trend_warning():
    assert _trends(_climbing(), TREND) == [(TREND_METRIC, TREND_RULE, "cpu_pct")]


def test_no_trend_warning_without_the_rule():
    assert _trends(_climbing(), None) == []


def test_no_trend_warning_on_a_flat_series():
    assert _trends(np.full(300, 40.0), TREND) == []


def test_the_trend_rule_reads_each_servers_own_values_in_a_batch():
    servers = [_window(np.full(300, 40.0)), _window(_climbing()), _window(np.full(300, 40.0))]
    served = serve_forecasts(servers, _flat_forecast(3), DEFAULT_THRESHOLDS, trend=TREND)
    assert [[c["trending"] for c in s.candidates if c["rule"] == TREND_RULE] for s in served] == [[], ["cpu_pct"], []]


def test_no_trend_warning_through_a_climb_the_server_declares_expected():
    # the server reports heavy_load ("high utilization but stable") at the last of the hold's buckets
    assert _trends(_climbing(), SERVED, ("healthy", "healthy", "heavy_load")) == []


def test_a_declared_state_before_the_hold_leaves_the_trend_warning():
    # heavy_load 15 min ago and healthy since: the climb of the last 15 min is the server's own
    assert _trends(_climbing(), SERVED, ("heavy_load", "healthy", "healthy", "healthy")) == [
        (TREND_METRIC, TREND_RULE, "cpu_pct")
    ]


def test_without_expected_states_every_climb_counts():
    assert _trends(_climbing(), TREND, ("heavy_load",)) == [(TREND_METRIC, TREND_RULE, "cpu_pct")]
