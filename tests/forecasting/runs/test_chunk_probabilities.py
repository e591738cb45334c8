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


def _history_model() -> dict:
    from forecasting.engine import event_model as em

    params = {"learner": "logistic", "mean": [0.0], "std": [1.0], "coef": [1.0], "intercept": -3.0}
    return em.new_model({"30m": params, "8h": params}, min_buckets=2, thresholds={}, features=["history_lor"])


@pytest.mark.django_db
def test_a_server_with_a_history_of_incidents_is_served_a_higher_probability(tmp_path):
    from datetime import UTC, datetime

    from forecasting.scoring.probabilities import incident_histories_add
    from ingest.models import Server
    from tests.conftest import ingest_fleet

    folders.write_event_model(tmp_path, _history_model())
    ingest_fleet(["ppdb001", "ppdb002"], buckets=12)
    quiet, busy = (Server.objects.get(name=n).pk for n in ("ppdb001", "ppdb002"))
    incident_histories_add(server_ids=np.array([busy] * 24), windows=["8h"] * 24, incident=np.ones(24, dtype=bool),
                           now=datetime.now(UTC))  # fmt: skip
    window = _window(np.full(300, 40.0))
    forecast = SimpleNamespace(
        forecaster=object(), version=SimpleNamespace(path=str(tmp_path)), reasons={},
        windows=[SimpleNamespace(server_id=quiet, window=window), SimpleNamespace(server_id=busy, window=window)],
        quantiles=LevelForecaster(40.0).predict_array([window, window]),
    )  # fmt: skip
    summary = {m: {"critical": 95.0} for m in METRICS}
    scored = [SimpleNamespace(prob_30m=0.8, prob_8h=0.8, summary=summary) for _ in range(2)]
    services._recalibrate_probabilities(forecast, scored)
    assert scored[0].prob_8h == pytest.approx(1 / (1 + np.exp(3.0)), abs=1e-4)  # no history: the model's base
    assert scored[1].prob_8h > 0.5 > scored[0].prob_8h
    assert scored[0].prob_30m == scored[1].prob_30m  # its 30 min history is empty


def _event_model_chunk(tmp_path, p, served_factor=1.0, server_id=1):
    tmp_path.mkdir(exist_ok=True)
    folders.write_event_model(tmp_path, _constant_event_model(p))
    window = _window(np.full(300, 40.0))
    forecast = SimpleNamespace(
        forecaster=object(), version=SimpleNamespace(path=str(tmp_path)), reasons={2: "model_output_invalid"},
        windows=[SimpleNamespace(server_id=server_id, window=window), SimpleNamespace(server_id=2, window=window)],
        quantiles=LevelForecaster(40.0).predict_array([window, window]),
    )  # fmt: skip
    summary = {m: {"critical": 95.0} for m in METRICS}
    scored = [SimpleNamespace(prob_30m=0.8, prob_8h=0.8, summary=summary, candidates=[]) for _ in range(2)]
    history = services._recalibrate_probabilities(forecast, scored)
    priors = {"8h": np.array([s.prob_8h for s in scored])}
    for s in scored:
        s.prob_8h = round(s.prob_8h * served_factor, 4)  # what a live map serves instead
    services._incident_candidates(forecast, scored, priors, history)
    return window, scored


@pytest.mark.django_db
def test_a_tft_server_at_or_above_the_threshold_gets_the_incident_alert_candidate(tmp_path, settings):
    settings.TFT_ALERT_INCIDENT_PROB, settings.TFT_ALERT_INCIDENT_PROB_RISE = True, 0.0
    settings.TFT_ALERT_INCIDENT_PROB_TAU, settings.TFT_ALERT_INCIDENT_PROB_LIFT = 0.2, 0.0
    window, scored = _event_model_chunk(tmp_path, 0.3)
    (candidate,) = scored[0].candidates
    assert (candidate["metric"], candidate["rule"], candidate["severity"]) == ("incident", "incident_prob", "warning")
    assert (candidate["predicted_value"], candidate["threshold"], candidate["minutes_ahead"]) == (30.0, 20.0, 480)
    assert candidate["message"].startswith(f"{window.server}: P(incident within 8 h) is 30%")
    assert scored[1].candidates == []  # the heuristic's forecast: no event model, no incident alert


