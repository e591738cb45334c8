"""Adaptive conformal interval calibration (forecasting.engine.calibration)."""

from statistics import NormalDist

import numpy as np
import pytest

from forecasting.engine import calibration as cal
from forecasting.engine import spec
from forecasting.engine.spec import BAND_STEPS, HORIZON, QUANTILES

Z = np.array([NormalDist().inv_cdf(q) for q in QUANTILES])
P10, P90 = QUANTILES.index(0.1), QUANTILES.index(0.9)


def _calibrated_coverage(width: float, *, origins: int = 400, every: int = 12, skew: bool = False) -> tuple:
    """Serve a forecast with Gaussian quantiles scaled by ``width`` around the true mean of a series
    with N(0, 2) noise (or, with ``skew``, exponential noise); returns the calibrated coverage of
    the first 50 origins and of origins 200 on."""
    rng = np.random.default_rng(0)
    sigma = 2.0
    n = every * origins + HORIZON
    noise = rng.exponential(sigma, n) - sigma if skew else rng.normal(0, sigma, n)
    raw = 50 + width * sigma * Z[None, :] * np.ones((HORIZON, 1))
    calibrator, coverage = _serve_in_turn(50 + noise, raw, origins=origins, every=every)
    return float(np.mean(coverage[:50])), float(np.mean(coverage[200:])), calibrator


def _serve_in_turn(y, raw, *, origins: int, every: int, steps=None) -> tuple:
    """Serve ``raw`` quantiles (H, K) at origins every ``every`` steps of ``y`` through one
    calibrator; returns it and the calibrated coverage per origin (over ``steps``, default all)."""
    steps = np.ones(HORIZON, dtype=bool) if steps is None else steps
    calibrator = cal.OnlineCalibrator()
    coverage = []
    for i in range(origins):
        o = i * every
        q = calibrator.serve(o, raw, QUANTILES)
        target = y[o : o + HORIZON]
        calibrator.record(o, target, q[:, P10], q[:, P90])
        inside = (target >= q[:, P10]) & (target <= q[:, P90])
        coverage.append(np.mean(inside[steps]))
    return calibrator, coverage


def test_too_narrow_intervals_widen_until_80_percent_are_inside():
    _, after, calibrator = _calibrated_coverage(0.3)
    assert after == pytest.approx(0.80, abs=0.03)
    assert (np.exp(calibrator.served) > 2.5).all()  # 1 / 0.3 ≈ 3.3 is the right factor


def test_too_wide_intervals_narrow_until_80_percent_are_inside():
    _, after, calibrator = _calibrated_coverage(3.0)
    assert after == pytest.approx(0.80, abs=0.03)
    assert (np.exp(calibrator.served) < 0.5).all()


def test_skewed_errors_get_a_different_factor_on_each_side():
    _, after, calibrator = _calibrated_coverage(1.0, skew=True)
    assert after == pytest.approx(0.80, abs=0.03)
    lower, upper = np.exp(calibrator.served).mean(axis=0)
    assert upper > lower  # exponential noise: a long upper tail


def test_apply_scales_each_side_by_its_band_factor_and_keeps_quantiles_sorted():
    q = np.tile(np.array([8.0, 9.0, 9.5, 10.0, 10.5, 11.0, 12.0]), (HORIZON, 1))
    log_factors = np.log(np.array([[2.0, 0.5], [1.0, 1.0], [0.5, 3.0]]))
    out = cal.apply_calibration(q, QUANTILES, log_factors)
    np.testing.assert_allclose(out[0], [6.0, 8.0, 9.0, 10.0, 10.25, 10.5, 11.0])  # band 0–30 min
    np.testing.assert_allclose(out[10], q[10])  # band 30 min–2 h: factor 1
    np.testing.assert_allclose(out[95], [9.0, 9.5, 9.75, 10.0, 11.5, 13.0, 16.0])  # band 2–8 h
    assert (np.diff(out, axis=-1) >= 0).all()


def test_apply_ramps_the_factor_log_linearly_across_a_band_edge():
    q = np.tile(np.array([8.0, 9.0, 9.5, 10.0, 10.5, 11.0, 12.0]), (HORIZON, 1))
    log_factors = np.log(np.array([[1.0, 1.0], [4.0, 4.0], [4.0, 4.0]]))
    width = cal.apply_calibration(q, QUANTILES, log_factors)[:, -1] - 10.0  # p98's distance: 2 × factor

    np.testing.assert_allclose(width[:3], 2.0)  # band 0's own factor up to 3 steps before its edge
    np.testing.assert_allclose(width[9:], 8.0)  # band 1's from 3 steps after it
    np.testing.assert_allclose(np.diff(np.log(width[2:10])), np.log(4.0) / 7)  # equal log steps between


