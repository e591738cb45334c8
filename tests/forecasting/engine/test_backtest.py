"""The backtest: baselines, scores and protocol, checked by hand on tiny series."""

import logging
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from forecasting.engine import backtest as bt
from forecasting.engine.series import SeriesWindow, load_csv_dir
from forecasting.engine.simulator import Episode
from forecasting.engine.spec import HORIZON, METRICS

logger = logging.getLogger(__name__)

START = datetime(2026, 3, 2, tzinfo=UTC)


def _window(server: str, y: np.ndarray, metric: str = "cpu_pct", profile: str = "database") -> SeriesWindow:
    values = np.zeros((len(y), 4), dtype=np.float32)
    values[:, METRICS.index(metric)] = y
    return SeriesWindow(server=server, profile=profile, start=START, step_minutes=5, values=values,
                        states=np.ones(len(y), dtype=np.int8))  # fmt: skip


# --- protocol ---------------------------------------------------------------------------------


def test_rolling_origins_cover_the_last_40_percent_every_48_steps():
    # T=1000: test part starts at 600; the last full horizon starts at 904 → 600, 648, …, 888
    np.testing.assert_array_equal(bt.rolling_origins(1000), np.arange(600, 889, 48))
    assert len(bt.rolling_origins(1000)) == 7


def test_rolling_origins_keep_a_full_context_on_short_series():
    # T=500: 40 % would start at 300 ≥ 288 → 300, 348, 396 (396 + 96 ≤ 500)
    np.testing.assert_array_equal(bt.rolling_origins(500), [300, 348, 396])
    # T=400: the context pushes the first origin to 288; 288 + 96 ≤ 400 → one origin
    np.testing.assert_array_equal(bt.rolling_origins(400), [288])
    assert len(bt.rolling_origins(300)) == 0


# --- baselines --------------------------------------------------------------------------------


def test_naive_repeats_the_last_value():
    y = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    np.testing.assert_array_equal(bt.baseline_point("naive", y, np.array([3]), horizon=2), [[3.0, 3.0]])


def test_seasonal_naive_repeats_the_same_time_yesterday():
    y = np.arange(300, dtype=float)
    # origin 290 forecasts steps 290, 291, 292 with y[2], y[3], y[4]
    np.testing.assert_array_equal(bt.baseline_point("seasonal_naive", y, np.array([290]), horizon=3), [[2.0, 3.0, 4.0]])


def test_predict_linear_extrapolates_the_least_squares_line_of_the_last_hour():
    # last 12 values: eleven 0s then 12 → slope = 12·5.5/143 = 6/13, mean 1, so at x = 12 + h:
    # 1 + 6/13·(12 + h − 5.5) → 4.0 at h = 0, 4 + 6/13 at h = 1
    y = np.concatenate([np.full(20, 50.0), np.zeros(11), [12.0]])
    forecast = bt.baseline_point("predict_linear", y, np.array([32]), horizon=2)
    np.testing.assert_allclose(forecast, [[4.0, 4.0 + 6 / 13]])


def test_predict_linear_follows_an_exact_line():
    y = 2.0 * np.arange(40) + 1.0
    np.testing.assert_allclose(bt.baseline_point("predict_linear", y, np.array([30]), horizon=3), [[61.0, 63.0, 65.0]])


def test_mean_is_the_mean_of_the_288_step_context():
    y = np.arange(300, dtype=float)
    # origin 290: mean of y[2:290] = (2 + 289) / 2
    np.testing.assert_allclose(bt.baseline_point("mean", y, np.array([290]), horizon=2), [[145.5, 145.5]])


def test_baselines_without_enough_history_give_nan():
    y = np.arange(100, dtype=float)
    assert np.isnan(bt.baseline_point("seasonal_naive", y, np.array([50]), horizon=2)).all()
    assert np.isnan(bt.baseline_point("mean", y, np.array([50]), horizon=2)).all()


def test_baseline_intervals_come_from_its_own_past_errors():
    # On a ramp y[t] = t the naive h-step error (0-based h) is always h + 1: p90 = last + h + 1
    # (the truth), p10 = p50 = last value (an error quantile above 0 never pushes p10 above p50).
    y = np.arange(400, dtype=float)
    q = bt.baseline_quantiles("naive", y, np.array([350]), horizon=3, calibration=20)
    np.testing.assert_allclose(q[0], [[349.0] * 3, [349.0] * 3, [350.0, 351.0, 352.0]])


