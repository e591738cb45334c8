"""forecasting.engine.explanation and the network's explanation pass (CPU, seconds)."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import torch

from forecasting.engine import explanation as ex
from forecasting.engine import folders, inputs, network
from forecasting.engine.alert_rules import MESSAGE_MAX, with_drivers
from forecasting.engine.explanation import GROUPS, HEURISTIC_TEXT, attended_state, heuristic_explanation
from forecasting.engine.series import SeriesWindow
from forecasting.engine.simulator import fleet_names, simulate_buckets
from forecasting.engine.spec import CONTEXT, QUANTILES, STATE_INDEX

ROOT = Path(__file__).resolve().parents[3]
DEFAULT_MODEL = ROOT / "models" / "tft_model_20261202T135112Z"
START = datetime(2026, 1, 5, tzinfo=UTC)
TINY = {"hidden_size": 8, "attention_head_size": 1, "hidden_continuous_size": 4, "dropout": 0.0}


@pytest.fixture(scope="module")
def forecaster():
    return network.load_forecaster(DEFAULT_MODEL, device="cpu")


@pytest.fixture(scope="module")
def windows():
    end = datetime(2026, 3, 2, 12, tzinfo=UTC)
    return simulate_buckets(servers=fleet_names(12), start=end - timedelta(hours=24), end=end, seed=3)


@pytest.fixture(scope="module")
def explained(forecaster, windows):
    return forecaster.predict_explained(windows)


def test_variable_weights_sum_to_one_per_group_and_are_finite(explained):
    for e in explained[1]:
        for group in GROUPS:
            weights = np.array([v["weight"] for v in e["variables"][group]])
            assert np.isfinite(weights).all() and (weights >= 0).all()
            assert weights.sum() == pytest.approx(1.0, abs=2e-3)


def test_every_input_of_the_spec_is_named_once_per_group(explained):
    e = explained[1][0]
    names = {g: sorted(v["name"] for v in e["variables"][g]) for g in GROUPS}

    assert names["static"] == sorted([*inputs.STATIC_CATEGORICALS, *inputs.STATIC_REALS])
    assert names["encoder"] == sorted([*inputs.KNOWN_CATEGORICALS, *inputs.ENCODER_CATEGORICALS, *inputs.KNOWN_REALS,
                                       *inputs.ENCODER_REALS])
    assert names["decoder"] == sorted([*inputs.KNOWN_CATEGORICALS, *inputs.KNOWN_REALS])


def test_attention_shares_sum_to_one_and_blocks_cover_the_history(explained):
    for e in explained[1]:
        att = e["attention"]
        assert att["last_hour"] + att["same_time_yesterday"] + att["rest"] == pytest.approx(1.0, abs=2e-3)
        assert len(att["blocks"]) == CONTEXT // 6
        assert sum(att["blocks"]) == pytest.approx(1.0, abs=5e-3)


def test_an_explanation_is_built_when_first_read_and_kept(explained, monkeypatch):
    _, lazy = explained
    built = []
    original = ex.explanation
    monkeypatch.setattr(ex, "explanation", lambda attr, i, states: built.append(i) or original(attr, i, states))
    fresh = ex.Explanations()
    fresh._rows = list(lazy._rows)  # the same windows, nothing built yet

    first, again, last = fresh[3], fresh[3], fresh[-1]

    assert built == [3, len(lazy) - 1]
    assert first is again and first == lazy[3] and last == lazy[len(lazy) - 1]
    assert len(fresh) == len(lazy) and fresh[1:3] == [lazy[1], lazy[2]]
    with pytest.raises(IndexError):
        fresh[len(lazy)]


def test_the_explained_pass_forecasts_what_the_fused_pass_forecasts(forecaster, windows, explained):
    plain = forecaster.predict_array(windows)

    np.testing.assert_allclose(explained[0], plain, atol=0.05)


def _state_selecting_network():
    """A tiny network whose encoder variable selection puts its weight on the state: the selection
    GRN's output norm ignores its input (weight 0) and its bias favours the state column."""
    net = network.build_network(TINY, inputs.Vocab(), QUANTILES, CONTEXT)
    norm = net.encoder_variable_selection.flattened_grn.gate_norm.add_norm.norm
    with torch.no_grad():
        norm.weight.zero_()
        norm.bias.zero_()
        norm.bias[net.encoder_variables.index("state")] = 4.0
    return net.eval()


def test_state_ranks_first_for_a_network_that_selects_the_heavy_load_state():
    net = _state_selecting_network()
    forecaster = network.Forecaster(net, {"vocab": inputs.Vocab().to_json(), "quantiles": list(QUANTILES),
                                          "horizon": 96, "max_encoder": CONTEXT, "step_minutes": 5}, "tiny", "cpu")
    rng = np.random.default_rng(0)
    flat = np.stack([30 + rng.normal(0, 1, 48), np.full(48, 50.0), np.full(48, 5.0), np.full(48, 12.0)], axis=1)
    window = SeriesWindow("ppweb001", "web_api", START, 5, flat.astype(np.float32),
                          np.full(48, STATE_INDEX["heavy_load"], dtype=np.int8))

    _, [e] = forecaster.predict_explained([window])

    assert e["variables"]["encoder"][0]["name"] == "state"
    assert e["text"].startswith("driven by the heavy_load state and ")


def test_attended_state_is_the_state_whose_buckets_got_most_attention():
    states = np.array([STATE_INDEX["healthy"]] * 8 + [STATE_INDEX["heavy_load"]] * 2, dtype=np.int8)
    attention = np.array([0.05] * 8 + [0.3, 0.3])

    assert attended_state(attention, states, 10) == "heavy_load"


def test_a_heuristic_forecast_says_heuristic_no_model_explanation():
    assert heuristic_explanation() == {"method": "heuristic", "text": "heuristic: no model explanation"}
    assert HEURISTIC_TEXT == "heuristic: no model explanation"


def test_a_driver_clause_that_does_not_fit_the_message_field_is_left_out_whole():
    message = "x" * (MESSAGE_MAX - 10)

    assert with_drivers(message, "driven by mem_pct history") == message
    assert with_drivers("short", "driven by mem_pct history") == "short; driven by mem_pct history"


def test_the_committed_model_has_its_global_importance():
    importance = folders.read_importance(DEFAULT_MODEL)

    assert importance is not None and importance["windows"] > 100
    for group in GROUPS:
        assert sum(v["weight"] for v in importance["variables"][group]) == pytest.approx(1.0, abs=2e-3)


def test_a_folder_without_importance_reads_as_none(tmp_path):
    assert folders.read_importance(tmp_path) is None


def test_training_writes_the_variable_importance_into_the_folder_and_its_card(tmp_path):
    from forecasting.engine import training

    end = datetime(2026, 1, 5, tzinfo=UTC)
    series = simulate_buckets(servers=fleet_names(2), start=end - timedelta(days=3), end=end, seed=1)
    cfg = training.TrainConfig(epochs=1, batches_per_epoch=2, batch_size=8, max_val_windows=8, hparams=TINY,
                               device="cpu")

    result = training.train(series, cfg, out_dir=tmp_path, progress=False)

    importance = folders.read_importance(result.path)
    assert importance is not None and importance["windows"] > 0
    assert "## Variable importance" in (result.path / folders.CARD_FILE).read_text()
