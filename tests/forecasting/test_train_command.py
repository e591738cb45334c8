"""train_tft: the training command on simulated, stored and CSV series."""

import io
import json
from datetime import timedelta

import numpy as np
import pytest

from forecasting.engine import folders, training
from forecasting.engine import inputs as dspec
from forecasting.engine.spec import STATES
from forecasting.windows import server_histories
from tests.forecasting.engine.test_tft import START, TINY, synthetic_series


def test_train_tft_command_on_simulated_fleet(tmp_path):
    from django.core.management import call_command

    out = io.StringIO()
    call_command(
        "train_tft",
        "--simulated", "2", "--days", "3", "--epochs", "1", "--batches-per-epoch", "2", "--batch-size", "4",
        "--hidden-size", "8", "--attention-heads", "1", "--hidden-continuous-size", "4",
        "--device", "cpu", "--out", str(tmp_path), "--no-progress", "--no-backtest",
        stdout=out,
    )  # fmt: skip
    [folder] = list(tmp_path.glob("tft_model_*"))
    assert "val_loss" in out.getvalue()
    card = (folder / "MODEL_CARD.md").read_text()
    assert "train_tft" in card and "simulated fleet" in card


@pytest.mark.django_db
def test_train_tft_reads_metric_buckets_from_the_database(tmp_path):
    from django.core.management import call_command

    from ingest.models import MetricBucket, Server

    rng = np.random.default_rng(1)
    for name in ("ppdb001", "ppweb001"):
        server = Server.objects.create(
            name=name, profile="database", first_seen=START, last_seen=START, last_received_at=START
        )
        MetricBucket.objects.bulk_create(
            MetricBucket(
                server=server,
                bucket_start=START + timedelta(minutes=5 * i),
                count=2,
                cpu_pct_sum=2 * float(rng.uniform(10, 90)),
                mem_pct_sum=120.0,
                disk_io_mb_s_sum=4.0,
                latency_ms_sum=20.0,
                n_healthy=2,
            )
            for i in range(200)
            if i not in (50, 51)
        )
    series = server_histories(server_names=["ppdb001"])
    assert [w.server for w in series] == ["ppdb001"]
    assert len(series[0].values) == 200 and np.isnan(series[0].values[50]).all()
    assert STATES[series[0].states[0]] == "healthy" and series[0].values[0, 1] == 60.0
    call_command(
        "train_tft", "--servers", "ppdb001,ppweb001", "--epochs", "1", "--batches-per-epoch", "1",
        "--batch-size", "4", "--hidden-size", "8", "--attention-heads", "1", "--hidden-continuous-size", "4",
        "--device", "cpu", "--out", str(tmp_path), "--no-progress", "--no-backtest", stdout=io.StringIO(),
    )  # fmt: skip
    [folder] = list(tmp_path.glob("tft_model_*"))
    spec = json.loads((folder / "spec.json").read_text())
    assert spec["vocab"]["servers"] == [dspec.UNKNOWN, "ppdb001", "ppweb001"]


@pytest.mark.django_db
def test_train_tft_exclude_leaves_a_csv_series_out(tmp_path):
    from django.core.management import call_command

    rows = [f"{START + timedelta(minutes=5 * i):%Y-%m-%d %H:%M:%S},{40 + 10 * np.sin(i / 20):.3f}" for i in range(600)]
    for name in ("ec2_cpu_utilization_kept", "ec2_cpu_utilization_held_out"):
        (tmp_path / f"{name}.csv").write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    out_dir = tmp_path / "models"
    call_command(
        "train_tft", "--csv-dir", str(tmp_path), "--exclude", "*held_out*", "--epochs", "1",
        "--batches-per-epoch", "1", "--batch-size", "4", "--hidden-size", "8", "--attention-heads", "1",
        "--no-progress", "--no-backtest", "--out", str(out_dir), stdout=io.StringIO(),
    )  # fmt: skip
    [folder] = out_dir.iterdir()
    vocab = json.loads((folder / "spec.json").read_text())["vocab"]["servers"]
    assert "ec2_cpu_utilization_kept" in vocab and "ec2_cpu_utilization_held_out" not in vocab