def test_baseline_intervals_use_only_errors_observed_before_the_origin():
    # The series jumps by +100 at the origin: the calibration (before it) must not see the jump.
    y = np.concatenate([np.full(300, 10.0), np.full(100, 110.0)])
    q = bt.baseline_quantiles("naive", y, np.array([300]), horizon=4, calibration=50)
    np.testing.assert_allclose(q[0], np.full((3, 4), 10.0))


def test_baseline_intervals_are_empirical_quantiles_per_horizon():
    # naive 1-step errors on the calibration window are y[t] - y[t-1] = alternating +1/−1
    y = np.array([0.0, 1.0] * 200)
    q = bt.baseline_quantiles("naive", y, np.array([300]), horizon=1, calibration=100)
    # point = y[299] = 1; errors ±1 half each: 10 % quantile −1, 90 % quantile +1
    np.testing.assert_allclose(q[0, :, 0], [0.0, 1.0, 2.0])


def test_percent_forecasts_are_clipped_to_their_range():
    y = 10.0 * np.arange(40)
    q = bt.baseline_quantiles("predict_linear", y, np.array([30]), horizon=2, upper=100.0)
    assert q.max() <= 100.0


# --- scores -----------------------------------------------------------------------------------


def test_naive_scale_is_the_mean_absolute_one_step_change():
    assert bt.naive_scale(np.array([1.0, 3.0, 2.0, 2.0])) == pytest.approx(1.0)  # |2|, |−1|, |0|
    assert bt.naive_scale(np.array([1.0, np.nan, 2.0, 4.0])) == pytest.approx(2.0)  # only 2 → 4


def test_window_scores_by_hand():
    y = np.array([2.0, 4.0])
    quantiles = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])  # p10, p50, p90
    s = bt.score_window(y, quantiles, scale=2.0)
    # MAE = (0 + 2)/2 = 1 → MASE 0.5
    # pinball 0.1: (0.1·1 + 0.1·3)/2 = 0.2; 0.5: (0 + 1)/2 = 0.5; 0.9: (0.1·1 + 0.9·1)/2 = 0.5
    # mean 0.4, scaled by 2 → 0.2; coverage: 2 ∈ [1, 3], 4 ∉ → 0.5
    assert s == pytest.approx({"mase": 0.5, "pinball": 0.2, "coverage": 0.5})


def test_missing_targets_are_not_scored():
    y = np.array([2.0, np.nan])
    s = bt.score_window(y, np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]), scale=1.0)
    assert s == pytest.approx({"mase": 0.0, "pinball": (0.1 + 0 + 0.1) / 3, "coverage": 1.0})
    assert bt.score_window(np.array([np.nan]), np.zeros((3, 1)), 1.0) is None


def test_windows_with_a_flat_history_are_skipped():
    assert bt.score_window(np.array([1.0]), np.zeros((3, 1)), scale=0.0) is None


# --- run_backtest -----------------------------------------------------------------------------


def _noisy(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 50 + 20 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 2, n)


def test_backtest_reports_every_baseline_and_counts_windows():
    series = [_window("ppdb001", _noisy(1000)), _window("ppdb002", _noisy(1000, 1))]
    result = bt.run_backtest(series, metrics=["cpu_pct", "mem_pct"])
    assert list(result)[:3] == ["methods", "per_family", "per_band"]
    assert list(result["methods"]) == ["naive", "seasonal_naive", "predict_linear", "mean"]
    # 7 origins × 2 series; mem_pct is constant 0 (no scale) → not scored
    for scores in result["methods"].values():
        assert set(scores) == {"mase", "pinball", "coverage", "windows"}
        assert scores["windows"] == 14
    # on a clean daily cycle yesterday is the best guess
    assert result["methods"]["seasonal_naive"]["mase"] < result["methods"]["naive"]["mase"]


def test_backtest_reports_every_method_per_series_family_on_that_family_s_windows():
    series = [_window("ec2_cpu_utilization_x", _noisy(1000)), _window("ec2_network_in_y", _noisy(1000, 1) * 3, metric="disk_io_mb_s")]
    result = bt.run_backtest(series, metrics={"ec2_cpu_utilization_x": "cpu_pct", "ec2_network_in_y": "disk_io_mb_s"})

    assert list(result["per_family"]) == ["cpu", "network/requests"]
    for by_method in result["per_family"].values():
        assert list(by_method) == ["naive", "seasonal_naive", "predict_linear", "mean"]
        assert {s["windows"] for s in by_method.values()} == {7}
    pooled = result["methods"]["naive"]["mase"]
    assert pooled == pytest.approx(np.mean([f["naive"]["mase"] for f in result["per_family"].values()]))


