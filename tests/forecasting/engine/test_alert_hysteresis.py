"""The hysteresis every alert goes through (engine.alert_rules.hysteresis_step), on hand-built runs."""

import numpy as np
import pytest

from forecasting.engine.alert_rules import (
    CHANGED,
    OPENED,
    RESOLVED,
    Hysteresis,
    Limits,
    Streak,
    alert_candidates,
    alert_episodes,
    hysteresis_step,
    severity_codes,
    top_severity,
)

RULE = Hysteresis({"warning": 3, "critical": 2}, {"warning": 4, "critical": 2})


def _events(predictions, rule=RULE):
    streak, out = Streak(), []
    for p in predictions:
        streak, event = hysteresis_step(streak, p, rule)
        out.append(event)
    return out, streak


def test_a_warning_opens_on_the_kth_consecutive_run():
    events, streak = _events(["warning", "warning", "warning"])
    assert events == [None, None, OPENED] and streak.severity == "warning"


def test_a_run_without_a_prediction_restarts_the_count():
    events, streak = _events(["warning", "warning", None, "warning", "warning"])
    assert OPENED not in events and streak == Streak(hits=2)


def test_a_critical_opens_on_its_own_smaller_k():
    events, _ = _events(["warning", "critical"])
    assert events == [None, OPENED]


def test_an_open_alert_resolves_on_the_mth_run_without_it():
    events, streak = _events(["warning"] * 3 + [None] * 4)
    assert events[3:] == [None, None, None, RESOLVED] and streak == Streak()


def test_no_flapping_a_prediction_between_misses_keeps_it_open():
    events, streak = _events(["warning"] * 3 + [None, None, None, "warning", None, None, None, "warning"])
    assert events.count(OPENED) == 1 and RESOLVED not in events and streak.severity == "warning"


def test_a_severity_change_is_a_transition_of_the_open_alert():
    events, streak = _events(["critical", "critical", "warning", "critical"])
    assert events == [None, OPENED, CHANGED, CHANGED] and streak.severity == "critical"


def test_episodes_of_a_code_sequence():
    codes = np.array([0, 2, 2, 2, 0, 0, 0, 1, 1, 1, 1])
    assert alert_episodes(codes, RULE) == [(2, 5), (9, 11)]


def test_counts_must_cover_both_severities_and_be_positive():
    with pytest.raises(ValueError, match="open_after"):
        Hysteresis({"warning": 0, "critical": 1}, {"warning": 1, "critical": 1})


def test_severity_codes_agree_with_the_served_candidates():
    rng = np.random.default_rng(3)
    limits = Limits(warning=80.0, critical=95.0)
    p50 = rng.uniform(40, 100, size=(200, 1)) + rng.uniform(-3, 3, size=(200, 96))
    p90 = p50 + rng.uniform(0, 20, size=(200, 1))
    codes = severity_codes(p50, p90, np.full(200, limits.warning), np.full(200, limits.critical))
    expected = [top_severity(alert_candidates("s", "cpu_pct", a, b, limits, 5)) for a, b in zip(p50, p90, strict=True)]
    assert [{0: None, 1: "warning", 2: "critical"}[int(c)] for c in codes] == expected
    assert set(codes) == {0, 1, 2}


def test_severity_codes_agree_with_the_served_candidates_when_the_early_warning_reaches_less_far():
    rng = np.random.default_rng(4)
    limits = Limits(warning=80.0, critical=95.0)
    p50 = rng.uniform(40, 90, size=(200, 1)) + rng.uniform(-3, 3, size=(200, 96))
    p90 = p50 + rng.uniform(0, 20, size=(200, 1)) + np.linspace(0, 10, 96)[None, :]  # widening with the horizon
    codes = severity_codes(p50, p90, np.full(200, limits.warning), np.full(200, limits.critical), early_steps=24)
    expected = [
        top_severity(alert_candidates("s", "cpu_pct", a, b, limits, 5, early_steps=24))
        for a, b in zip(p50, p90, strict=True)
    ]
    assert [{0: None, 1: "warning", 2: "critical"}[int(c)] for c in codes] == expected
    whole = severity_codes(p50, p90, np.full(200, limits.warning), np.full(200, limits.critical))
    assert (codes <= whole).all() and (codes < whole).any()
