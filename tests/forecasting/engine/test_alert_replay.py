"""The backtest's alert replay (engine.alert_replay) scores hand-built series with known incidents exactly."""

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from forecasting.engine import event_model as em
from forecasting.engine.alert_replay import (
    PROB_RULE,
    alert_replay,
    event_probability,
    linear_codes,
    pooled,
    probability_codes,
    replay_series,
    series_incidents,
    static_codes,
    trend_codes,
)
from forecasting.engine.alert_rules import IMMEDIATE, TREND_METRIC, TREND_RULE, Hysteresis, Trend
from forecasting.engine.backtest import (
    ProbabilitySetup,
    incident_history,
    rolling_origins,
    served_inputs,
    served_probabilities,
)
from forecasting.engine.series import SeriesWindow
from forecasting.engine.spec import (
    CRITICAL_PCT,
    DEFAULT_THRESHOLDS,
    HORIZON,
    METRICS,
    QUANTILES,
    STATE_INDEX,
    STEPS_PER_DAY,
)

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


def test_incident_prob_is_one_alert_per_series_that_warns_any_of_its_metrics():
    y = np.full((300, 2), 50.0)
    y[100:105, 1] = 95.0  # a threshold incident on the second metric only
    states = np.full(300, STATE_INDEX["healthy"], dtype=np.int8)
    p = np.zeros(300)
    p[90:111] = 0.4  # >= tau 0.3 from 90: opens at 91 (K=2), resolves at 112 (M=2)
    p[250:253] = 0.35  # nothing follows: a false alert
    codes = {PROB_RULE: probability_codes(p, 0.3)}
    critical = np.array([90.0, 90.0])
    counts = replay_series(y, states, np.arange(300), codes, critical, {PROB_RULE: RULE})[PROB_RULE]

    assert codes[PROB_RULE].shape == (300, 1)
    assert counts.incidents == 1 and counts.warned == 1 and counts.leads == [(100 - 91) * 5.0]
    assert counts.episodes == 2 and counts.false_alerts == 1
    assert counts.alert_minutes == ((112 - 91) + (254 - 251)) * 5


def _level_model(slope: float, at: float) -> dict:
    """A hand-built logistic event model: P = sigmoid(slope * (level - at)), level = last / critical."""
    coef = np.zeros(len(em.FEATURES))
    coef[em.FEATURES.index("level")] = slope
    params = {"learner": "logistic", "mean": [0.0] * len(coef), "std": [1.0] * len(coef), "coef": coef.tolist(),
              "intercept": -slope * at}  # fmt: skip
    return em.new_model({"30m": params, "8h": params}, min_buckets=2, thresholds=DEFAULT_THRESHOLDS)


def _ramp_server() -> SeriesWindow:
    """1,000 buckets of cpu at 50 with a climb 50 → 100 over buckets 700-759, held to 779: test
    origins 600-904 (the last 40 %, a full horizon after each)."""
    values = np.full((1000, len(METRICS)), 50.0, dtype=np.float32)
    values[700:760, 0] = 50.0 + 50.0 * np.arange(60) / 60
    values[760:780, 0] = 100.0
    states = np.full(1000, STATE_INDEX["healthy"], dtype=np.int8)
    return SeriesWindow("srv", "generic", datetime(2026, 1, 5, tzinfo=UTC), 5, values, states)


def _flat_forecast(windows):
    return np.full((len(windows), HORIZON, len(METRICS), len(QUANTILES)), 50.0)


def test_incident_prob_opens_where_the_event_models_probability_reaches_tau_and_is_scored_exactly():
    w = _ramp_server()
    setup = ProbabilitySetup(QUANTILES, DEFAULT_THRESHOLDS, event_model=_level_model(40.0, 0.8))
    out = alert_replay(
        [w], _flat_forecast, scored={"srv": ("cpu_pct",)}, family_of=lambda *_: "cpu", hysteresis=IMMEDIATE,
        levels=QUANTILES, probability=event_probability(setup), tau=0.5,
    )  # fmt: skip

    # P >= 0.5 where the last value is >= 0.8 × critical (76): bucket 732 (76.7), so from origin 733
    # to 780 (the first origin after the hold, last value 50); the incident starts at 754 (>= 95).
    assert 50.0 + 50.0 * 31 / 60 < 0.8 * CRITICAL_PCT <= 50.0 + 50.0 * 32 / 60
    row = out["per_family"]["cpu"][PROB_RULE]
    assert row["incidents"] == 1 and row["warned_15m"] == 1
    assert row["median_lead_minutes"] == (754 - 733) * 5
    assert row["alerts"] == 1 and row["false_alerts"] == 0
    assert row["alert_minutes_per_server_day"] == pytest.approx((781 - 733) * 5 / ((905 - 600) / STEPS_PER_DAY))
    assert out["pooled"][PROB_RULE]["recall_15m"] == 1.0