def test_step_mix_shares_sum_to_one_and_are_each_band_away_from_its_edges():
    mix = np.asarray(spec.STEP_MIX)

    np.testing.assert_allclose(mix.sum(axis=0), 1.0)
    assert (mix >= 0).all()
    for b, (first, end) in enumerate(BAND_STEPS):
        inner = range(first + spec.BAND_RAMP_STEPS[b], end - (spec.BAND_RAMP_LEAD[b + 1] if b + 1 < len(BAND_STEPS) else 0))
        assert all(mix[b, h] == 1.0 for h in inner), b


def test_apply_clips_to_the_metric_range():
    q = np.tile(np.array([80.0, 85.0, 88.0, 90.0, 92.0, 95.0, 99.0]), (HORIZON, 1))
    out = cal.apply_calibration(q, QUANTILES, np.log(np.full((3, 2), 4.0)), lower=0.0, upper=100.0)
    assert out.max() == 100.0 and out[0, 3] == 90.0


def test_bands_are_30_minutes_2_hours_and_8_hours_of_steps():
    assert BAND_STEPS == ((0, 6), (6, 24), (24, 96))
    assert len(cal.BAND_OF_STEP) == HORIZON


def test_the_calibrator_uses_only_targets_known_before_the_origin():
    calibrator = cal.OnlineCalibrator()
    y = np.full(HORIZON, 100.0)  # every target above p90
    calibrator.record(0, y, np.zeros(HORIZON), np.zeros(HORIZON))
    calibrator.serve(0, np.zeros((HORIZON, 7)), QUANTILES)
    np.testing.assert_array_equal(calibrator.log_factors, 0.0)  # nothing known at its own origin
    calibrator.serve(3, np.zeros((HORIZON, 7)), QUANTILES)  # steps 0, 1, 2 are known
    expected = cal.GAMMAS[0] * 3 * (1.0 - cal.TARGET_MISS)
    assert calibrator.log_factors[0, cal.UPPER] == pytest.approx(expected)
    assert calibrator.log_factors[0, cal.LOWER] == pytest.approx(-cal.GAMMAS[0] * 3 * cal.TARGET_MISS)
    np.testing.assert_array_equal(calibrator.log_factors[1:], 0.0)
    calibrator.serve(3, np.zeros((HORIZON, 7)), QUANTILES)  # the same targets never count twice
    assert calibrator.log_factors[0, cal.UPPER] == pytest.approx(expected)


def test_one_update_moves_a_state_by_at_most_n_cap_targets():
    state = cal.updated_log_factors(np.zeros(2), np.array(1000.0), np.array(0.0), np.array(1000.0), gamma=0.02)
    assert state[cal.UPPER] == pytest.approx(0.02 * cal.N_CAP * 0.9)


def test_a_band_is_served_its_own_correction_plus_every_nearer_bands():
    own = np.log(np.array([[2.0, 0.5], [1.5, 1.0], [1.0, 4.0]]))
    served = np.exp(cal.served_log_factors(own))
    np.testing.assert_allclose(served, [[2.0, 0.5], [3.0, 0.5], [3.0, 2.0]])


def test_farther_bands_take_smaller_steps_of_their_own():
    assert cal.GAMMAS[0] > cal.GAMMAS[1] > cal.GAMMAS[2] > 0
    n = np.full(3, 12.0)
    own = cal.updated_log_factors(np.zeros((3, 2)), n, n, n, gamma=cal.gamma_of_band(np.arange(3)))
    np.testing.assert_allclose(own[:, cal.UPPER], np.array(cal.GAMMAS) * 12 * 0.9)


def test_a_miscalibration_only_the_far_band_has_is_still_corrected():
    """Near bands right, the 2–8 h band's raw intervals three times too narrow: its own (small)
    steps still bring it to 80 %, while the nearer bands stay where they are."""
    rng = np.random.default_rng(1)
    sigma, every, origins = 2.0, 12, 1500
    y = 50 + rng.normal(0, sigma, every * origins + HORIZON)
    width = np.where(cal.BAND_OF_STEP == 2, 1 / 3, 1.0)[:, None]
    raw = 50 + width * sigma * Z[None, :]
    calibrator, coverage = _serve_in_turn(y, raw, origins=origins, every=every, steps=cal.BAND_OF_STEP == 2)
    assert np.mean(coverage[-300:]) == pytest.approx(0.80, abs=0.03)
    np.testing.assert_allclose(np.exp(calibrator.served[0]), 1.0, atol=0.2)


def test_a_new_series_starts_from_its_profiles_mean_factor():
    web, db = np.full((3, 2), 0.2), np.full((3, 2), -0.4)
    states = [("web_api", web), ("web_api", web * 3), ("database", db)]
    np.testing.assert_allclose(cal.Priors(states).of("web_api"), 0.4)
    np.testing.assert_allclose(cal.Priors(states).of("etl"), (0.2 + 0.6 - 0.4) / 3)
    np.testing.assert_array_equal(cal.Priors([]).of("etl"), 0.0)