def test_backtest_scales_by_the_naive_mae_of_the_training_part():
    y = _noisy(1000)
    result = bt.run_backtest([_window("ppdb001", y)], metrics=["cpu_pct"])
    origins = bt.rolling_origins(1000)
    scale = bt.naive_scale(y.astype(np.float32)[:600])
    expected = np.mean(
        [np.mean(np.abs(y.astype(np.float32)[o : o + 96] - y.astype(np.float32)[o - 1])) / scale for o in origins]
    )
    assert result["methods"]["naive"]["mase"] == pytest.approx(expected, rel=1e-5)


class OracleForecaster:
    """Knows the future; records how it was called."""

    def __init__(self, series: list[SeriesWindow], width: float = 1.0):
        self.series = {w.server: w for w in series}
        self.width = width
        self.calls: list[list[SeriesWindow]] = []

    def predict(self, windows):
        self.calls.append(windows)
        out = {}
        for w in windows:
            server, origin = w.server.split("#")
            full = self.series[server].values
            o = int(origin)
            future = full[o : o + 96].astype(float)
            out[w.server] = {
                m: {"p10": future[:, j] - self.width, "p50": future[:, j], "p90": future[:, j] + self.width}
                for j, m in enumerate(METRICS)
            }
        return out


def test_backtest_scores_the_forecaster_in_batches_with_unique_keys():
    series = [_window("ppdb001", _noisy(1000)), _window("ppweb001", _noisy(1000, 2), profile="web_api")]
    oracle = OracleForecaster(series)
    result = bt.run_backtest(series, oracle, metrics=["cpu_pct"], chunk_size=5)
    assert [len(c) for c in oracle.calls] == [5, 5, 4]  # 14 windows in chunks of 5
    windows = [w for c in oracle.calls for w in c]
    assert len({w.server for w in windows}) == 14
    first = windows[0]
    assert first.server == "ppdb001#600" and first.profile == "database"
    assert len(first.values) == 288 and first.start == START + timedelta(minutes=5 * (600 - 288))
    np.testing.assert_array_equal(first.values, series[0].values[312:600])
    assert next(w for w in windows if w.server.startswith("ppweb")).profile == "web_api"
    tft = result["methods"]["tft"]
    assert tft["mase"] == 0.0 and tft["coverage"] == 1.0 and tft["windows"] == 14
    assert next(iter(result["methods"])) == "tft"


def test_nab_layout_maps_values_onto_one_metric(tmp_path):
    rows = ["timestamp,value", "2014-02-14 14:30:00,1.5", "2014-02-14 14:35:00,2.5", "2014-02-14 14:45:00,4.0"]
    (tmp_path / "ec2_cpu_utilization_x.csv").write_text("\n".join(rows) + "\n")
    loaded = load_csv_dir(tmp_path)
    series, mapped = loaded.series, loaded.metric_of
    assert mapped == {"ec2_cpu_utilization_x": "cpu_pct"}
    w = series[0]
    assert w.start == datetime(2014, 2, 14, 14, 30, tzinfo=UTC)
    np.testing.assert_array_equal(w.values[:, 0], [1.5, 2.5, np.nan, 4.0])  # 14:40 missing
    np.testing.assert_array_equal(w.values[[0, 1, 3], 1:], np.zeros((3, 3)))
    assert np.isnan(w.values[2]).all()


def test_contract_csv_is_rolled_up_into_bucket_means(tmp_path):
    header = "timestamp,server_name,cpu_pct,mem_pct,disk_io_mb_s,latency_ms,state"
    rows = [
        "2026-03-02T00:00:00Z,ppdb001,10,50,1,2,healthy",
        "2026-03-02T00:02:30Z,ppdb001,20,60,3,4,critical_issue",
        "2026-03-02T00:05:00Z,ppdb001,30,70,5,6,idle",
    ]
    (tmp_path / "fleet.csv").write_text("\n".join([header, *rows]) + "\n")
    loaded = load_csv_dir(tmp_path)
    series, mapped = loaded.series, loaded.metric_of
    assert mapped == {}
    w = series[0]
    assert w.server == "ppdb001" and w.profile == "database" and w.start == START
    np.testing.assert_allclose(w.values, [[15, 55, 2, 3], [30, 70, 5, 6]])
    # a 1–1 tie goes to the more severe state
    assert [int(s) for s in w.states] == [7, 0]