def tiny_model_folder(tmp_path):
    cfg = training.TrainConfig(
        epochs=1, batches_per_epoch=2, batch_size=8, max_val_windows=8, hparams=TINY, device="cpu"
    )
    return training.train(synthetic_series(), cfg, out_dir=tmp_path, progress=False).path


@pytest.mark.django_db
def test_fit_event_model_gives_an_existing_folder_an_event_model(tmp_path):
    from django.core.management import call_command

    model_dir = tiny_model_folder(tmp_path)
    out = io.StringIO()
    call_command("fit_event_model", "--model", str(model_dir), "--simulated", "3", "--days", "3", "--seed", "5",
                 "--part", "all", "--learner", "logistic", stdout=out)  # fmt: skip
    model = folders.read_event_model(model_dir)
    assert model["windows"]["8h"]["learner"] == "logistic" and "event model (logistic)" in out.getvalue()


@pytest.mark.django_db
def test_fit_event_model_refits_from_saved_samples_without_some_inputs(tmp_path):
    from django.core.management import call_command

    model_dir = tiny_model_folder(tmp_path)
    common = ["--model", str(model_dir), "--part", "all", "--learner", "logistic"]
    call_command("fit_event_model", *common, "--simulated", "3", "--days", "3", "--seed", "5",
                 "--save-samples", str(tmp_path / "s.npz"), stdout=io.StringIO())  # fmt: skip
    call_command("fit_event_model", *common, "--from-samples", str(tmp_path / "s.npz"),
                 "--without", "z_season_max", "season_start", stdout=io.StringIO())  # fmt: skip
    features = folders.read_event_model(model_dir)["features"]
    assert "level" in features and not {"z_season_max", "season_start"} & set(features)


@pytest.mark.django_db
def test_fit_event_model_refuses_a_stride_for_a_source_it_was_not_given(tmp_path):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    model_dir = tiny_model_folder(tmp_path)
    with pytest.raises(CommandError, match="data/nowhere"):
        call_command("fit_event_model", "--model", str(model_dir), "--simulated", "3", "--days", "3",
                     "--fleet-every", "data/nowhere=12", stdout=io.StringIO())  # fmt: skip


@pytest.mark.django_db
def test_fit_event_model_leaves_inputs_out_of_one_window(tmp_path):
    from django.core.management import call_command

    model_dir = tiny_model_folder(tmp_path)
    call_command("fit_event_model", "--model", str(model_dir), "--simulated", "3", "--days", "3", "--seed", "5",
                 "--part", "all", "--learner", "logistic", "--without", "30m:history_lor", "30m:history_hours",
                 stdout=io.StringIO())  # fmt: skip
    model = folders.read_event_model(model_dir)
    assert "history_lor" not in model["windows"]["30m"]["features"]
    assert "history_lor" in em_window_features(model, "8h")


def em_window_features(model: dict, window: str) -> list[str]:
    from forecasting.engine.event_model import window_features

    return window_features(model, model["windows"][window])


@pytest.mark.django_db
def test_fit_event_model_takes_a_learner_with_options(tmp_path):
    from django.core.management import call_command

    model_dir = tiny_model_folder(tmp_path)
    call_command("fit_event_model", "--model", str(model_dir), "--simulated", "3", "--days", "3", "--seed", "5",
                 "--part", "all", "--learner", "blend(l2=30,trees=7,depth=2)", stdout=io.StringIO())  # fmt: skip
    logistic, trees = folders.read_event_model(model_dir)["windows"]["8h"]["parts"]
    assert logistic["learner"] == "logistic" and trees["learner"] == "trees" and len(trees["trees"]) == 7


def test_fit_event_model_refuses_a_learner_option_naming_it(tmp_path):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="takes no option 'depth=2'"):
        call_command("fit_event_model", "--model", str(tmp_path), "--learner", "logistic(depth=2)")
