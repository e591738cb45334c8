"""The incident definition's settings (tftsite/settings.py): typed, and a bad value stops start-up."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
READ = "import tftsite.settings as s; print(s.TFT_INCIDENT_MIN_BUCKETS, ','.join(s.TFT_INCIDENT_STATES))"


def _settings(**env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", READ], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})  # fmt: skip


def test_the_defaults_are_two_buckets_and_critical_issue():
    env = {k: v for k, v in os.environ.items() if not k.startswith("TFT_INCIDENT")}
    out = subprocess.run([sys.executable, "-c", READ], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2", "critical_issue"]


def test_offline_can_count_as_an_incident():
    out = _settings(TFT_INCIDENT_STATES="critical_issue, offline", TFT_INCIDENT_MIN_BUCKETS="3")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["3", "critical_issue,offline"]


@pytest.mark.parametrize(("name", "value"), [("TFT_INCIDENT_STATES", "on_fire"), ("TFT_INCIDENT_MIN_BUCKETS", "0")])
def test_a_bad_value_stops_start_up_naming_the_variable(name, value):
    out = _settings(**{name: value})
    assert out.returncode != 0
    assert name in out.stderr
