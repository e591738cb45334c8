"""Probabilities and alert rules on hand-built forecasts."""

import math

import numpy as np
import pytest

from forecasting.engine import alert_rules as rules
from forecasting.engine.alert_rules import (
    Limits,
    alert_candidates,
    incident_candidate,
    incident_prob_codes,
    incident_prob_threshold,
    lead_time,
    recent_mean,
)
from forecasting.engine.probability import exceedance, fleet_environment, incident_probabilities, limits_batch
from forecasting.engine.spec import STATE_INDEX

LEVELS = np.array([0.1, 0.5, 0.9])


def test_exceedance_interpolates_between_quantiles():
    q = np.array([10.0, 20.0, 30.0])

    assert exceedance(q, LEVELS, 20.0) == pytest.approx(0.5)
    assert exceedance(q, LEVELS, 25.0) == pytest.approx(0.3)
    assert exceedance(q, LEVELS, 15.0) == pytest.approx(0.7)


def test_exceedance_upper_tail_is_exponential_from_the_outer_quantiles():
    q = np.array([10.0, 20.0, 30.0])
    b = 10.0 / math.log(0.5 / 0.1)

    assert exceedance(q, LEVELS, 30.0 + b * math.log(2)) == pytest.approx(0.05)
    assert exceedance(q, LEVELS, 1e6) == pytest.approx(0.0)


def test_exceedance_lower_tail_is_exponential_too():
    q = np.array([10.0, 20.0, 30.0])
    b = 10.0 / math.log(0.5 / 0.1)

    assert exceedance(q, LEVELS, 10.0 - b * math.log(2)) == pytest.approx(1 - 0.05)


def test_window_probability_is_the_worst_step_and_metrics_combine_as_independent():
    # Two metrics; metric 0 crosses with p 0.3 at step 3 only, metric 1 with p 0.5 at step 10.
    h = 96
    q = np.zeros((h, 2, 3))
    q[:, 0] = [10, 20, 30]
    q[:, 1] = [10, 20, 30]
    q[2, 0] = [20, 30, 40]  # P(X > 35) = 0.1 + ... interpolated: (35-30)/(40-30)*0.4 → 0.3
    q[9, 1] = [25, 35, 45]  # P(X > 35) = 0.5
    probs = incident_probabilities(q[None], LEVELS, np.array([[35.0, 35.0]]))

    assert probs["metric_30m"][0, 0] == pytest.approx(0.3)
    assert probs["metric_30m"][0, 1] == pytest.approx(exceedance(np.array([10, 20, 30.0]), LEVELS, 35.0))
    assert probs["metric_8h"][0, 1] == pytest.approx(0.5)
    assert probs["prob_8h"][0] == pytest.approx(1 - (1 - 0.3) * (1 - 0.5))


def test_fleet_probability_assumes_independent_servers():
    env = fleet_environment([(0.2, 0.5), (0.5, 0.1), (0.0, 0.0)])

    assert env["prob_30m"] == pytest.approx(1 - 0.8 * 0.5)
    assert env["prob_8h"] == pytest.approx(1 - 0.5 * 0.9)
    assert env["high_risk_servers"] == 1
    assert env["total_servers"] == 3
    assert env["fleet_health"] == "critical"  # the second server: prob_30m 0.5


@pytest.mark.parametrize(
    ("pairs", "health"),
    [([(0.0, 0.0)], "healthy"), ([(0.1, 0.55)], "warning"), ([(0.6, 0.9)], "critical"), ([], "healthy"),
     ([(0.02, 0.04)] * 20, "healthy"), ([(0.02, 0.1)] * 20, "warning"), ([(0.06, 0.1)] * 20, "critical")],
)
def test_fleet_health_cut_offs(pairs, health):
    # 20 servers: 0.8 expected within 8 h is healthy, 2 is a warning (> 1 per 20 servers); 1.2 within 30 min is critical
    assert fleet_environment(pairs)["fleet_health"] == health


