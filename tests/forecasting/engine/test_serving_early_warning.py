"""The served alert candidates honour the p90 early warning's reach (engine.serving.serve_forecasts)."""

import numpy as np

from forecasting.engine.serving import serve_forecasts
from forecasting.engine.spec import DEFAULT_THRESHOLDS, HORIZON, METRICS, QUANTILES
from tests.forecasting.engine.test_probability import _window


def _far_p90_forecast() -> np.ndarray:
    """cpu's p50 flat at 40 and its p90 above critical from step 61 (5 h ahead); the rest flat."""
    q = np.full((1, HORIZON, len(METRICS), len(QUANTILES)), 40.0) + np.arange(len(QUANTILES)) * 0.01
    q[0, 60:, 0, QUANTILES.index(0.9) :] = 99.0
    return q


def _rules(early_steps):
    """cpu's candidates (the other metrics' relative limits sit on a context of zeros)."""
    (served,) = serve_forecasts([_window(np.full(300, 40.0))], _far_p90_forecast(), DEFAULT_THRESHOLDS,
                                early_steps=early_steps)  # fmt: skip
    return [(c["rule"], c["steps_ahead"]) for c in served.candidates if c["metric"] == "cpu_pct"]


def test_a_p90_reaching_critical_within_the_reach_is_an_early_warning():
    assert _rules(None) == _rules(96) == [("p90_early_warning", 61)]


def test_a_p90_reaching_critical_beyond_the_reach_is_no_alert():
    assert _rules(60) == []


def _rule_quantiles(p90: float) -> np.ndarray:
    """(1, H, M, 2) a model's own p50 / p90: flat at 40 / ``p90``."""
    q = np.full((1, HORIZON, len(METRICS), 2), 40.0)
    q[..., 1] = p90
    return q


def _cpu_rules(quantiles, rule_quantiles) -> list[str]:
    (served,) = serve_forecasts([_window(np.full(300, 40.0))], quantiles, DEFAULT_THRESHOLDS,
                                rule_quantiles=rule_quantiles)  # fmt: skip
    return [c["rule"] for c in served.candidates if c["metric"] == "cpu_pct"]


def test_the_rules_read_the_models_own_quantiles_where_given():
    # served: p90 above critical from 5 h; the model's own p90 stays at 60: no alert
    assert _cpu_rules(_far_p90_forecast(), _rule_quantiles(60.0)) == []
    # served: flat; the model's own p90 at 99: the early warning from the first step
    flat = np.full((1, HORIZON, len(METRICS), len(QUANTILES)), 40.0) + np.arange(len(QUANTILES)) * 0.01
    assert _cpu_rules(flat, _rule_quantiles(99.0)) == ["p90_early_warning"]


def test_a_fallback_forecasts_row_of_nan_reads_the_served_forecast():
    assert _cpu_rules(_far_p90_forecast(), np.full((1, HORIZON, len(METRICS), 2), np.nan)) == ["p90_early_warning"]


def _cpu_messages(quantiles, rule_quantiles) -> list[str]:
    (served,) = serve_forecasts([_window(np.full(300, 40.0))], quantiles, DEFAULT_THRESHOLDS,
                                rule_quantiles=rule_quantiles)  # fmt: skip
    return [c["message"] for c in served.candidates if c["metric"] == "cpu_pct"]


def test_an_alert_from_the_models_own_quantiles_says_model_forecast():
    flat = np.full((1, HORIZON, len(METRICS), len(QUANTILES)), 40.0) + np.arange(len(QUANTILES)) * 0.01
    (message,) = _cpu_messages(flat, _rule_quantiles(99.0))
    assert "cpu_pct p90 model forecast peaks at 99.0" in message


def test_an_alert_from_the_served_forecast_says_forecast():
    (message,) = _cpu_messages(_far_p90_forecast(), np.full((1, HORIZON, len(METRICS), 2), np.nan))
    assert "cpu_pct p90 forecast peaks at 99.0" in message
