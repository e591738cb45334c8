"""Retraining on the fleet's own data: champion/challenger decisions, safety of a killed training,
the promotion rule, pruning. Tiny networks, a few batches, fixed seeds, one thread, and one champion
trained once for the module (copied into each test's models folder); the forecast quality itself
is measured with `backtest`, never asserted here."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta

import pytest

from forecasting import registry
from forecasting.engine import folders, network, training
from forecasting.engine.simulator import LoadShift, fleet_names, simulate_buckets
from forecasting.engine.spec import STATES
from forecasting.lifecycle import retraining
from forecasting.lifecycle import services as training_services
from forecasting.models import ModelVersion, TrainingRun

pytestmark = pytest.mark.django_db(transaction=False)

END = datetime(2026, 2, 2, tzinfo=UTC)
DAYS = 6
SERVERS = fleet_names(3)  # one ml_compute, one database, one web_api server
TINY = {"hidden_size": 8, "attention_head_size": 1, "hidden_continuous_size": 4}
RECIPE = {"epochs": 3, "batches_per_epoch": 15, "batch_size": 16, "max_val_windows": 32, "patience": 10, "seed": 0}
# The behaviour change: from the second day on every server's daily cycle runs 12 hours later (its
# users moved to the other side of the world). The shape of the day changes, not just its level,
# which the per-window normalisation of the TFT would hide.
SHIFTS = tuple(LoadShift(p, END - timedelta(days=DAYS - 1), hours=12) for p in ("web_api", "database", "ml_compute"))


def _fleet(shifts=()):
    return simulate_buckets(servers=SERVERS, start=END - timedelta(days=DAYS), end=END, seed=3, shifts=shifts)


def _store(windows) -> None:
    """The simulated buckets as one record per bucket through ingest (the rollups are the buckets)."""
    from ingest.services import records_ingest
    from ingest.validation import validate_records

    records = []
    for w in windows:
        for i, (v, s) in enumerate(zip(w.values.tolist(), w.states.tolist(), strict=True)):
            stamp = (w.start + timedelta(minutes=5 * i)).strftime("%Y-%m-%dT%H:%M:%SZ")
            records.append(
                {
                    "timestamp": stamp,
                    "server_name": w.server,
                    "cpu_pct": round(v[0], 2),
                    "mem_pct": round(v[1], 2),
                    "disk_io_mb_s": round(v[2], 2),
                    "latency_ms": round(v[3], 2),
                    "state": STATES[s],
                }
            )
    clean, problems = validate_records(records, now=END)  # the feed window as of the fleet's last day
    assert not problems, problems[:3]
    records_ingest(records=clean)


@pytest.fixture(scope="module")
def one_thread():
    before = network.runtime_info()["torch_threads"]
    network.set_threads(1)  # 2 shared cores: waiting OpenMP threads make training many times slower
    yield
    network.set_threads(before)


@pytest.fixture(scope="module")
def champion_folder(one_thread, tmp_path_factory):
    """The model the retraining would have trained before the change: the same recipe on the
    unchanged fleet up to its held-back day (trained once for the module)."""
    split = retraining.fleet_split(_fleet(), 1)
    cfg = training.TrainConfig(**RECIPE, max_minutes=5, device="cpu", hparams=dict(TINY))
    return training.train(split.train, cfg, out_dir=tmp_path_factory.mktemp("champion"), progress=False).path


@pytest.fixture
def lifecycle(settings, tmp_path, one_thread):
    settings.TFT_MODELS_DIR = tmp_path / "models"
    settings.TFT_MODELS_DIR.mkdir()
    settings.TFT_RETRAIN_PRIOR_DIRS = []  # the fleet alone: fast and deterministic
    settings.TFT_RETRAIN_HOLDOUT_DAYS = 1
    settings.TFT_DEVICE = "cpu"
    settings.TFT_TORCH_THREADS = 1
    settings.TFT_PROMOTE_MARGIN = 0.02
    settings.TFT_RETRAIN_WARM_START = False  # challenger and champion differ only by their data
    return settings


@pytest.fixture
def champion(lifecycle, champion_folder) -> ModelVersion:
    """The module's champion deployed in this test's models folder, active."""
    shutil.copytree(champion_folder, lifecycle.TFT_MODELS_DIR / champion_folder.name)
    registry.model_versions_sync()
    return ModelVersion.objects.get(name=champion_folder.name)


def _retrain(**overrides) -> TrainingRun:
    run = training_services.training_run_start(trigger="test")
    retraining.training_run_execute(run_id=run.pk, overrides={**RECIPE, "hparams": dict(TINY), **overrides})
    run.refresh_from_db()
    return run


def test_retrain_after_fleet_behaviour_changed_is_promoted(champion):
    _store(_fleet(SHIFTS))  # the champion knows the fleet before its daily cycle moved
    # 6 epochs, not the recipe's 3: with the "no calendar" hour/weekday slot the tiny network's
    # 3-epoch challenger landed within 0.5 % of the champion (the 2 % margin needs it to learn the shift)
    run = _retrain(epochs=6)
    assert run.decision == TrainingRun.Decision.PROMOTED, run.reason
    assert registry.active_model_version() == run.challenger != champion


def test_retrain_on_unchanged_data_is_not_promoted(champion):
    _store(_fleet())  # the data the champion was trained on: the same recipe has nothing new to learn
    run = _retrain()
    assert run.decision == TrainingRun.Decision.CANDIDATE, run.reason
    assert registry.active_model_version() == champion


def test_decision_rows_hold_both_backtests_and_the_reason(champion):
    _store(_fleet())
    run = _retrain()
    assert run.status == TrainingRun.Status.COMPLETE and run.champion == champion and run.challenger is not None
    assert {"pinball", "coverage"} <= set(run.metrics["challenger"]["tft"]) and "tft" in run.metrics["champion"]
    assert run.reason.startswith("not better enough") and "pinball" in run.reason


def test_the_challenger_serves_its_champions_event_model(champion):
    from forecasting.engine import event_model as em
    from forecasting.engine.incidents import WINDOWS

    n = len(em.FEATURES)
    params = {"learner": "logistic", "mean": [0.0] * n, "std": [1.0] * n, "coef": [0.0] * n, "intercept": -2.0}
    folders.write_event_model(champion.path, em.new_model({w: params for w in WINDOWS}, min_buckets=2, thresholds={}))
    _store(_fleet())
    run = _retrain()
    carried = folders.read_event_model(run.challenger.path)
    assert carried is not None and carried["carried_from"] == champion.name  # never the old bound, silently
    assert run.metrics["training"]["event_model"].startswith(f"carried from {champion.name}")


def test_training_killed_while_writing_leaves_no_folder_and_the_champion_serving(lifecycle, champion, monkeypatch):
    _store(_fleet())

    def killed(tmp, *_):
        tmp.mkdir()
        (tmp / folders.WEIGHTS_FILE).write_bytes(b"half")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(training, "_write_folder", killed)
    with pytest.raises(KeyboardInterrupt):
        _retrain()
    assert sorted(p.name for p in lifecycle.TFT_MODELS_DIR.iterdir()) == [champion.name]
    assert list(ModelVersion.objects.values_list("name", flat=True)) == [champion.name]
    assert registry.active_model_version() == champion


def test_training_failing_mid_way_marks_the_run_failed(champion, monkeypatch):
    _store(_fleet())
    real = training_services.training_run_progress

    def fail_at_epoch_two(*, run_id, progress):
        if progress.get("epoch") == 2:
            raise RuntimeError("worker lost")
        real(run_id=run_id, progress=progress)

    monkeypatch.setattr(training_services, "training_run_progress", fail_at_epoch_two)
    with pytest.raises(RuntimeError):
        _retrain()
    run = TrainingRun.objects.get()
    assert (run.status, run.progress.get("epoch")) == (TrainingRun.Status.FAILED, 1)
    assert "worker lost" in run.error and registry.active_model_version() == champion
    assert ModelVersion.objects.count() == 1


def test_sync_ignores_a_partial_folder(lifecycle, tmp_path):
    partial = lifecycle.TFT_MODELS_DIR / f"{folders.TEMP_PREFIX}tft_model_20260101T000000Z-1"
    partial.mkdir()
    assert registry.model_versions_sync() == [] and not ModelVersion.objects.exists()


def test_only_one_training_runs_at_a_time(lifecycle):
    assert training_services.training_run_start(trigger="test") is not None
    assert training_services.training_run_start(trigger="test") is None


# ----------------------------------------------------------------------------------------------
# The promotion rule on given figures


def test_rule_promotes_a_clearly_better_challenger():
    verdict = training_services.promotion_verdict(
        challenger={"pinball": 0.90, "coverage": 0.79}, champion={"pinball": 1.0, "coverage": 0.78}, margin=0.02
    )
    assert verdict.promote and verdict.reason.startswith("better")


def test_rule_keeps_a_challenger_better_by_less_than_the_margin():
    verdict = training_services.promotion_verdict(
        challenger={"pinball": 0.99, "coverage": 0.80}, champion={"pinball": 1.0, "coverage": 0.80}, margin=0.02
    )
    assert not verdict.promote and verdict.reason.startswith("not better enough")


def test_rule_keeps_a_challenger_whose_coverage_is_worse():
    verdict = training_services.promotion_verdict(
        challenger={"pinball": 0.80, "coverage": 0.65}, champion={"pinball": 1.0, "coverage": 0.78}, margin=0.02
    )
    assert not verdict.promote and verdict.reason.startswith("coverage worse")


def test_rule_promotes_a_much_better_challenger_whose_coverage_stays_near_80_percent():
    verdict = training_services.promotion_verdict(
        challenger={"pinball": 0.80, "coverage": 0.76}, champion={"pinball": 1.0, "coverage": 0.78}, margin=0.02
    )
    assert verdict.promote


def test_rule_accepts_coverage_outside_the_band_within_the_tolerance_of_the_champion():
    verdict = training_services.promotion_verdict(
        challenger={"pinball": 0.80, "coverage": 0.70}, champion={"pinball": 1.0, "coverage": 0.72}, margin=0.02
    )
    assert verdict.promote


def test_rule_keeps_a_challenger_beyond_the_band_and_the_tolerance():
    verdict = training_services.promotion_verdict(
        challenger={"pinball": 0.80, "coverage": 0.69}, champion={"pinball": 1.0, "coverage": 0.74}, margin=0.02
    )
    assert not verdict.promote and verdict.reason.startswith("coverage worse")


def test_rule_promotes_when_there_is_no_champion():
    assert training_services.promotion_verdict(challenger={"pinball": 1.0}, champion=None, margin=0.02).promote
