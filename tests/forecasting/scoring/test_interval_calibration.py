"""Live interval calibration: states moved by scoring passes, applied by the prediction run."""

import json
import math
from datetime import UTC, datetime

import numpy as np
import pytest

from forecasting.engine import calibration as cal
from forecasting.engine.scoring import CoverageCounts
from forecasting.engine.spec import HORIZON, TARGETS
from forecasting.models import CalibrationState, ServerForecast
from forecasting.runs import chunks as services
from forecasting.scoring.calibration import intervals_recalibrate, served_log_factors
from forecasting.windows import server_windows
from ingest.models import Server
from tests.conftest import ingest_fleet

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
MODEL = "tft_model_a"  # the active model version whose served counts a pass hands over


def _server(name: str, profile: str = "web_api") -> Server:
    return Server.objects.create(name=name, profile=profile, first_seen=NOW, last_seen=NOW, last_received_at=NOW)


def test_a_scoring_pass_moves_the_state_one_aci_step():
    web = _server("ppweb001")
    intervals_recalibrate(observations=[CoverageCounts(web.pk, "cpu_pct", "0-30m", 6, 2, 0, 4)], model_name=MODEL)
    state = CalibrationState.objects.get(server=web, metric="cpu_pct", band="0-30m")
    assert state.log_lower == pytest.approx(cal.GAMMAS[0] * 6 * (0 / 6 - 0.1))
    assert state.log_upper == pytest.approx(cal.GAMMAS[0] * 6 * (4 / 6 - 0.1))
    assert state.n == 6


def test_later_passes_continue_from_the_stored_state():
    web = _server("ppweb001")
    counts = CoverageCounts(web.pk, "cpu_pct", "2-8h", 72, 72, 0, 0)
    intervals_recalibrate(observations=[counts], model_name=MODEL)
    intervals_recalibrate(observations=[counts], model_name=MODEL)
    state = CalibrationState.objects.get(server=web, metric="cpu_pct", band="2-8h")
    step = cal.GAMMAS[2] * cal.N_CAP * (0 - 0.1)  # all inside: narrower on both sides, capped at N_CAP
    assert state.log_lower == pytest.approx(2 * step) and state.log_upper == pytest.approx(2 * step)
    assert state.n == 144
    assert CalibrationState.objects.count() == 1


def test_a_new_server_starts_from_its_profiles_prior():
    old, db, new = _server("ppweb001"), _server("ppdb001", "database"), _server("ppweb002")
    CalibrationState.objects.create(server=old, metric="mem_pct", band="0-30m", log_lower=0.5, log_upper=0.3,
                                    model_name=MODEL, updated_at=NOW)  # fmt: skip
    CalibrationState.objects.create(server=db, metric="mem_pct", band="0-30m", log_lower=-1, log_upper=-1,
                                    model_name=MODEL, updated_at=NOW)  # fmt: skip
    intervals_recalibrate(observations=[CoverageCounts(new.pk, "mem_pct", "0-30m", 10, 8, 1, 1)], model_name=MODEL)
    state = CalibrationState.objects.get(server=new, metric="mem_pct")
    assert state.log_lower == pytest.approx(0.5) and state.log_upper == pytest.approx(0.3)  # 10 % each: no move
    factors = served_log_factors(server_ids=[_server("ppweb003").pk])
    np.testing.assert_allclose(factors[0, TARGETS.index("mem_pct"), 0], [0.5, 0.3])  # web prior, not the db's


def test_empty_or_unknown_counts_change_nothing():
    web = _server("ppweb001")
    assert intervals_recalibrate(observations=[CoverageCounts(web.pk, "cpu_pct", "0-30m", 0, 0, 0, 0)], model_name=MODEL) == 0
    assert intervals_recalibrate(observations=[CoverageCounts(web.pk, "cpu_pct", "9h", 5, 0, 5, 0)], model_name=MODEL) == 0
    assert not CalibrationState.objects.exists()


def _fitted_state(server: Server, model_name: str) -> CalibrationState:
    return CalibrationState.objects.create(server=server, metric="cpu_pct", band="0-30m", log_lower=0.4,
                                           log_upper=0.6, n=500, model_name=model_name, updated_at=NOW)


def test_the_first_pass_after_a_model_switch_resets_the_old_models_states():
    _fitted_state(_server("ppweb001"), "tft_model_a")

    intervals_recalibrate(observations=[], model_name="tft_model_b")  # no counts of the new model yet

    state = CalibrationState.objects.get()
    assert (state.log_lower, state.log_upper, state.n, state.model_name) == (0.0, 0.0, 0, "tft_model_b")


def test_the_states_of_the_active_model_are_kept():
    _fitted_state(_server("ppweb001"), "tft_model_a")

    intervals_recalibrate(observations=[], model_name="tft_model_a")

    assert CalibrationState.objects.get().log_lower == pytest.approx(0.4)


def test_no_active_model_leaves_the_states_as_they_are():
    _fitted_state(_server("ppweb001"), "tft_model_a")

    intervals_recalibrate(observations=[], model_name="")

    assert CalibrationState.objects.get().model_name == "tft_model_a"