def test_event_probability_gives_the_served_probability_and_the_series_own_base_rate():
    w = _ramp_server()
    setup = ProbabilitySetup(QUANTILES, DEFAULT_THRESHOLDS, event_model=_level_model(40.0, 0.8))
    origins = rolling_origins(len(w.values), every=1)
    q = _flat_forecast(origins)
    p, share, outcome = event_probability(setup)(w, [0], origins, q)

    served = served_probabilities(w, [0], origins, served_inputs(w, [0], origins, q, setup), setup)["8h"]
    np.testing.assert_allclose(p, served)
    np.testing.assert_allclose(share, em.history_share(incident_history(w, [0], origins, setup)["8h"], "8h"))
    # the outcome: an incident (cpu >= 95 from 754 to 779) starts within 8 h of the origin
    assert outcome[origins == 700].item() and outcome[origins == 753].item() and not outcome[origins == 800].item()


def test_incident_prob_with_a_lift_opens_no_alert_where_p_stays_below_lift_times_the_base_rate():
    w = _ramp_server()
    setup = ProbabilitySetup(QUANTILES, DEFAULT_THRESHOLDS, event_model=_level_model(40.0, 0.8))
    # The ramp's P reaches ~1 (see above); no incident before it, so its base rate is at most the
    # prior rate: 100 × that is above any probability.
    out = alert_replay(
        [w], _flat_forecast, scored={"srv": ("cpu_pct",)}, family_of=lambda *_: "cpu", hysteresis=IMMEDIATE,
        levels=QUANTILES, probability=event_probability(setup), tau=0.5, lift=100 / em.HISTORY_PRIOR["8h"],
    )  # fmt: skip

    row = out["per_family"]["cpu"][PROB_RULE]
    assert row["alerts"] == 0 and row["incidents"] == 1 and row["warned_15m"] == 0


def test_the_frontier_sweeps_incident_prob_at_each_tau_and_lift():
    w = _ramp_server()
    setup = ProbabilitySetup(QUANTILES, DEFAULT_THRESHOLDS, event_model=_level_model(40.0, 0.8))
    out = alert_replay(
        [w], _flat_forecast, scored={"srv": ("cpu_pct",)}, family_of=lambda *_: "cpu", hysteresis=IMMEDIATE,
        levels=QUANTILES, probability=event_probability(setup), frontier=(IMMEDIATE,), taus=(0.5,), lifts=(0.0, 2.0),
        rise=0.0, rises=(0.0, 3.0),
    )  # fmt: skip

    assert set(out["frontier"][0][PROB_RULE]) == {"0.5", "0.5x2", "0.5r3", "0.5x2r3"}
    assert out["frontier"][0][PROB_RULE]["0.5"]["recall_15m"] == out["pooled"][PROB_RULE]["recall_15m"] == 1.0


def test_served_counts_the_forecast_rules_and_incident_prob_alerts_together():
    y = np.full((300, 2), 50.0)
    y[100:105, 0] = 95.0  # warned by the forecast rule on its metric only
    y[200:204, 1] = 95.0  # warned by incident_prob only
    states = np.full(300, STATE_INDEX["healthy"], dtype=np.int8)
    forecast = np.zeros((300, 2), dtype=np.int64)
    forecast[90:111, 0] = 2  # opens at 91, resolves at 112 (RULE: K 2 / M 2)
    p = np.zeros(300)
    p[185:205] = 0.4  # opens at 186, resolves at 206
    p[250:253] = 0.4  # a false alert: opens at 251, resolves at 254
    codes = {"served_forecast": forecast, PROB_RULE: probability_codes(p, 0.3)}
    rules = {"served_forecast": RULE, PROB_RULE: RULE}
    out = replay_series(y, states, np.arange(300), codes, np.array([90.0, 90.0]), rules,
                        unions={"served": ("served_forecast", PROB_RULE)})  # fmt: skip

    assert (out["served_forecast"].warned, out[PROB_RULE].warned) == (1, 1)
    served = out["served"]
    assert served.incidents == 2 and served.warned == 2 and sorted(served.leads) == [(100 - 91) * 5.0, (200 - 186) * 5.0]
    assert served.episodes == 3 and served.false_alerts == 1
    assert served.alert_minutes == ((112 - 91) + (206 - 186) + (254 - 251)) * 5