@pytest.mark.parametrize(("alerts", "health"), [({"warning_alerts": 1}, "warning"), ({"critical_alerts": 1}, "critical")])
def test_open_alerts_set_a_floor_on_fleet_health(alerts, health):
    assert fleet_environment([(0.0, 0.0)] * 20, **alerts)["fleet_health"] == health


def test_p50_crossing_raises_warning_and_critical_with_steps_ahead():
    p50 = np.linspace(80, 99, 96)
    alerts = alert_candidates("ppdb001", "cpu_pct", p50, p50 + 1, Limits(85, 95), 5)

    by_severity = {a["severity"]: a for a in alerts}
    first_warning = int(np.argmax(p50 >= 85)) + 1
    assert by_severity["warning"]["steps_ahead"] == first_warning
    assert by_severity["warning"]["minutes_ahead"] == first_warning * 5
    assert by_severity["critical"]["rule"] == "p50_critical"
    assert by_severity["critical"]["predicted_value"] == pytest.approx(99.0)
    assert by_severity["critical"]["threshold"] == 95


def test_p90_reaching_critical_is_an_early_warning():
    p50 = np.full(96, 60.0)
    p90 = np.full(96, 60.0)
    p90[40:] = 97
    alerts = alert_candidates("ppdb001", "mem_pct", p50, p90, Limits(85, 95), 5)

    assert [(a["severity"], a["rule"], a["steps_ahead"]) for a in alerts] == [("warning", "p90_early_warning", 41)]


def test_p90_reaching_critical_beyond_the_early_warnings_reach_is_no_alert():
    p50 = np.full(96, 60.0)
    p90 = np.full(96, 60.0)
    p90[40:] = 97  # crosses at step 41 (3 h 25 min)

    assert alert_candidates("ppdb001", "mem_pct", p50, p90, Limits(85, 95), 5, early_steps=40) == []
    assert len(alert_candidates("ppdb001", "mem_pct", p50, p90, Limits(85, 95), 5, early_steps=41)) == 1


def test_the_early_warnings_reach_leaves_the_p50_rules_their_whole_horizon():
    p50 = np.full(96, 60.0)
    p50[90:] = 96  # the median reaches critical at step 91
    alerts = alert_candidates("ppdb001", "mem_pct", p50, p50 + 1, Limits(85, 95), 5, early_steps=12)

    assert {(a["rule"], a["steps_ahead"]) for a in alerts} == {("p50_critical", 91), ("p50_warning", 91)}


def test_no_alert_below_thresholds():
    flat = np.full(96, 50.0)

    assert alert_candidates("s", "cpu_pct", flat, flat, Limits(85, 95), 5) == []


def test_relative_limits_scale_the_recent_p95_with_a_floor():
    context = np.array([10.0] * 95 + [30.0] * 5 + [np.nan])
    flat = np.zeros(101)
    rule = {"warning": 1.5, "critical": 2.0, "relative": True, "floor": 5.0}

    warning, critical = limits_batch(np.stack([context, flat])[:, :, None], {"x": rule}, ("x",))

    level = np.percentile(context[:100], 95)
    assert (warning[0, 0], critical[0, 0]) == pytest.approx((1.5 * level, 2.0 * level))
    assert (warning[1, 0], critical[1, 0]) == (5.0, 5.0)


def test_relative_limits_of_a_fleet_with_and_without_gaps_are_nanpercentiles_own():
    rng = np.random.default_rng(3)
    context = rng.gamma(2.0, 5.0, size=(40, 288, 1))
    context[3, :50], context[7, ::4], context[9] = np.nan, np.nan, np.nan  # gaps; a server with no value
    rule = {"warning": 2.0, "critical": 3.0, "relative": True, "floor": 0.0}

    _, critical = limits_batch(context, {"x": rule}, ("x",))

    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        level = np.nan_to_num(np.nanpercentile(context[:, :, 0], 95, axis=1), nan=0.0)
    assert np.array_equal(critical[:, 0], 3.0 * level)


def test_absolute_limits_are_the_thresholds_themselves():
    warning, critical = limits_batch(np.zeros((2, 5, 1)), {"x": {"warning": 85, "critical": 95, "relative": False}}, ("x",))

    assert warning.tolist() == [[85], [85]] and critical.tolist() == [[95], [95]]


