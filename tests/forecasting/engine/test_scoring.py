"""forecasting.engine.scoring against values computed by hand (see each test's comment)."""

import numpy as np
import pytest

from forecasting.engine.metrics import last_observed, naive_scales
from forecasting.engine.scoring import (
    accuracy,
    band_sums,
    gather_targets,
    pack_quantiles,
    packed_size,
    unpack_quantiles,
)
from forecasting.engine.spec import BAND_NAMES, HORIZON, METRICS

M = len(METRICS)


def _tiny_forecast():
    """One forecast: p10 = 8, p50 = 10, p90 = 12 everywhere; band 0 (steps 0–5) of metric 0 observed
    as 9, 11, 13, 7, 10, 10; last value at the origin 9; MASE scale 2."""
    quantiles = np.zeros((1, HORIZON, M, 3))
    quantiles[..., 0], quantiles[..., 1], quantiles[..., 2] = 8.0, 10.0, 12.0
    observed = np.full((1, HORIZON, M), np.nan)
    observed[0, :6, 0] = [9, 11, 13, 7, 10, 10]
    last = np.full((1, M), 9.0)
    scale = np.full((1, M), 2.0)
    return quantiles, observed, last, scale


def _sums_of_metric_0(band=0):
    sums = band_sums(*_tiny_forecast(), band)
    return {name: float(value[0, 0]) for name, value in sums.items()}


def test_band_sums_mae_and_naive_mae_by_hand():
    # |y − 10| = 1 1 3 3 0 0 → 8; |y − 9| = 0 2 4 2 1 1 → 10
    sums = _sums_of_metric_0()

    assert (sums["n"], sums["abs_err"], sums["naive_abs_err"]) == (6, pytest.approx(8.0), pytest.approx(10.0))


def test_band_sums_mase_and_ratio_to_naive_by_hand():
    # MASE = MAE / scale = (8 / 6) / 2 = 0.667; ×naive = 8 / 10 = 0.8; naive MASE = (10 / 6) / 2
    result = accuracy(_sums_of_metric_0())

    assert result["mase"] == pytest.approx(8 / 12)
    assert result["mase_vs_naive"] == pytest.approx(0.8)
    assert result["naive_mase"] == pytest.approx(10 / 12)


def test_band_sums_pinball_by_hand():
    # mean over q ∈ {0.1, 0.5, 0.9} of max(q·d, (q − 1)·d), d = y − pred, per target:
    # y=9: (0.1 + 0.5 + 0.3)/3; y=11: (0.3 + 0.5 + 0.1)/3; y=13: (0.5 + 1.5 + 0.9)/3; y=7: (0.9 + 1.5 + 0.5)/3;
    # y=10 twice: (0.2 + 0 + 0.2)/3 → total 8.4 / 3 = 2.8, mean 2.8 / 6
    result = accuracy(_sums_of_metric_0())

    assert result["pinball"] == pytest.approx(2.8 / 6)


def test_band_sums_coverage_counts_by_hand():
    # inside [8, 12]: 9 11 10 10; below 8: 7; above 12: 13
    sums = _sums_of_metric_0()

    assert (sums["inside"], sums["below"], sums["above"]) == (4, 1, 1)
    assert accuracy(sums)["coverage_80"] == pytest.approx(4 / 6)


def test_missing_targets_are_not_scored():
    sums = _sums_of_metric_0(band=1)  # nothing observed in 30 min–2 h

    assert sums["n"] == 0 and sums["abs_err"] == 0 and sums["scale"] == 0


def test_a_zero_scale_gives_no_mase_instead_of_infinity():
    quantiles, observed, last, _ = _tiny_forecast()
    sums = band_sums(quantiles, observed, last, np.zeros((1, M)), 0)

    assert accuracy({k: float(v[0, 0]) for k, v in sums.items()})["mase"] is None


def test_three_bands_cover_the_horizon():
    assert BAND_NAMES == ("0-30m", "30m-2h", "2-8h")


def test_naive_scale_is_the_mean_one_step_change_over_observed_pairs():
    values = np.full((5, M), np.nan)
    values[:, 0] = [1.0, 3.0, np.nan, 4.0, 8.0]  # pairs (1,3) and (4,8): (2 + 4) / 2

    assert naive_scales(values)[0] == pytest.approx(3.0)


def test_last_observed_skips_trailing_gaps():
    values = np.full((4, M), np.nan)
    values[:2, 0] = [5.0, 6.0]

    assert last_observed(values)[0] == 6.0 and np.isnan(last_observed(values)[1])


def test_gather_targets_matches_keys_and_leaves_gaps_nan():
    keys = np.array([3, 5, 9])
    values = np.array([[30.0], [50.0], [90.0]])

    out = gather_targets(keys, values, np.array([[5, 6], [9, 3]]))

    assert out[0, 0, 0] == 50.0 and np.isnan(out[0, 1, 0]) and out[1, 0, 0] == 90.0 and out[1, 1, 0] == 30.0


def test_packed_quantiles_come_back_within_half_a_step_of_each_metrics_range():
    rng = np.random.default_rng(24)
    q = np.sort(rng.normal(50.0, 20.0, (3, 96, 4, 3)), axis=-1)
    q[:, :, 3] *= 100.0  # a latency-like metric in the thousands

    back = unpack_quantiles(b"".join(pack_quantiles(q)), 96, 4)

    half_step = (q.max(axis=(1, 3)) - q.min(axis=(1, 3))) / 65535 / 2  # (N, M)
    assert (np.abs(back - q) <= half_step[:, None, :, None] * 1.01 + 1e-9).all()


def test_a_packed_forecast_takes_2336_bytes_half_of_float32():
    blobs = pack_quantiles(np.zeros((2, 96, 4, 3)))

    assert [len(b) for b in blobs] == [packed_size(96, 4)] * 2 == [2336, 2336]


def test_a_flat_metric_comes_back_exact():
    q = np.full((1, 96, 4, 3), 7.25)

    np.testing.assert_array_equal(unpack_quantiles(pack_quantiles(q)[0], 96, 4), q)
