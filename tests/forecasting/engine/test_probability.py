"""Are prob_30m / prob_8h calibrated: reliability, Brier skill, isotonic recalibration, serving."""

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from forecasting.engine import backtest as bt
from forecasting.engine import folders, incidents
from forecasting.engine.probability import fit_isotonic, fleet_environment, recalibrated
from forecasting.engine.series import SeriesWindow
from forecasting.engine.spec import HORIZON, METRICS, QUANTILES

START = datetime(2026, 3, 2, tzinfo=UTC)


def _window(y: np.ndarray, server: str = "ec2_cpu_utilization_x") -> SeriesWindow:
    values = np.zeros((len(y), 4), dtype=np.float32)
    values[:, 0] = y
    return SeriesWindow(server=server, profile="generic", start=START, step_minutes=5, values=values,
                        states=np.ones(len(y), dtype=np.int8))  # fmt: skip


class LevelForecaster:
    """All quantiles of every metric at one level: P(crossing) is 1 above the limit, ~0 below."""

    quantiles = QUANTILES

    def __init__(self, level: float):
        self.level = level

    def predict_array(self, windows):
        return np.full((len(windows), HORIZON, len(METRICS), len(QUANTILES)), self.level) + np.arange(7) * 0.01


def test_brier_skill_and_reliability_by_hand():
    p = np.array([0.05, 0.05, 0.95, 0.95])
    e = np.array([0, 1, 1, 1])
    s = bt.probability_scores(p, e)
    # Brier = (0.0025 + 0.9025 + 0.0025 + 0.0025) / 4 = 0.2275; climatology 0.75 · 0.25 = 0.1875
    assert s["brier"] == pytest.approx(0.2275)
    assert s["skill"] == pytest.approx(1 - 0.2275 / 0.1875)
    assert s["reliability"] == [
        {"bin": "0.0-0.1", "n": 2, "mean_prob": pytest.approx(0.05), "frequency": 0.5},
        {"bin": "0.9-1.0", "n": 2, "mean_prob": pytest.approx(0.95), "frequency": 1.0},
    ]


def test_isotonic_fit_is_monotone_and_maps_to_observed_frequencies():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 5000)
    e = rng.uniform(0, 1, 5000) < p**2  # the raw probability overstates the risk
    table = fit_isotonic(p, e)
    assert np.all(np.diff(table["y"]) >= 0)
    np.testing.assert_allclose(recalibrated(np.array([0.3, 0.9]), table), [0.09, 0.81], atol=0.06)
    assert bt.probability_scores(recalibrated(p, table), e)["brier"] < bt.probability_scores(p, e)["brier"]


def test_without_a_table_probabilities_are_unchanged():
    np.testing.assert_array_equal(recalibrated(np.array([0.2, 0.7]), None), [0.2, 0.7])


def test_an_event_is_an_incident_starting_within_the_window():
    y = np.full(2000, 40.0)
    y[1500:1502] = 97.0  # cpu ≥ 95 for two buckets: an incident (engine.incidents)
    w = _window(y)
    origins = np.array([1494, 1495, 1401])
    labels = incidents.incident_labels(w.values[:, :1].astype(float), w.states, np.full((3, 1), 95.0), origins)
    assert labels["threshold"]["30m"].tolist() == [False, True, False]  # 1495…1500 holds its start; 1494…1499 not


def test_an_anomaly_event_is_a_labelled_window_overlapping_the_forecast_window():
    w = _window(np.zeros(100))
    spans = [(START + timedelta(minutes=5 * 50), START + timedelta(minutes=5 * 60))]
    events = bt._anomaly_events(w, np.array([44, 45, 60, 61]), spans, 6)
    assert events.tolist() == [False, True, True, False]


def test_evaluation_reports_raw_calibrated_and_both_rules():
    y = np.full(3000, 40.0)
    y[2500:2510] = 99.0
    label = [(START + timedelta(minutes=5 * 2500), START + timedelta(minutes=5 * 2510))]
    w = _window(y)
    result = bt.probability_evaluation([w], LevelForecaster(99.0), metrics={w.server: "cpu_pct"},
                                       anomalies={w.server: label})  # fmt: skip
    r = result["threshold"]["8h"]["raw"]
    assert r["mean_prob"] == pytest.approx(1.0) and r["base_rate"] < 0.3  # always crying wolf
    assert r["skill"] < 0
    assert set(result["threshold"]["30m"]) == {"raw", "calibrated", "served", "prior", "bound"}
    # the labelled window also covers origins inside the incident, where none starts
    assert result["anomaly"]["8h"]["raw"]["events"] >= result["threshold"]["8h"]["raw"]["events"] > 0


def test_the_recalibration_is_fitted_on_the_training_part_only():
    y = np.full(3000, 40.0)
    y[2500:2510] = 99.0  # only in the test part: the training part never sees an incident
    fitted = bt.fit_probability_recalibration([_window(y)], LevelForecaster(99.0), metrics=["cpu_pct"])
    assert fitted["windows"]["8h"]["y"] == [0.0]