def _only(alerts, rule):
    (alert,) = [a for a in alerts if a["rule"] == rule]
    return alert


def test_p90_early_warning_message_names_the_rule_and_the_critical_threshold():
    p50 = np.full(96, 60.0)
    p90 = np.full(96, 60.0)
    p90[26:] = 96.1  # first at step 27: 135 minutes ahead
    alert = _only(alert_candidates("ppdb001", "mem_pct", p50, p90, Limits(85, 95), 5), "p90_early_warning")

    assert alert["message"] == (
        "ppdb001: mem_pct p90 forecast peaks at 96.1, crossing in 2 h 15 min (early warning: p90 ≥ critical 95.0)"
    )


def test_p50_warning_message_names_the_rule_and_the_warning_threshold():
    p50 = np.full(96, 60.0)
    p50[7:] = 91.0  # first at step 8: 40 minutes ahead; below critical
    alert = _only(alert_candidates("ppdb001", "cpu_pct", p50, p50 + 2, Limits(90, 95), 5), "p50_warning")

    assert alert["message"] == "ppdb001: cpu_pct p50 forecast peaks at 91.0, crossing in 40 min (warning: p50 ≥ warning 90.0)"


def test_p50_critical_message_names_the_rule_and_the_critical_threshold():
    p50 = np.full(96, 60.0)
    p50[11:] = 97.5  # warning and critical both first at step 12: 1 h ahead
    alert = _only(alert_candidates("ppdb001", "cpu_pct", p50, p50 + 1, Limits(90, 95), 5), "p50_critical")

    assert alert["message"] == "ppdb001: cpu_pct p50 forecast peaks at 97.5, crossing in 1 h (critical: p50 ≥ critical 95.0)"


@pytest.mark.parametrize(("minutes", "text"), [(5, "5 min"), (60, "1 h"), (135, "2 h 15 min"), (480, "8 h")])
def test_lead_time_reads_in_hours_and_minutes(minutes, text):
    assert lead_time(minutes) == text


def test_incident_prob_threshold_is_tau_alone_without_a_lift():
    assert incident_prob_threshold(np.array([0.9]), tau=0.3, lift=0.0) == 0.3
    assert incident_prob_threshold(None, tau=0.3, lift=2.0) == 0.3


def test_incident_prob_threshold_rises_to_lift_times_the_servers_base_rate_above_tau():
    share = np.array([0.01, 0.2])  # a quiet server, one often in incident
    np.testing.assert_allclose(incident_prob_threshold(share, tau=0.05, lift=1.5), [0.05, 0.3])


def test_incident_prob_codes_are_critical_at_or_above_each_servers_threshold():
    p, share = np.array([0.06, 0.25, 0.31]), np.array([0.01, 0.2, 0.2])
    assert incident_prob_codes(p, share, tau=0.05, lift=1.5).tolist() == [2, 0, 2]


def test_incident_candidate_opens_from_tau_for_a_quiet_server():
    c = incident_candidate(server="web01", p=0.05, share=0.01, tau=0.05, lift=1.5, horizon_steps=96, step_minutes=5)
    assert (c["metric"], c["rule"], c["predicted_value"], c["threshold"]) == ("incident", "incident_prob", 5.0, 5.0)
    assert c["message"] == "web01: P(incident within 8 h) is 5% (≥ 5.0%)"
    assert incident_candidate(server="web01", p=0.049, share=0.01, tau=0.05, lift=1.5, horizon_steps=96,
                              step_minutes=5) is None  # fmt: skip


def test_incident_candidate_needs_lift_times_the_servers_own_rate_when_that_is_higher():
    kwargs = {"server": "db01", "share": 0.2, "tau": 0.05, "lift": 2.0, "horizon_steps": 96, "step_minutes": 5}
    assert incident_candidate(p=0.39, **kwargs) is None
    c = incident_candidate(p=0.4, **kwargs)
    assert c["threshold"] == 40.0 and c["message"] == "db01: P(incident within 8 h) is 40% (≥ 40.0%, 2 × its own 20.0% rate)"


