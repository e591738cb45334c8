"""The backtest's alert replay (engine.alert_replay) scores hand-built series with known incidents exactly."""

import math

import numpy as np
import pytest

from forecasting.engine.alert_replay import (
    linear_codes,
    pooled,
    replay_series,
    series_incidents,
    static_codes,
)
from forecasting.engine.alert_rules import Hysteresis
from forecasting.engine.spec import STATE_INDEX, STEPS_PER_DAY

RULE = Hysteresis({"warning": 3, "critical": 2}, {"warning": 2, "critical": 2})


def _series():
    """300 buckets at 50 with a threshold incident at 100-104 and 200-203 (critical 90) and a
    reported one (critical_issue) at 150-155."""
    y = np.full((300, 1), 50.0)
    y[100:105], y[200:204] = 95.0, 95.0
    states = np.full(300, STATE_INDEX["healthy"], dtype=np.int8)
    states[150:156] = STATE_INDEX["critical_issue"]
    return y, states


def test_incidents_are_the_one_definitions_starts():
    y, states = _series()
    incidents = series_incidents(y, states, np.array([90.0]))
    assert incidents.starts == [(100, 0), (150, -1), (200, 0)]
    assert incidents.active.sum() == 5 + 6 + 4


def test_a_hand_built_alert_sequence_is_scored_exactly():
    y, states = _series()
    codes = np.zeros((300, 1), dtype=np.int64)
    codes[90:111] = 2  # predicted from 90: opens at 91 (K=2), resolves at 112 (M=2)
    codes[250:253] = 2  # nothing follows: opens at 251, resolves at 254, a false alert
    counts = replay_series(y, states, np.arange(300), {"served": codes}, np.array([90.0]), {"served": RULE})["served"]

    assert counts.incidents == 3
    assert counts.warned == 1 and counts.leads == [(100 - 91) * 5.0]
    assert counts.episodes == 2 and counts.false_alerts == 1
    assert counts.alert_minutes == ((112 - 91) + (254 - 251)) * 5
    assert counts.server_days == pytest.approx(300 / STEPS_PER_DAY)
    report = counts.report()
    assert report["recall_15m"] == pytest.approx(1 / 3)
    assert report["false_alerts_per_server_day"] == pytest.approx(1 / (300 / STEPS_PER_DAY))


def test_an_alert_opened_less_than_15_minutes_before_does_not_count():
    y, states = _series()
    codes = np.zeros((300, 1), dtype=np.int64)
    codes[97:106] = 2  # opens at 98: open 10 minutes before the start at 100
    counts = replay_series(y, states, np.arange(300), {"served": codes}, np.array([90.0]), {"served": RULE})["served"]
    assert counts.warned == 0 and counts.false_alerts == 0


def test_a_stride_counts_origins_and_closes_after_the_last_one():
    y, states = _series()
    origins = np.arange(0, 300, 3)
    codes = np.zeros((len(origins), 1), dtype=np.int64)
    codes[-2:] = 2  # the last two origins (294, 297): open at 297, still open at the end (300)
    counts = replay_series(y, states, origins, {"served": codes}, np.array([90.0]), {"served": RULE}, every=3)["served"]
    assert counts.episodes == 1 and counts.alert_minutes == 3 * 5 and counts.false_alerts == 1


def test_static_threshold_needs_ten_minutes_at_critical():
    y, _ = _series()
    codes = static_codes(y, np.array([101, 102, 105, 106]), np.array([90.0]))
    assert codes[:, 0].tolist() == [0, 2, 2, 0]


def test_predict_linear_projects_the_last_hour_to_the_horizon():
    y = np.full((100, 1), np.nan)
    y[38:50, 0] = np.arange(12.0)  # +1 per step, 11 at the bucket before origin 50
    projected = 11 + 96  # the line at the horizon's last step (95 steps after origin 50)
    assert linear_codes(y, np.array([50]), np.array([projected]))[0, 0] == 2
    assert linear_codes(y, np.array([50]), np.array([projected + 0.5]))[0, 0] == 0


def test_pooled_weighs_families_equally():
    row = {
        "recall_15m": 1.0,
        "median_lead_minutes": 60.0,
        "p25_lead_minutes": 30.0,
        "false_alerts_per_server_day": 0.0,
        "alert_minutes_per_server_day": 10.0,
        "incidents": 1,
    }
    quiet = {
        **row,
        "recall_15m": math.nan,
        "median_lead_minutes": math.nan,
        "p25_lead_minutes": math.nan,
        "false_alerts_per_server_day": 1.0,
        "incidents": 0,
    }
    out = pooled({"cpu": {"served": row}, "disk": {"served": quiet}})["served"]
    assert out["recall_15m"] == 1.0 and out["false_alerts_per_server_day"] == 0.5 and out["incidents"] == 1