def test_the_run_scales_tft_intervals_by_the_servers_cascaded_states_and_leaves_the_heuristic_alone():
    ingest_fleet(["ppweb001", "ppweb002"])
    windows = server_windows(server_ids=list(Server.objects.order_by("name").values_list("pk", flat=True)))
    tft, heuristic = windows
    CalibrationState.objects.create(server_id=tft.server_id, metric="cpu_pct", band="0-30m",
                                    log_lower=math.log(2), log_upper=math.log(3), updated_at=NOW)  # fmt: skip
    CalibrationState.objects.create(server_id=tft.server_id, metric="cpu_pct", band="2-8h",
                                    log_lower=math.log(0.5), log_upper=0.0, updated_at=NOW)  # fmt: skip
    raw = np.tile(np.array([30, 36, 38, 40, 42, 44, 50], dtype=np.float32), (HORIZON, len(TARGETS), 1))
    quantiles = {tft.server_id: raw.copy(), heuristic.server_id: raw.copy()}
    factors = services._calibrate(windows, quantiles, reasons={heuristic.server_id: "model_unavailable"})
    np.testing.assert_allclose(quantiles[tft.server_id][0, 0], [20, 32, 36, 40, 46, 52, 70])
    np.testing.assert_allclose(quantiles[tft.server_id][10, 0], [20, 32, 36, 40, 46, 52, 70])  # 0–30 min's carries
    np.testing.assert_allclose(quantiles[tft.server_id][95, 0], [30, 36, 38, 40, 46, 52, 70])  # × 0.5 below: 1 × 2
    np.testing.assert_allclose(quantiles[tft.server_id][0, 1], raw[0, 1])  # no state for mem_pct
    np.testing.assert_allclose(quantiles[heuristic.server_id], raw)
    assert not factors[1].any()


def test_stored_forecasts_record_their_calibration_factors(no_models):
    ingest_fleet(["ppweb001"])
    run = services.fleet_predict()
    payload = json.loads(ServerForecast.objects.get(run=run).payload)
    assert payload["cpu_pct"]["calibration"] == {"lower": [1.0, 1.0, 1.0], "upper": [1.0, 1.0, 1.0]}  # heuristic
    assert set(run.environment) >= {"expected_incidents_30m", "expected_incidents_8h"}


def test_served_factors_are_the_exponentials_per_band():
    factors = cal.served_factors(np.log(np.array([[2.0, 0.5], [1.0, 1.0], [4.0, 1.5]])))
    assert factors == {"lower": [2.0, 1.0, 4.0], "upper": [0.5, 1.0, 1.5]}


def test_the_cascade_migration_keeps_every_served_factor():
    from importlib import import_module

    from django.apps import apps

    migration = import_module("forecasting.migrations.0009_calibration_states_as_band_corrections")
    rename = import_module("forecasting.migrations.0010_band_name_2_8h")
    web = _server("ppweb001")
    # as stored before the cascade (0009) and before the far band was renamed (0010)
    served = {"0-30m": (0.2, -0.1), "30m-2h": (0.5, 0.1), "2h-8h": (0.4, 0.7)}
    for band, (lower, upper) in served.items():
        CalibrationState.objects.create(server=web, metric="cpu_pct", band=band, log_lower=lower, log_upper=upper,
                                        updated_at=NOW)  # fmt: skip
    CalibrationState.objects.create(server=web, metric="mem_pct", band="2h-8h", log_lower=0.3, log_upper=0.3,
                                    updated_at=NOW)  # fmt: skip
    migration.served_to_own(apps, None)
    rename.forwards(apps, None)
    factors = served_log_factors(server_ids=[web.pk])
    np.testing.assert_allclose(factors[0, TARGETS.index("cpu_pct")], list(served.values()))
    np.testing.assert_allclose(factors[0, TARGETS.index("mem_pct"), 2], [0.3, 0.3])
    own = CalibrationState.objects.get(server=web, metric="cpu_pct", band="2-8h")
    assert (own.log_lower, own.log_upper) == pytest.approx((-0.1, 0.6))
    rename.backwards(apps, None)
    migration.own_to_served(apps, None)
    back = CalibrationState.objects.get(server=web, metric="cpu_pct", band="2h-8h")
    assert (back.log_lower, back.log_upper) == pytest.approx((0.4, 0.7))


def test_the_upgrade_attributes_the_stored_states_to_the_active_model():
    from importlib import import_module

    from django.apps import apps

    from forecasting.models import ModelVersion

    migration = import_module("forecasting.migrations.0019_calibration_state_model")
    ModelVersion.objects.create(name=MODEL, path=f"/nowhere/{MODEL}", created_at=NOW, is_active=True)
    _fitted_state(_server("ppweb001"), "")  # stored before the states recorded a model

    migration.attribute_to_active_model(apps, None)

    assert CalibrationState.objects.get().model_name == MODEL  # so the first pass after the upgrade resets nothing