def test_recent_mean_is_the_previous_days_mean_once_six_hours_are_known():
    p = np.arange(400, dtype=np.float64)  # one origin every 5 minutes
    recent = recent_mean(p, every=1, step_minutes=5)
    assert np.isnan(recent[71]) and recent[72] == pytest.approx(np.mean(p[:72]))
    assert recent[300] == pytest.approx(np.mean(p[300 - 288 : 300]))  # the last 24 h, itself excluded


def test_the_threshold_rises_to_rise_times_the_servers_usual_and_waits_for_it():
    recent = np.array([np.nan, 0.02, 0.2])
    out = incident_prob_threshold(None, tau=0.05, lift=0.0, recent=recent, rise=2.0)
    np.testing.assert_allclose(out, [np.inf, 0.05, 0.4])
    c = incident_candidate(server="db01", p=0.4, share=None, tau=0.05, lift=0.0, horizon_steps=96, step_minutes=5,
                           recent=0.2, rise=2.0)  # fmt: skip
    assert c["threshold"] == 40.0 and c["message"].endswith("(≥ 40.0%, 2 × its usual 20.0%)")


# --- The trend rule ---------------------------------------------------------------------------------


def _line(n: int = 40) -> np.ndarray:
    """(n, 1): 10 + 2 per bucket."""
    return (10.0 + 2.0 * np.arange(n, dtype=np.float64))[:, None]


def test_trend_projection_draws_the_least_squares_line_reach_buckets_past_the_last():
    # fit on buckets 18-29 (values 46-68); the line at bucket 29 + 6 = 35 is 10 + 2 * 35
    line = rules.trend_projection(_line(), np.array([30]), rules.Trend(fit=12, reach=6, hold=1))
    assert line[0, 0] == pytest.approx(80.0)


def test_trend_projection_skips_missing_buckets():
    values = _line()
    values[[20, 23, 27], 0] = np.nan
    line = rules.trend_projection(values, np.array([30]), rules.Trend(fit=12, reach=6, hold=1))
    assert line[0, 0] == pytest.approx(80.0)


def test_trend_projection_needs_two_present_buckets():
    values = np.full((40, 1), np.nan)
    values[29, 0] = 50.0
    assert np.isnan(rules.trend_projection(values, np.array([30]), rules.Trend(fit=12, reach=6, hold=1))[0, 0])


def test_trend_crossing_needs_the_projection_held_at_each_of_the_last_hold_ends():
    values = np.full((40, 1), 50.0)
    values[29, 0] = 80.0  # one jump at the last bucket: the line through it crosses, the one before does not
    critical = np.array([60.0])
    one = rules.trend_crossing(values, np.array([30]), critical, rules.Trend(fit=6, reach=12, hold=1))
    two = rules.trend_crossing(values, np.array([30]), critical, rules.Trend(fit=6, reach=12, hold=2))
    assert one[0, 0] and not two[0, 0]


def test_a_trend_needs_at_least_two_buckets_to_fit():
    with pytest.raises(ValueError, match="fit >= 2"):
        rules.Trend(fit=1, reach=12, hold=1)


def test_a_trend_candidate_is_a_warning_that_says_when_the_line_reaches_critical():
    # the line is at 10 + 2 * 30 = 70 at the next bucket and climbs 2 a bucket: 90 is 10 buckets later
    candidate = rules.trend_candidate(server="s1", metric="cpu_pct", values=_line(30)[:, 0],
                                      limits=rules.Limits(80.0, 90.0), trend=rules.Trend(fit=12, reach=24, hold=3),
                                      step_minutes=5)  # fmt: skip
    assert candidate["rule"] == rules.TREND_RULE and candidate["severity"] == "warning"
    assert (candidate["metric"], candidate["trending"]) == (rules.TREND_METRIC, "cpu_pct")
    assert (candidate["steps_ahead"], candidate["minutes_ahead"]) == (11, 55)
    assert candidate["message"].startswith("s1: cpu_pct trending to its critical limit 90.0 in 55 min")


