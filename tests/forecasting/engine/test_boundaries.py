"""The engine runs without Django, and only its network module brings torch in."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
ENGINE = ROOT / "forecasting" / "engine"
NON_NETWORK = sorted(
    f"forecasting.engine.{p.stem}" for p in ENGINE.glob("*.py") if p.stem not in ("__init__", "network", "training")
)


def _run(code: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}  # no DJANGO_SETTINGS_MODULE
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_engine_modules_import_without_django_or_torch():
    imports = ";".join(f"import {m}" for m in NON_NETWORK)
    out = _run(f"import sys;{imports};print('django' in sys.modules, 'torch' in sys.modules)")

    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("module", ["forecasting.engine.network", "forecasting.engine.training"])
def test_torch_side_of_the_engine_imports_without_django(module):
    out = _run(f"import sys;import {module};print('django' in sys.modules, 'torch' in sys.modules)")

    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]


def test_every_non_network_engine_module_is_checked():
    # a new engine module is covered by the first test without editing it
    assert {"forecasting.engine.spec", "forecasting.engine.series", "forecasting.engine.folders"} <= set(NON_NETWORK)