def test_incident_prob_keeps_its_own_hysteresis_beside_the_forecast_rules():
    w = _ramp_server()
    setup = ProbabilitySetup(QUANTILES, DEFAULT_THRESHOLDS, event_model=_level_model(40.0, 0.8))
    late = Hysteresis({"warning": 30, "critical": 30}, {"warning": 1, "critical": 1})
    out = alert_replay(
        [w], _flat_forecast, scored={"srv": ("cpu_pct",)}, family_of=lambda *_: "cpu", hysteresis=IMMEDIATE,
        levels=QUANTILES, probability=event_probability(setup), tau=0.5, prob_hysteresis=late,
    )  # fmt: skip

    # P >= 0.5 from origin 733 (see above): 30 origins later it opens at 762, after the incident began at 754.
    row = out["per_family"]["cpu"][PROB_RULE]
    assert row["alerts"] == 1 and row["warned_15m"] == 0
    assert out["protocol"]["incident_prob"]["open_after"] == 30
    assert out["protocol"]["served"] == ["served_forecast", PROB_RULE]
    assert out["per_family"]["cpu"]["served_p50_prob"]["alerts"] == (
        out["per_family"]["cpu"]["served_p50"]["alerts"] + row["alerts"]
    )  # the diagnostic: served without the p90 early warning


def test_served_leaves_incident_prob_out_when_the_service_does_not_serve_it():
    w = _ramp_server()
    setup = ProbabilitySetup(QUANTILES, DEFAULT_THRESHOLDS, event_model=_level_model(40.0, 0.8))
    out = alert_replay(
        [w], _flat_forecast, scored={"srv": ("cpu_pct",)}, family_of=lambda *_: "cpu", hysteresis=IMMEDIATE,
        levels=QUANTILES, probability=event_probability(setup), tau=0.5, serve_prob=False,
    )  # fmt: skip

    rows = out["per_family"]["cpu"]
    assert rows[PROB_RULE]["warned_15m"] == 1
    assert (rows["served"]["alerts"], rows["served"]["warned_15m"]) == (rows["served_forecast"]["alerts"], 0)


def test_incident_prob_on_the_served_probability_follows_the_live_map():
    # Two quiet servers (flat at 50, no incident) on one clock: the model says P = 0.6 at every origin.
    # Read as the model gives it, the alert is open all the time; read after the live map, which
    # learns from the origins' outcomes (all 0) once their windows close, it resolves.
    model = _level_model(0.0, 0.0)
    model["windows"]["8h"]["intercept"] = math.log(0.6 / 0.4)
    setup = ProbabilitySetup(QUANTILES, DEFAULT_THRESHOLDS, event_model=model)
    values = np.full((2000, len(METRICS)), 50.0, dtype=np.float32)
    states = np.full(2000, STATE_INDEX["healthy"], dtype=np.int8)
    fleet = [SeriesWindow(n, "generic", datetime(2026, 1, 5, tzinfo=UTC), 5, values, states) for n in ("a", "b")]
    kwargs = dict(scored={"a": ("cpu_pct",), "b": ("cpu_pct",)}, family_of=lambda *_: "cpu", hysteresis=IMMEDIATE,
                  levels=QUANTILES, probability=event_probability(setup), tau=0.5, lift=0.0, every=6,
                  rise=0.0)  # fmt: skip
    as_model = alert_replay(fleet, _flat_forecast, **kwargs)["per_family"]["cpu"][PROB_RULE]
    clocks = {"a": ("f", True), "b": ("f", True)}
    as_served = alert_replay(fleet, _flat_forecast, prob_source="served", clocks=clocks, **kwargs)
    row = as_served["per_family"]["cpu"][PROB_RULE]

    assert as_model["alerts"] == 2 and as_model["alert_minutes_per_server_day"] == 1440.0
    assert row["alerts"] == 2 and row["alert_minutes_per_server_day"] < 0.5 * 1440.0
    assert as_served["protocol"]["incident_prob"]["source"] == "served"


