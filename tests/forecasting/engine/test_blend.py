"""The per-band blend of the model with persistence (forecasting.engine.blend)."""

import json
from datetime import UTC, datetime

import numpy as np
import pytest

from forecasting.engine import backtest as bt
from forecasting.engine import blend as bl
from forecasting.engine import spec
from forecasting.engine.blend_fit import attach_blend, fit_origins
from forecasting.engine.calibration import OnlineCalibrator
from forecasting.engine.folders import BLEND_FILE, read_blend, write_blend
from forecasting.engine.series import SeriesWindow
from forecasting.engine.spec import HORIZON

LEVELS = (0.1, 0.5, 0.9)


def test_persistence_is_the_last_value_with_the_context_s_own_changes():
    context = np.arange(300, dtype=np.float64)  # +1 per step: an (h+1)-step change is always h + 1
    q = bl.persistence_quantiles(context, LEVELS, HORIZON)
    assert q.shape == (HORIZON, 3)
    np.testing.assert_allclose(q[:, 1], 299.0)  # p50: the last value
    np.testing.assert_allclose(q[:, 0], 299.0)  # no change below 0 was seen
    np.testing.assert_allclose(q[:, 2], 299.0 + np.arange(1, HORIZON + 1))


def test_persistence_skips_gaps_and_is_clipped():
    context = np.array([90.0, 95.0, np.nan, 99.0, 98.0, np.nan])
    q = bl.persistence_quantiles(context, LEVELS, 4, upper=100.0)
    assert q[0, 1] == 98.0  # the last observed value
    assert np.all(q <= 100.0) and np.all(np.isfinite(q))


def test_blend_mixes_each_band_with_its_own_weight_away_from_its_edges():
    model, persistence = np.full((HORIZON, 3), 10.0), np.zeros((HORIZON, 3))
    out = bl.blend_quantiles(model, persistence, [0.0, 0.5, 1.0])
    assert np.all(out[:3] == 0.0) and np.allclose(out[9:18], 5.0) and np.allclose(out[30:], 10.0)


def test_the_served_blend_ramps_across_band_edges_instead_of_jumping():
    model, persistence = np.full((HORIZON, 3), 10.0), np.zeros((HORIZON, 3))
    p50 = bl.blend_quantiles(model, persistence, [0.1, 0.7, 0.95])[:, 1]

    steps = np.diff(p50)
    assert np.all(steps >= -1e-12)  # from one band's weight to the next, monotonically
    # the 30-minute edge's jump (6.0) is spread over the 7 steps from step 3 to step 9, and the 2 h one's (2.5) over 13
    assert steps.max() == pytest.approx(6.0 / 7) and steps[15:].max() == pytest.approx(2.5 / 13)


def _trend_case(n_windows: int = 60):
    """Windows where persistence wins near (the series is a random walk) and the model far (it
    knows the level the walk reverts to by 2 h)."""
    rng = np.random.default_rng(3)
    fit = bl.BlendFit()
    cases = []
    for _ in range(n_windows):
        context = 50 + np.cumsum(rng.normal(0, 1, 288))
        last = context[-1]
        steps = np.arange(HORIZON)
        y = np.where(steps < 24, last + np.cumsum(rng.normal(0, 1, HORIZON)), 50 + rng.normal(0, 1, HORIZON))
        model = np.stack([np.full(HORIZON, 50.0 + d) for d in (-2.0, 0.0, 2.0)], axis=1)
        persistence = bl.persistence_quantiles(context, LEVELS, HORIZON)
        fit.add("cpu", y, model, persistence, LEVELS, 1.0)
        cases.append((y, model, persistence))
    return fit, cases


def _band_loss(cases, weights, band: int) -> float:
    _, first, end = bl.HORIZON_BANDS[band]
    tau = np.array(LEVELS)
    losses = []
    for y, model, persistence in cases:
        q = bl.blend_quantiles(model, persistence, weights)[first:end]
        diff = y[first:end, None] - q
        losses.append(np.maximum(tau * diff, (tau - 1) * diff).mean())
    return float(np.mean(losses))