def test_model_folder_probability_calibration_round_trip_and_bad_files(tmp_path):
    assert folders.read_probability_calibration(tmp_path) is None  # older folders: none
    fitted = {"rule": "r", "windows": {"30m": {"x": [0.0, 1.0], "y": [0.0, 0.5]}}}
    folders.write_probability_calibration(tmp_path, fitted)
    assert folders.read_probability_calibration(tmp_path) == fitted["windows"]
    (tmp_path / folders.PROBABILITY_FILE).write_text(json.dumps({"windows": {"30m": [1, 2]}}))
    assert folders.read_probability_calibration(tmp_path) is None




def test_expected_incidents_sum_the_server_probabilities():
    env = fleet_environment([(0.02, 0.05)] * 70)
    assert env["prob_8h"] > 0.95  # "some server, somewhere": near certain for 70 servers
    assert env["expected_incidents_8h"] == pytest.approx(3.5)
    assert env["expected_incidents_30m"] == pytest.approx(1.4)


def test_the_recalibration_can_be_fitted_on_the_validation_tail():
    y = np.full(3000, 40.0)
    y[2900:2910] = 99.0  # inside the last 20 %: the tail a training run holds out
    fitted = bt.fit_probability_recalibration([_window(y)], LevelForecaster(99.0), part="test", fraction=0.2,
                                              metrics=["cpu_pct"])  # fmt: skip
    assert fitted["part"] == "test" and fitted["origins"] == len(bt.rolling_origins(3000, test_fraction=0.2, every=12))
    assert max(fitted["windows"]["8h"]["y"]) > 0  # the tail holds the incident the training part lacks


def _constant_event_model(p: float) -> dict:
    from forecasting.engine import event_model as em

    n = len(em.FEATURES)
    params = {"learner": "logistic", "mean": [0.0] * n, "std": [1.0] * n, "coef": [0.0] * n,
              "intercept": float(np.log(p / (1 - p)))}  # fmt: skip
    return em.new_model({"30m": params, "8h": params}, min_buckets=2, thresholds={})


def test_the_event_model_entry_scores_the_event_model_with_families_weighted_equally():
    quiet = np.full(3000, 40.0)
    busy = np.full(3000, 40.0)
    busy[2000:3000:100] = 99.0  # an incident every 100 buckets of the test part…
    busy[2001:3000:100] = 99.0  # …lasting two buckets
    cpu, net = _window(busy, "ec2_cpu_utilization_a"), _window(quiet, "ec2_network_in_b")
    result = bt.probability_evaluation([cpu, net], LevelForecaster(40.0), metrics=["cpu_pct"],
                                       event_model=_constant_event_model(0.2))  # fmt: skip
    served = result["incident"]["8h"]["event_model"]
    assert result["served_by"] == "event_model + live map"
    assert set(served["per_family"]) == {"cpu", "network/requests"}
    rate_cpu = served["per_family"]["cpu"]["base_rate"]
    assert served["per_family"]["network/requests"]["events"] == 0 and rate_cpu > 0.5
    assert served["base_rate"] == pytest.approx(rate_cpu / 2)  # each family weighs one half
    brier_cpu = rate_cpu * 0.8**2 + (1 - rate_cpu) * 0.2**2
    assert served["brier"] == pytest.approx((brier_cpu + 0.2**2) / 2)
    assert served["auc"] == pytest.approx(0.5)  # one constant probability ranks nothing
    assert served["mean_prob"] == pytest.approx(0.2) and served["reliability"][0]["bin"] == "0.2-0.3"
    for key in ("n", "events", "base_rate", "brier", "skill", "auc", "reliability"):
        for kind in ("served", "event_model", "bound"):
            assert key in result["threshold"]["30m"][kind] and key in result["reported"]["8h"][kind]


def test_without_an_event_model_the_prior_is_the_recalibrated_bound():
    y = np.full(3000, 40.0)
    table = {"x": [0.0, 1.0], "y": [0.0, 0.5]}
    result = bt.probability_evaluation([_window(y)], LevelForecaster(99.0), metrics=["cpu_pct"],
                                       recalibration={"30m": table, "8h": table})  # fmt: skip
    r = result["threshold"]["30m"]
    assert result["served_by"] == "recalibrated + live map"
    assert r["prior"]["mean_prob"] == pytest.approx(r["recalibrated"]["mean_prob"])
    assert r["bound"]["mean_prob"] == pytest.approx(r["recalibrated"]["mean_prob"])


def _busy_and_quiet(fleets: dict[str, str]) -> dict:
    busy = np.full(6000, 40.0)
    for start in range(3600, 6000, 48):  # an incident (two buckets) every 4 hours of the test part
        busy[start : start + 2] = 99.0
    series = [_window(busy, "ec2_cpu_utilization_busy"), _window(np.full(6000, 40.0), "ec2_network_in_quiet")]
    return bt.probability_evaluation(series, LevelForecaster(40.0), metrics=["cpu_pct"],
                                     event_model=_constant_event_model(0.2), fleets=fleets)["incident"]["8h"]  # fmt: skip