# --- lead time --------------------------------------------------------------------------------


class ConstantForecaster:
    def __init__(self, level: float):
        self.level = level

    def predict(self, windows):
        flat = {k: np.full(HORIZON, self.level) for k in ("p10", "p50", "p90")}
        return {w.server: dict.fromkeys(METRICS, flat) for w in windows}


def _incident_series() -> tuple[SeriesWindow, Episode]:
    y = np.full(2000, 40.0)
    y[1500:1510] = 98.0  # critical at buckets 1500–1509
    w = _window("ppweb001", y)
    at = lambda i: START + timedelta(minutes=5 * i)  # noqa: E731
    return w, Episode("ppweb001", "sudden", at(1500), at(1510), None, at(1520))


def test_lead_time_is_measured_from_the_earliest_warning():
    w, episode = _incident_series()
    result = bt.lead_time_evaluation([w], [episode], ConstantForecaster(99.0), baselines=())
    tft = result["methods"]["tft"]
    assert result["episodes"] == 1
    assert tft["detection_rate"] == 1.0
    assert tft["median_lead_minutes"] == 480.0  # warned 96 steps (8 h) ahead
    assert tft["false_alarm_rate"] == 1.0  # it warns everywhere


def test_a_forecast_below_the_threshold_never_warns():
    w, episode = _incident_series()
    result = bt.lead_time_evaluation([w], [episode], ConstantForecaster(50.0), baselines=("naive",))
    assert result["methods"]["tft"]["detection_rate"] == 0.0
    assert math.isnan(result["methods"]["tft"]["median_lead_minutes"])
    assert result["methods"]["tft"]["false_alarm_rate"] == 0.0
    assert result["methods"]["naive"]["detection_rate"] == 0.0  # a flat history gives no warning


# --- sources and command ----------------------------------------------------------------------












# --- interval calibration ---------------------------------------------------------------------


class NarrowForecaster:
    """Knows the noise-free daily cycle of ``_noisy`` but gives an interval far too narrow for its
    N(0, 2) noise."""

    def predict(self, windows):
        out = {}
        for w in windows:
            o = int(w.server.split("#")[1])
            t = np.arange(o, o + HORIZON)
            level = 50 + 20 * np.sin(2 * np.pi * t / 288)
            flat = {"p10": level - 0.5, "p50": level, "p90": level + 0.5}
            out[w.server] = dict.fromkeys(METRICS, flat)
        return out


def test_series_family_comes_from_the_name_then_the_metric():
    assert bt.series_family("ec2_cpu_utilization_24ae8d") == "cpu"
    assert bt.series_family("iio_us-east-1_i-a2eb1cd9_NetworkIn") == "network/requests"
    assert bt.series_family("Twitter_volume_KO") == "network/requests"
    assert bt.series_family("ec2_disk_write_bytes_1ef3de") == "disk"
    assert bt.series_family("machine_temperature_system_failure") == "other"
    assert bt.series_family("ppdb001", "latency_ms") == "latency"
    assert bt.series_family("ppdb001", "mem_pct") == "other"


def test_backtest_calibration_widens_a_too_narrow_tft_towards_80_percent():
    series = [_window("ppdb001", _noisy(8000)), _window("ppdb002", _noisy(8000, 1))]
    result = bt.run_backtest(series, NarrowForecaster(), metrics=["cpu_pct"])
    report = result["calibration"]
    raw, served = report["pooled"]["raw"], report["pooled"]["calibrated"]
    assert raw["coverage"] < 0.25  # ±0.5 around the truth holds 20 % of N(0, 2)
    assert served["coverage"] > 0.6
    assert served["pinball"] < raw["pinball"]
    assert list(report["families"]) == ["cpu"]
    assert result["methods"]["tft_calibrated"] == served


def test_backtest_serves_the_first_origin_uncalibrated():
    # one origin per series: no earlier target is known, so calibrated = raw
    series = [_window("ppdb001", _noisy(400))]
    result = bt.run_backtest(series, NarrowForecaster(), metrics=["cpu_pct"])
    assert result["methods"]["tft_calibrated"] == result["methods"]["tft"]