def test_the_fitted_blend_without_ramps_is_never_worse_than_its_better_component(monkeypatch):
    # The fit chooses one weight per band: this holds for the blend stepping at band edges. The served
    # ramps across edges (spec.BAND_RAMP_STEPS / _LEAD) give it up where the better component switches
    # abruptly at an edge, as here at 2 h; on development series they scored as well or better.
    monkeypatch.setattr(bl, "STEP_MIX", np.asarray(spec.step_mix((0, 0, 0))))
    fit, cases = _trend_case()
    weights = bl.weights_of(bl.fit_weights(fit))
    assert weights[0] < weights[2]  # leans on the last value near, on the model far
    for band in range(3):
        blended = _band_loss(cases, weights, band)
        assert blended <= _band_loss(cases, [0.0] * 3, band) + 1e-12
        assert blended <= _band_loss(cases, [1.0] * 3, band) + 1e-12


def test_fit_weighs_families_equally():
    fit = bl.BlendFit()
    y = np.zeros(HORIZON)
    good, bad = np.zeros((HORIZON, 3)), np.full((HORIZON, 3), 4.0)
    for _ in range(50):  # cpu: many windows where the model is right
        fit.add("cpu", y, good, bad, LEVELS, 1.0)
    fit.add("disk", y, bad * 10, good, LEVELS, 1.0)  # disk: one window, the model 10× further off
    assert bl.fit_weights(fit)["weights"]["0-30m"] == 0.0
    assert bl.fit_weights(fit, ["cpu"])["weights"]["0-30m"] == 1.0


def test_blend_json_round_trip(tmp_path):
    fit, _ = _trend_case(5)
    fitted = bl.fit_weights(fit)
    write_blend(tmp_path, fitted)
    back = read_blend(tmp_path)
    assert back["weights"] == fitted["weights"]
    np.testing.assert_array_equal(bl.weights_of(back), bl.weights_of(fitted))
    assert back["strength"] == bl.STRENGTH and back["format"] == bl.BLEND_FORMAT


@pytest.mark.parametrize(
    "content",
    ["not json", json.dumps({"format": "other"}), json.dumps({"format": bl.BLEND_FORMAT, "weights": {"0-30m": 2}})],
)
def test_a_malformed_blend_is_ignored(tmp_path, content):
    (tmp_path / BLEND_FILE).write_text(content)
    assert read_blend(tmp_path) is None


def test_online_weights_lean_on_the_last_value_where_the_model_loses():
    prior = [0.5, 0.5, 0.5]
    sums = np.zeros((3, 4))
    sums[0] = [200, 300.0, 100.0, 200.0]  # 0-30m: the model's MAE 1.5 s, the last value's 0.5 s
    sums[2] = [200, 100.0, 300.0, 200.0]  # 2-8h: the other way round
    w = bl.online_weights(prior, sums)
    assert w[0] < 0.5 < w[2]
    assert w[1] == 0.5  # no evidence: the fitted weight as it is
    np.testing.assert_array_equal(bl.online_weights([1.0, 0.2, 0.7], np.zeros((3, 4))), [1.0, 0.2, 0.7])


def _served_at_origins(y: np.ndarray, origins) -> list[np.ndarray]:
    """Serve a fixed forecast at each origin through ServedSeries, feeding the targets in turn."""
    served_series = bl.ServedSeries(
        {"format": bl.BLEND_FORMAT, "weights": {"0-30m": 0.5, "30m-2h": 0.5, "2-8h": 0.5}, "strength": 4.0},
        OnlineCalibrator(),
    )
    model = np.stack([np.full(HORIZON, 50.0 + d) for d in (-1.0, 0.0, 1.0)], axis=1)
    out = []
    for o in origins:
        served = served_series.serve(o, model, y[o - 288 : o], LEVELS)
        served_series.record(o, y[o : o + HORIZON], served, 1.0, LEVELS)
        out.append(served)
    return out


def test_served_forecasts_never_look_ahead():
    rng = np.random.default_rng(0)
    y = 50 + np.cumsum(rng.normal(0, 1, 2000))
    origins = list(range(300, 1700, 24))
    base = _served_at_origins(y, origins)
    cut = origins[30]
    changed = y.copy()
    changed[cut:] += rng.normal(0, 20, len(y) - cut)  # every target from the 31st origin on differs
    again = _served_at_origins(changed, origins)
    for k, o in enumerate(origins):
        if o <= cut:
            np.testing.assert_array_equal(again[k], base[k])
    assert not np.array_equal(again[31], base[31])  # the perturbation does reach later origins