@pytest.mark.django_db
def test_below_the_threshold_or_switched_off_there_is_no_incident_alert_candidate(tmp_path, settings):
    settings.TFT_ALERT_INCIDENT_PROB, settings.TFT_ALERT_INCIDENT_PROB_RISE = True, 0.0
    settings.TFT_ALERT_INCIDENT_PROB_TAU, settings.TFT_ALERT_INCIDENT_PROB_LIFT = 0.5, 0.0
    assert _event_model_chunk(tmp_path / "below", 0.3)[1][0].candidates == []
    settings.TFT_ALERT_INCIDENT_PROB_TAU, settings.TFT_ALERT_INCIDENT_PROB = 0.2, False
    assert _event_model_chunk(tmp_path / "off", 0.3)[1][0].candidates == []


@pytest.mark.django_db
def test_the_incident_alert_reads_the_model_or_the_served_probability_as_configured(tmp_path, settings):
    settings.TFT_ALERT_INCIDENT_PROB, settings.TFT_ALERT_INCIDENT_PROB_RISE = True, 0.0
    settings.TFT_ALERT_INCIDENT_PROB_TAU, settings.TFT_ALERT_INCIDENT_PROB_LIFT = 0.2, 0.0
    # The model says 0.3 (above 0.2); the live map serves 0.15 (below).
    settings.TFT_ALERT_INCIDENT_PROB_SOURCE = "model"
    assert len(_event_model_chunk(tmp_path / "model", 0.3, served_factor=0.5)[1][0].candidates) == 1
    settings.TFT_ALERT_INCIDENT_PROB_SOURCE = "served"
    assert _event_model_chunk(tmp_path / "served", 0.3, served_factor=0.5)[1][0].candidates == []


@pytest.mark.django_db
def test_with_a_rise_the_incident_alert_needs_the_server_above_rise_times_its_usual(tmp_path, settings):
    from datetime import UTC, datetime, timedelta

    from forecasting.models import ProbabilityOutcome
    from ingest.models import Server
    from tests.conftest import ingest_fleet

    settings.TFT_ALERT_INCIDENT_PROB = True
    settings.TFT_ALERT_INCIDENT_PROB_TAU, settings.TFT_ALERT_INCIDENT_PROB_LIFT = 0.05, 0.0
    settings.TFT_ALERT_INCIDENT_PROB_RISE = 2.0
    ingest_fleet(["ppdb001"], buckets=12)
    server = Server.objects.get(name="ppdb001")
    # No usual yet: it waits.
    assert _event_model_chunk(tmp_path / "none", 0.3, server_id=server.pk)[1][0].candidates == []

    def usual(p):
        ProbabilityOutcome.objects.all().delete()
        now = datetime.now(UTC)
        ProbabilityOutcome.objects.bulk_create(
            ProbabilityOutcome(server=server, window="8h", origin=now - timedelta(minutes=5 * (k + 1)), profile="x",
                               prob_prior=p, prob_served=p, critical=[90.0] * 4, created_at=now)
            for k in range(100)
        )

    usual(0.2)  # 0.3 < 2 × 0.2
    assert _event_model_chunk(tmp_path / "high", 0.3, server_id=server.pk)[1][0].candidates == []
    usual(0.1)  # 0.3 >= 2 × 0.1
    (candidate,) = _event_model_chunk(tmp_path / "low", 0.3, server_id=server.pk)[1][0].candidates
    assert candidate["threshold"] == 20.0 and "2 × its usual 10.0%" in candidate["message"]


def test_the_alert_rules_read_the_tft_forecast_as_served_or_its_own_as_configured(settings):
    raw = np.full((2, 96, len(METRICS), 3), 40.0)
    forecast = SimpleNamespace(raw_quantiles=raw)
    settings.TFT_ALERT_FORECAST_SOURCE = "served"
    assert services._rule_quantiles(forecast) is None
    settings.TFT_ALERT_FORECAST_SOURCE = "model"
    np.testing.assert_array_equal(services._rule_quantiles(forecast), raw[..., 1:3])  # its p50 / p90