def test_incident_prob_with_a_rise_stays_shut_where_p_sits_at_its_usual_and_opens_on_a_rise():
    w = _ramp_server()  # P ~0 until the ramp nears the limit (origin 733), then ~1: a rise far above its usual
    setup = ProbabilitySetup(QUANTILES, DEFAULT_THRESHOLDS, event_model=_level_model(40.0, 0.8))
    quiet = _level_model(0.0, 0.0)  # P = 0.5 at every origin: above tau, never above 3 × its usual
    kwargs = dict(scored={"srv": ("cpu_pct",)}, family_of=lambda *_: "cpu", hysteresis=IMMEDIATE, levels=QUANTILES,
                  tau=0.05, lift=0.0, rise=3.0)  # fmt: skip
    risen = alert_replay([w], _flat_forecast, probability=event_probability(setup), **kwargs)
    flat = alert_replay([w], _flat_forecast, probability=event_probability(
        ProbabilitySetup(QUANTILES, DEFAULT_THRESHOLDS, event_model=quiet)), **kwargs)  # fmt: skip

    assert risen["per_family"]["cpu"][PROB_RULE]["warned_15m"] == 1
    assert flat["per_family"]["cpu"][PROB_RULE]["alerts"] == 0


def _rising_p90_forecast(windows):
    """p50 flat at 50, p90 at 50 for the first 4 h and at 99 (above critical 95) after."""
    q = np.full((len(windows), HORIZON, len(METRICS), len(QUANTILES)), 50.0)
    q[:, 48:, :, QUANTILES.index(0.9)] = 99.0
    return q


def _quiet_server() -> SeriesWindow:
    values = np.full((1000, len(METRICS)), 50.0, dtype=np.float32)
    states = np.full(1000, STATE_INDEX["healthy"], dtype=np.int8)
    return SeriesWindow("srv", "generic", datetime(2026, 1, 5, tzinfo=UTC), 5, values, states)


def test_the_forecast_rules_are_replayed_on_the_served_forecast_and_the_raw_one_beside_it():
    def serving(w, cols, origins, q):  # a serving that pulls the p90 back to the median (as a blend might)
        served = q.copy()
        served[..., QUANTILES.index(0.9)] = q[..., QUANTILES.index(0.5)]
        return None, None, None, served

    out = alert_replay(
        [_quiet_server()], _rising_p90_forecast, scored={"srv": ("cpu_pct",)}, family_of=lambda *_: "cpu",
        hysteresis=IMMEDIATE, levels=QUANTILES, serving=serving,
    )  # fmt: skip

    rows = out["per_family"]["cpu"]
    assert rows["served_forecast"]["alerts"] == 0 and rows["raw_forecast"]["alerts"] == 1
    assert out["protocol"]["forecast"] == "served (blended, calibrated)"


def test_the_replay_of_an_early_warning_reaching_less_far_opens_none_for_a_far_p90():
    out = alert_replay(
        [_quiet_server()], _rising_p90_forecast, scored={"srv": ("cpu_pct",)}, family_of=lambda *_: "cpu",
        hysteresis=IMMEDIATE, levels=QUANTILES, early_steps=(24, 96),
    )  # fmt: skip

    variants = out["early_warning"]["per_family"]["cpu"]
    assert variants["served_forecast@ew120m"]["alerts"] == 0 and variants["served@ew120m"]["alerts"] == 0
    assert variants["served_forecast@ew480m"]["alerts"] == 1 == out["per_family"]["cpu"]["served_forecast"]["alerts"]
    assert variants["served_forecast@ew480m"]["false_alerts"] == 1
    assert "served_forecast@ew120m" not in out["per_family"]["cpu"]
    assert set(out["early_warning"]["pooled"]) == set(variants)


def test_the_served_early_warnings_reach_applies_to_the_served_forecast_rules():
    out = alert_replay(
        [_quiet_server()], _rising_p90_forecast, scored={"srv": ("cpu_pct",)}, family_of=lambda *_: "cpu",
        hysteresis=IMMEDIATE, levels=QUANTILES, early=48,
    )  # fmt: skip

    assert out["per_family"]["cpu"]["served_forecast"]["alerts"] == 0
    assert out["protocol"]["early_warning_minutes"] == 240


def test_the_forecast_rules_read_the_models_own_forecast_when_so_configured():
    def serving(w, cols, origins, q):  # a serving that pulls the p90 back to the median
        served = q.copy()
        served[..., QUANTILES.index(0.9)] = q[..., QUANTILES.index(0.5)]
        return None, None, None, served

    out = alert_replay(
        [_quiet_server()], _rising_p90_forecast, scored={"srv": ("cpu_pct",)}, family_of=lambda *_: "cpu",
        hysteresis=IMMEDIATE, levels=QUANTILES, serving=serving, forecast_source="model",
    )  # fmt: skip

    rows = out["per_family"]["cpu"]
    assert rows["served_forecast"]["alerts"] == rows["raw_forecast"]["alerts"] == 1
    assert out["protocol"]["forecast"] == "the forecaster's own"