class _MeanForecaster:
    """Forecasts the context's mean ± 2 from the context alone."""

    def predict(self, windows):
        out = {}
        for w in windows:
            level = float(np.nanmean(w.values[:, 0]))
            row = {
                "p10": np.full(HORIZON, level - 2),
                "p50": np.full(HORIZON, level),
                "p90": np.full(HORIZON, level + 2),
            }
            out[w.server] = dict.fromkeys(("cpu_pct", "mem_pct", "disk_io_mb_s", "latency_ms"), row)
        return out


def _walk(n: int = 1500) -> list:
    rng = np.random.default_rng(1)
    values = np.zeros((n, 4), dtype=np.float32)
    values[:, 0] = 50 + np.cumsum(rng.normal(0, 0.5, n))
    return [SeriesWindow("ppdb001", "database", datetime(2026, 3, 2, tzinfo=UTC), 5, values, np.ones(n, dtype=np.int8))]


def _fixed(w: float) -> dict:
    return {"format": bl.BLEND_FORMAT, "weights": dict.fromkeys(bl.BAND_NAMES, w), "strength": 0.0}


def test_backtest_serves_the_model_alone_with_weights_1_and_the_last_value_with_weights_0():
    series = _walk()
    alone = bt.run_backtest(series, _MeanForecaster(), metrics=["cpu_pct"], blend=_fixed(1.0))
    assert alone["methods"]["served"] == alone["methods"]["tft_calibrated"]
    last = bt.run_backtest(series, _MeanForecaster(), metrics=["cpu_pct"], blend=_fixed(0.0))
    assert last["methods"]["served"]["mase"] == pytest.approx(last["methods"]["naive"]["mase"])
    assert last["methods"]["served"]["mase"] < alone["methods"]["served"]["mase"]  # a random walk: last wins


def test_weights_are_fitted_per_metric_beside_every_metric_together():
    fit = bl.BlendFit()
    y = np.zeros(HORIZON)
    right, off = np.zeros((HORIZON, 3)), np.full((HORIZON, 3), 4.0)
    for _ in range(5):
        fit.add("cpu [cpu_pct]", y, right, off, LEVELS, 1.0)  # the model right on cpu
        fit.add("memory [mem_pct]", y, off, right, LEVELS, 1.0)  # the last value right on memory
    fitted = bl.fit_weights(fit)
    np.testing.assert_array_equal(bl.weights_of(fitted, "cpu_pct"), [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(bl.weights_of(fitted, "mem_pct"), [0.0, 0.0, 0.0])
    assert bl.weights_of(fitted, "latency_ms").tolist() == bl.weights_of(fitted).tolist()  # no own fit


class _ArrayForecaster:
    """predict_array of the context's last value at every quantile (persistence with no spread)."""

    quantiles = (0.1, 0.5, 0.9)

    def predict_array(self, windows):
        last = np.stack([w.values[-1] for w in windows]).astype(np.float32)  # (B, M)
        return np.broadcast_to(last[:, None, :, None], (len(windows), HORIZON, 4, 3)).copy()


def test_training_fits_the_blend_on_the_validation_tail_and_stores_it(tmp_path):
    series = _walk(3000)
    assert fit_origins(3000, (0.8, 1.0)).min() >= 2400  # only the validation tail's windows
    note = attach_blend(tmp_path, series, _ArrayForecaster(), 0.2)
    stored = read_blend(tmp_path)
    assert stored is not None and "validation tail (0.2)" in stored["fitted_on"]
    assert stored["windows"] == {"cpu (simulated) [cpu_pct]": len(fit_origins(3000, (0.8, 1.0)))}  # a contract name
    assert note.startswith("blend weights")


def test_persistence_is_the_linear_quantile_of_each_steps_changes_within_float32_rounding():
    rng = np.random.default_rng(11)
    context = 500 + np.cumsum(rng.normal(0, 3, 288))
    levels = (0.02, 0.25, 0.5, 0.9, 0.98)
    q = bl.persistence_quantiles(context, levels, HORIZON, lower=-np.inf)
    for h in (0, 5, 40, HORIZON - 1):
        changes = context[h + 1 :] - context[: -h - 1]
        spread = np.quantile(changes, levels)
        expected = context[-1] + np.where(np.array(levels) < 0.5, np.minimum(spread, 0), np.maximum(spread, 0))
        expected[2] = context[-1]
        np.testing.assert_allclose(q[h], expected, rtol=0, atol=1e-4, err_msg=f"step {h}")  # |changes| ≤ ~100
