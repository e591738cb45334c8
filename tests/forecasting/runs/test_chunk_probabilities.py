"""A chunk serves probabilities through the model folder's recalibration (forecasting.runs.chunks)."""

from types import SimpleNamespace

import numpy as np
import pytest

from forecasting.engine import folders
from forecasting.engine.spec import METRICS
from forecasting.runs import chunks as services
from tests.forecasting.engine.test_probability import LevelForecaster, _constant_event_model, _window


def test_serving_recalibrates_tft_servers_only(tmp_path):
    folders.write_probability_calibration(tmp_path, {"windows": {"30m": {"x": [0, 1], "y": [0, 0.5]},
                                                                 "8h": {"x": [0, 1], "y": [0, 0.25]}}})  # fmt: skip
    forecast = SimpleNamespace(
        forecaster=object(),
        version=SimpleNamespace(path=str(tmp_path)),
        windows=[SimpleNamespace(server_id=1), SimpleNamespace(server_id=2)],
        reasons={2: "model_output_invalid"},
    )
    scored = [SimpleNamespace(prob_30m=0.8, prob_8h=0.8), SimpleNamespace(prob_30m=0.8, prob_8h=0.8)]
    services._recalibrate_probabilities(forecast, scored)
    assert (scored[0].prob_30m, scored[0].prob_8h) == (0.4, 0.2)
    assert (scored[1].prob_30m, scored[1].prob_8h) == (0.8, 0.8)  # the heuristic's stay raw


@pytest.mark.django_db
def test_serving_uses_the_folders_event_model_for_tft_servers(tmp_path):
    folders.write_event_model(tmp_path, _constant_event_model(0.03))
    folders.write_probability_calibration(tmp_path, {"windows": {"30m": {"x": [0, 1], "y": [0, 0.5]},
                                                                 "8h": {"x": [0, 1], "y": [0, 0.25]}}})  # fmt: skip
    window = _window(np.full(300, 40.0))
    forecast = SimpleNamespace(
        forecaster=object(),
        version=SimpleNamespace(path=str(tmp_path)),
        windows=[SimpleNamespace(server_id=1, window=window), SimpleNamespace(server_id=2, window=window)],
        reasons={2: "model_output_invalid"},
        quantiles=LevelForecaster(40.0).predict_array([window, window]),
    )
    summary = {m: {"critical": 95.0} for m in METRICS}  # the limits the chunk's scoring served
    scored = [SimpleNamespace(prob_30m=0.8, prob_8h=0.8, summary=summary) for _ in range(2)]
    services._recalibrate_probabilities(forecast, scored)
    assert (scored[0].prob_30m, scored[0].prob_8h) == (0.03, 0.03)  # the event model wins over the map
    assert (scored[1].prob_30m, scored[1].prob_8h) == (0.8, 0.8)  # the heuristic's stay raw