def test_the_served_entry_is_the_event_model_through_the_live_map_of_its_fleet():
    r = _busy_and_quiet({"ec2_cpu_utilization_busy": "a", "ec2_network_in_quiet": "b"})
    assert r["event_model"]["mean_prob"] == pytest.approx(0.2)
    served = r["served"]["per_family"]
    assert served["cpu"]["mean_prob"] > 0.3 and served["network/requests"]["mean_prob"] < 0.15
    assert r["served"]["brier"] < r["event_model"]["brier"]


def test_fleets_are_replayed_separately():
    one = _busy_and_quiet({})["served"]["per_family"]  # one fleet: both series read the same map
    assert one["cpu"]["mean_prob"] == pytest.approx(one["network/requests"]["mean_prob"])


def test_a_date_less_fleet_runs_its_series_side_by_side_from_their_test_parts():
    dated, counted = _window(np.zeros(100), "a"), _window(np.zeros(100), "b")
    counted.calendar = False
    origins = np.array([60, 72, 84])
    assert bt.origin_clock(counted, origins, dated=False).tolist() == [0.0, 3600.0, 7200.0]
    assert bt.origin_clock(dated, origins, dated=True)[0] == START.timestamp() + 60 * 300
    clocks = bt.fleet_clocks([dated, counted], {"a": "x", "b": "x"})
    assert clocks == {"a": ("x", False), "b": ("x", False)}  # one date-less series makes its fleet date-less


def _served_median(blend: dict | None) -> float:
    """The cpu median the probability path serves at one origin: the model says 80, the context ~10."""
    y = np.full(288 + HORIZON, 10.0) + np.sin(np.arange(288 + HORIZON))
    w = _window(y)
    q = LevelForecaster(80.0).predict_array([None])
    setup = bt.ProbabilitySetup(QUANTILES, bt.DEFAULT_THRESHOLDS, blend=blend)
    _, _, _, served = bt.served_inputs(w, [0], np.array([288]), q, setup)
    return float(served[0, 0, 0, QUANTILES.index(0.5)])


def test_the_probability_path_serves_the_blended_forecast():
    from forecasting.engine.blend import default_blend

    last_value = default_blend() | {"weights": {band: 0.0 for band in default_blend()["weights"]}, "strength": 0.0}
    assert _served_median(None) == pytest.approx(80.03, abs=1e-6)  # the model alone
    assert abs(_served_median(last_value) - 10.0) < 2.0  # persistence of a context around 10


def test_the_backtest_history_of_a_series_holds_only_its_closed_windows():
    y = np.full(2000, 40.0)
    y[400:402] = 99.0  # one threshold incident, early
    origins = np.arange(600, 1800, 12)
    history = bt.incident_history(_window(y), [0], origins, bt.ProbabilitySetup(QUANTILES, bt.DEFAULT_THRESHOLDS))
    busy = bt.incident_history(_window(np.where(np.arange(2000) % 100 < 3, 99.0, 40.0)), [0], origins,
                               bt.ProbabilitySetup(QUANTILES, bt.DEFAULT_THRESHOLDS))  # fmt: skip
    assert history["8h"][0, 0] > 0  # windows from 288 on that held the incident, closed by origin 600
    assert busy["8h"][-1, 0] > history["8h"][-1, 0]  # an incident every 100 steps: far more often
    assert np.all(history["8h"][:, 1] > 0)  # hours of history before every origin


def test_each_fleet_is_scored_on_its_own_and_their_mean_is_reported():
    rng = np.random.default_rng(3)
    event = (rng.random(400) < 0.3).astype(float)
    good, poor = np.where(event == 1, 0.8, 0.1), np.full(400, 0.3)
    p = np.r_[good, poor]
    out = bt.served_scores(p, np.r_[event, event], np.array(["cpu"] * 800), np.array(["a"] * 400 + ["b"] * 400))
    a, b = out["per_fleet"]["a"], out["per_fleet"]["b"]
    assert a["skill"] > 0.5 and b["auc"] == pytest.approx(0.5)
    assert out["fleets_equal"] == {"sources": 2, "skill": pytest.approx((a["skill"] + b["skill"]) / 2),
                                   "auc": pytest.approx((a["auc"] + b["auc"]) / 2)}  # fmt: skip


def test_one_fleet_gets_no_per_fleet_scores():
    assert "per_fleet" not in _busy_and_quiet({})["served"]


def test_the_backtest_scores_each_fleet_of_a_replay():
    r = _busy_and_quiet({"ec2_cpu_utilization_busy": "a", "ec2_network_in_quiet": "b"})["served"]
    assert set(r["per_fleet"]) == {"a", "b"}
    assert r["per_fleet"]["a"]["base_rate"] == 1.0 and r["per_fleet"]["b"]["events"] == 0
    assert r["per_fleet"]["a"]["n"] + r["per_fleet"]["b"]["n"] == r["n"]
    # every window of a has an incident and none of b has one: neither has a skill to average
    assert r["fleets_equal"] == {"sources": 0, "skill": None, "auc": None}