def test_the_trend_rule_is_a_warning_where_the_recent_line_reaches_critical():
    y = np.full((100, 1), np.nan)
    y[26:50, 0] = np.arange(24.0)  # +1 per step, 23 at the bucket before origin 50
    projected = 23 + 48  # fit 24, reach 48: the line at bucket 49 + 48
    trend = Trend(fit=24, reach=48, hold=1)
    assert trend_codes(y, np.array([50]), np.array([projected]), trend)[0, 0] == 1
    assert trend_codes(y, np.array([50]), np.array([projected + 0.5]), trend)[0, 0] == 0


def test_the_replayed_trend_is_quiet_where_the_series_declares_its_climb_expected():
    y = np.full((100, 1), np.nan)
    y[26:50, 0] = np.arange(24.0)
    states = np.full(100, STATE_INDEX["healthy"], dtype=np.int8)
    states[48] = STATE_INDEX["morning_spike"]  # one of the hold's 3 buckets before origin 50
    trend = Trend(fit=24, reach=48, hold=3, expected=("morning_spike",))
    critical = np.array([23.0 + 46])  # reached by the lines at origins 48, 49 and 50
    assert trend_codes(y, np.array([50]), critical, trend)[0, 0] == 1
    assert trend_codes(y, np.array([50]), critical, trend, states)[0, 0] == 0


def _ramp_replay(trend):
    return alert_replay(
        [_ramp_server()], _flat_forecast, scored={"srv": ("cpu_pct",)}, family_of=lambda *_: "cpu",
        hysteresis=IMMEDIATE, levels=QUANTILES, trend=trend,
    )  # fmt: skip


def test_served_counts_the_servers_trend_alert_with_the_forecast_rules():
    # a flat forecast never calls for an alert; the climb to 100 does, from its line
    out = _ramp_replay(Trend(fit=24, reach=48, hold=3))
    rows = out["per_family"]["cpu"]
    assert rows["served_forecast"]["warned_15m"] == 0
    assert rows[TREND_METRIC]["warned_15m"] == rows[TREND_RULE]["warned_15m"] == rows["served"]["warned_15m"] == 1
    assert out["protocol"]["served"] == ["served_forecast", TREND_METRIC]
    assert out["protocol"]["trend"] == {"fit_minutes": 120, "reach_minutes": 240, "hold_minutes": 15, "near": 0.0,
                                        "expected_states": []}


def test_without_the_trend_rule_served_is_the_forecast_rules():
    out = _ramp_replay(None)
    rows = out["per_family"]["cpu"]
    assert TREND_RULE not in rows and TREND_METRIC not in rows
    assert rows["served"]["warned_15m"] == 0 and out["protocol"]["trend"] is None


def test_on_the_metrics_own_alert_a_standing_forecast_alert_swallows_the_trends_warning():
    # the forecast rules hold cpu's alert open from the first origin: merged with it, the trend's
    # warning opens nothing new, and an alert opened more than 8 h before the incident warns nothing
    def standing(windows):
        q = _flat_forecast(windows)
        q[..., 0, :] = 99.0
        return q

    out = alert_replay(
        [_ramp_server()], standing, scored={"srv": ("cpu_pct",)}, family_of=lambda *_: "cpu",
        hysteresis=IMMEDIATE, levels=QUANTILES, trend=Trend(fit=24, reach=48, hold=3),
    )  # fmt: skip
    rows = out["per_family"]["cpu"]
    assert rows["served_trend_merged"]["warned_15m"] == 0
    assert rows["served"]["warned_15m"] == 1


def test_the_frontiers_served_at_the_served_k_and_m_is_the_replays_served():
    w = _ramp_server()
    setup = ProbabilitySetup(QUANTILES, DEFAULT_THRESHOLDS, event_model=_level_model(40.0, 0.8))
    other = Hysteresis({"warning": 6, "critical": 6}, {"warning": 6, "critical": 6})
    out = alert_replay(
        [w], _flat_forecast, scored={"srv": ("cpu_pct",)}, family_of=lambda *_: "cpu", hysteresis=RULE,
        levels=QUANTILES, probability=event_probability(setup), frontier=(RULE, other), taus=(0.5,), lifts=(0.0,),
        trend=Trend(fit=24, reach=48, hold=3), prob_hysteresis=IMMEDIATE,
    )  # fmt: skip

    at_served, at_other = out["frontier"]
    for rule in ("served", TREND_METRIC):
        assert at_served[rule] == out["pooled"][rule]
    # opening after 6 origins instead of 3 shortens the trend's lead
    assert at_other[TREND_METRIC]["median_lead_minutes"] < at_served[TREND_METRIC]["median_lead_minutes"]
