"""manage.py fit_blend: a model folder's blend with persistence, fitted without retraining."""

import json
import shutil
from datetime import timedelta
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from forecasting.engine.folders import BLEND_FILE, read_blend
from tests.forecasting.engine.test_backtest import START, _noisy

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "tft_model_20261202T135112Z"


@pytest.fixture
def model_copy(tmp_path) -> Path:
    folder = tmp_path / "models" / DEFAULT_MODEL.name
    shutil.copytree(DEFAULT_MODEL, folder)
    (folder / BLEND_FILE).unlink(missing_ok=True)
    return folder


def _csv_folder(root: Path) -> Path:
    folder = root / "csv"
    folder.mkdir()
    t = START + timedelta(minutes=5) * np.arange(1000)
    rows = [f"{ts:%Y-%m-%d %H:%M:%S},{v:.3f}" for ts, v in zip(t, _noisy(1000), strict=True)]
    (folder / "ec2_cpu_utilization_y.csv").write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    return folder


def test_fit_blend_writes_the_weights_into_the_model_folder(model_copy, tmp_path):
    out = StringIO()
    call_command("fit_blend", "--model", str(model_copy), "--csv-dir", str(_csv_folder(tmp_path)), stdout=out)
    stored = read_blend(model_copy)
    assert stored is not None and set(stored["weights"]) == {"0-30m", "30m-2h", "2-8h"}
    assert stored["windows"] == {"cpu [cpu_pct]": 3}  # origins 480, 492, 504: targets inside 0.48–0.60
    assert json.loads(out.getvalue())["weights"] == stored["weights"]


def test_fit_blend_dry_run_writes_nothing(model_copy, tmp_path):
    call_command("fit_blend", "--model", str(model_copy), "--csv-dir", str(_csv_folder(tmp_path)), "--dry-run",
                 stdout=StringIO())  # fmt: skip
    assert not (model_copy / BLEND_FILE).exists()


def test_fit_blend_needs_windows_to_fit_on(model_copy):
    with pytest.raises(CommandError, match="--csv-dir"):
        call_command("fit_blend", "--model", str(model_copy), stdout=StringIO())
