"""The tasks module: a default-queue worker imports it (autodiscovery) and must not load torch; the
task names that queued messages and beat carry stay as they were."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_default_queue_worker_does_not_load_torch():
    code = (
        "import os, sys, django;"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'tftsite.settings');"
        "os.environ.setdefault('DJANGO_SECRET_KEY', 'x');"
        "django.setup();"
        "from tftsite.celery import app; app.loader.import_default_modules(); app.autodiscover_tasks(force=True);"
        "import forecasting.tasks;"
        "assert 'forecasting.tasks.predict_fleet' in app.tasks;"
        "print('torch' in sys.modules)"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "TFT_DATA_DIR": str(ROOT / "var" / "test-tasks")}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "False"


def test_the_gpu_task_loads_torch_when_it_runs():
    code = "import sys; import forecasting.runs.chunks; print('torch' in sys.modules)"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "tftsite.settings",
           "DJANGO_SECRET_KEY": "x", "TFT_DATA_DIR": str(ROOT / "var" / "test-tasks")}  # fmt: skip
    setup = "import django; django.setup(); "
    out = subprocess.run([sys.executable, "-c", setup + code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "True"


def test_queued_task_names_survive_the_move():
    from forecasting import tasks

    assert tasks.push_alert_notification.name == "forecasting.push_tasks.push_alert_notification"
    assert tasks.push_pending_alerts.name == "forecasting.push_tasks.push_pending_alerts"
    assert tasks.predict_fleet_chunk.name == "forecasting.tasks.predict_fleet_chunk"
