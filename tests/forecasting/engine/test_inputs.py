"""The network inputs: windows -> arrays (numpy only, no torch, no database)."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from forecasting.engine import inputs as dspec
from forecasting.engine.series import SeriesWindow
from forecasting.engine.spec import CONTEXT, HORIZON, STATES, TARGETS

START = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)  # a Monday, 00:00 UTC


def window(n=300, server="ppdb001", start=START, seed=0, level=50.0, states=True) -> SeriesWindow:
    rng = np.random.default_rng(seed)
    values = (level + rng.normal(size=(n, 4))).astype(np.float32)
    st = rng.integers(0, len(STATES), size=n).astype(np.int8) if states else None
    return SeriesWindow(server, "database", start, 5, values, st)


VOCAB = dspec.Vocab(servers=(dspec.UNKNOWN, "ppdb001"))


def test_full_window_uses_last_288_buckets_as_encoder():
    x = dspec.build_inputs([window(400)], VOCAB)
    assert x["encoder_cont"].shape == (1, CONTEXT, len(dspec.X_REALS))
    assert x["decoder_cont"].shape == (1, HORIZON, len(dspec.X_REALS))
    assert x["encoder_cat"].shape == (1, CONTEXT, len(dspec.X_CATEGORICALS))
    assert x["encoder_lengths"].tolist() == [CONTEXT]
    assert x["decoder_lengths"].tolist() == [HORIZON]


def test_series_shorter_than_encoder_keeps_its_length():
    x = dspec.build_inputs([window(40), window(300)], VOCAB)
    assert x["encoder_lengths"].tolist() == [40, CONTEXT]
    # padding after the short encoder is the "missing" state category
    assert (x["encoder_cat"][0, 40:, X_CAT("state")] == 0).all()


def X_CAT(name):  # noqa: N802
    return dspec.X_CATEGORICALS.index(name)


def X_REAL(name):  # noqa: N802
    return dspec.X_REALS.index(name)


def test_single_bucket_window_builds_finite_inputs():
    x = dspec.build_inputs([window(1)], VOCAB)
    assert x["encoder_lengths"].tolist() == [1]
    assert np.isfinite(x["encoder_cont"]).all()
    assert np.isfinite(x["target_scale"]).all() and (x["target_scale"][..., 1] > 0).all()


def test_gaps_are_forward_filled_and_marked_missing():
    w = window(10)
    w.values[4:6] = np.nan
    x = dspec.build_inputs([w], VOCAB)
    z = x["encoder_cont"][0, :, X_REAL("cpu_pct")]
    assert z[4] == z[3] and z[5] == z[3]
    states = x["encoder_cat"][0, :, X_CAT("state")]
    assert states[4] == 0 and states[5] == 0 and states[3] != 0


def test_leading_gap_is_back_filled():
    w = window(10)
    w.values[:3] = np.nan
    x = dspec.build_inputs([w], VOCAB)
    z = x["encoder_cont"][0, :, X_REAL("mem_pct")]
    assert z[0] == z[3]
    assert np.isfinite(x["encoder_cont"]).all()


def test_window_with_every_bucket_missing_does_not_crash():
    w = window(20)
    w.values[:] = np.nan
    x = dspec.build_inputs([w], VOCAB)
    assert np.isfinite(x["encoder_cont"]).all()
    assert (x["encoder_cat"][0, :, X_CAT("state")] == 0).all()


def test_empty_window_builds_one_missing_step():
    w = SeriesWindow("ppdb001", "database", START, 5, np.zeros((0, 4), np.float32))
    x = dspec.build_inputs([w], VOCAB)
    assert x["encoder_lengths"].tolist() == [1]
    assert np.isfinite(x["encoder_cont"]).all()


def test_normalisation_is_per_window_so_scale_does_not_matter():
    small = window(100, level=5.0)
    big = SeriesWindow("x", "database", START, 5, small.values * 1000.0, small.states)
    xs, xb = dspec.build_inputs([small], VOCAB), dspec.build_inputs([big], VOCAB)
    cols = [X_REAL(m) for m in TARGETS]
    np.testing.assert_allclose(xs["encoder_cont"][..., cols], xb["encoder_cont"][..., cols], atol=1e-3)
    np.testing.assert_allclose(xb["target_scale"], xs["target_scale"] * 1000.0, rtol=1e-4)


def test_constant_series_gets_a_positive_scale():
    w = SeriesWindow("x", "database", START, 5, np.full((50, 4), 7.0, np.float32))
    x = dspec.build_inputs([w], VOCAB)
    assert (x["target_scale"][..., 1] > 0).all()
    assert np.allclose(x["encoder_cont"][..., [X_REAL(m) for m in TARGETS]], 0.0)


def test_unseen_server_maps_to_the_unknown_category():
    x = dspec.build_inputs([window(10, server="ppnew999"), window(10)], VOCAB)
    assert x["encoder_cat"][0, 0, X_CAT("server")] == 0
    assert x["encoder_cat"][1, 0, X_CAT("server")] == 1


def test_calendar_features_cover_encoder_and_future_steps():
    # 12 buckets from Monday 00:00 -> the future starts Monday 01:00
    x = dspec.build_inputs([window(12)], VOCAB)
    hours_enc = x["encoder_cat"][0, :12, X_CAT("hour")]
    hours_dec = x["decoder_cat"][0, :, X_CAT("hour")]
    assert hours_enc.tolist() == [0] * 12
    assert hours_dec[:12].tolist() == [1] * 12
    assert hours_dec[-1] == (1 + (HORIZON - 1) * 5 // 60) % 24
    assert x["decoder_cat"][0, 0, X_CAT("weekday")] == 0  # Monday
    sunday = dspec.build_inputs([window(1, start=START - timedelta(minutes=5))], VOCAB)
    assert sunday["encoder_cat"][0, 0, X_CAT("weekday")] == 6
    assert sunday["decoder_cat"][0, 0, X_CAT("weekday")] == 0


def test_naive_start_is_rejected():
    with pytest.raises(ValueError, match="timezone-aware"):
        SeriesWindow("x", "generic", datetime(2026, 1, 1), 5, np.zeros((3, 4)))  # noqa: DTZ001


def test_denormalise_inverts_target_scale():
    ts = np.array([[[10.0, 2.0]] * 4], dtype=np.float32)  # (1, 4, 2)
    z = np.ones((1, HORIZON, 4, 3), dtype=np.float32)
    assert np.allclose(dspec.denormalise(z, ts), 12.0)


def test_clip_ranges_bounds_percentages_and_non_negatives():
    pred = np.array([[150.0, -5.0, -1.0, 1e9]], dtype=np.float32)[..., None]  # (1, 4, 1)
    out = dspec.clip_ranges(pred)[..., 0]
    assert out.tolist() == [[100.0, 0.0, 0.0, 1e9]]


def test_centre_is_the_recent_median_so_a_level_shift_is_followed():
    values = np.full((100, 4), 5.0, np.float32)
    values[-20:] = 15.0  # the level moved 20 buckets ago
    values[-1] = 500.0  # and the last bucket is a spike
    x = dspec.build_inputs([SeriesWindow("x", "generic", START, 5, values)], VOCAB)
    assert np.allclose(x["target_scale"][0, :, 0], 15.0)


def test_centre_of_a_short_window_uses_what_exists():
    values = np.array([[1.0, 2.0, 3.0, 4.0], [3.0, 2.0, 5.0, np.nan]], np.float32)
    x = dspec.build_inputs([SeriesWindow("x", "generic", START, 5, values)], VOCAB)
    assert np.allclose(x["target_scale"][0, :, 0], [2.0, 2.0, 4.0, 4.0])
