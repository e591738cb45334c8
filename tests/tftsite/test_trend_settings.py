"""The trend rule's expected states (TFT_ALERT_TREND_EXPECTED_STATES): the contract's heavy_load and
morning_spike by default, "none" for every climb, and an unknown state stops start-up."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READ = "import tftsite.settings as s; print(','.join(s.TFT_ALERT_TREND_EXPECTED_STATES) or '-')"


def _settings(**env) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "TFT_ALERT_TREND_EXPECTED_STATES"}
    return subprocess.run([sys.executable, "-c", READ], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**base, **env})  # fmt: skip


def test_the_default_is_the_contracts_declared_climbs():
    out = _settings()
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["heavy_load,morning_spike"]


def test_none_lets_every_climb_count():
    out = _settings(TFT_ALERT_TREND_EXPECTED_STATES="none")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["-"]


def test_an_unknown_state_stops_start_up_naming_the_variable():
    out = _settings(TFT_ALERT_TREND_EXPECTED_STATES="heavy_load,batch")
    assert out.returncode != 0
    assert "TFT_ALERT_TREND_EXPECTED_STATES" in out.stderr