def test_a_trend_candidate_shows_the_lines_value_where_the_metric_can_reach_it():
    # latency has no ceiling: the line's value 24 buckets on, 10 + 2 * (29 + 24) = 116, as drawn
    candidate = rules.trend_candidate(server="s1", metric="latency_ms", values=_line(30)[:, 0],
                                      limits=rules.Limits(80.0, 90.0), trend=rules.Trend(fit=12, reach=24, hold=3),
                                      step_minutes=5)  # fmt: skip
    assert candidate["predicted_value"] == pytest.approx(10 + 2 * (29 + 24))
    assert "projected: 116.0 in 2 h)" in candidate["message"]


def test_a_percent_metrics_trend_is_shown_at_most_at_100():
    # the same line would read 116 % in 2 h: a percent cannot, so the alert says it reaches the ceiling
    candidate = rules.trend_candidate(server="s1", metric="cpu_pct", values=_line(30)[:, 0],
                                      limits=rules.Limits(80.0, 90.0), trend=rules.Trend(fit=12, reach=24, hold=3),
                                      step_minutes=5)  # fmt: skip
    assert candidate["predicted_value"] == 100.0
    assert "projected: 100.0, its ceiling, within 2 h)" in candidate["message"]


def test_no_trend_candidate_where_the_line_stays_below_critical():
    candidate = rules.trend_candidate(server="s1", metric="cpu_pct", values=_line(30)[:, 0],
                                      limits=rules.Limits(80.0, 200.0), trend=rules.Trend(fit=12, reach=24, hold=3),
                                      step_minutes=5)  # fmt: skip
    assert candidate is None


def _trend_at(metric: str, steps: int) -> dict:
    return {"metric": rules.TREND_METRIC, "trending": metric, "steps_ahead": steps, "message": f"s1: {metric} trending"}


def test_the_servers_trend_alert_names_the_metric_that_reaches_its_limit_first_and_the_others():
    (first,) = rules.first_trend([_trend_at("cpu_pct", 30), _trend_at("mem_pct", 12), _trend_at("latency_ms", 40)])
    assert first["trending"] == "mem_pct"
    assert first["message"] == "s1: mem_pct trending; also trending: cpu_pct, latency_ms"


def test_no_trend_alert_without_a_trending_metric():
    assert rules.first_trend([]) == []


def test_the_near_gate_needs_the_line_now_at_that_share_of_the_limit():
    values = (10.0 + 2.0 * np.arange(30, dtype=np.float64))[:, None]  # the line is at 70 at the next bucket
    critical, ends = np.array([90.0]), np.array([30])
    assert rules.trend_crossing(values, ends, critical, rules.Trend(fit=12, reach=24, hold=1, near=0.75))[0, 0]
    assert not rules.trend_crossing(values, ends, critical, rules.Trend(fit=12, reach=24, hold=1, near=0.8))[0, 0]


def test_recent_states_are_the_buckets_before_each_end_missing_before_the_start():
    states = np.array([1, 1, 4, 1], dtype=np.int8)
    assert rules.recent_states(states, np.array([4, 1]), 3).tolist() == [[1, 4, 1], [-1, -1, 1]]


def test_a_climb_is_expected_where_a_declared_state_falls_in_the_hold():
    trend = rules.Trend(fit=12, reach=24, hold=2, expected=("heavy_load", "morning_spike"))
    heavy, spike, healthy = (STATE_INDEX[s] for s in ("heavy_load", "morning_spike", "healthy"))
    recent = np.array([[healthy, healthy, heavy], [healthy, spike, healthy], [heavy, healthy, healthy]])
    assert rules.expected_climb(recent, trend).tolist() == [True, True, False]


def test_no_climb_is_expected_without_expected_states():
    recent = np.full((2, 3), STATE_INDEX["heavy_load"])
    assert not rules.expected_climb(recent, rules.Trend(fit=12, reach=24, hold=3)).any()


def test_a_trend_refuses_an_unknown_expected_state():
    with pytest.raises(ValueError, match="on_fire"):
        rules.Trend(fit=12, reach=24, hold=3, expected=("on_fire",))
