"""Forecasts served on a fixed set of windows are pinned: a refactor that moves code (issue 21 moved
serving into the engine) must not change a single served number.

The digests were computed before the move, from the shipped default model and the then
`forecasting.services._score_chunk`, on 12 simulated servers of different history lengths; the
payloads are rounded to 3 decimals as served, so thread-count noise in the last float bits does not
show. A deliberate change to serving updates the digests in the same commit, saying why."""

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from forecasting.engine.heuristic import heuristic_quantiles
from forecasting.engine.serving import serve_forecasts
from forecasting.engine.simulator import fleet_names, simulate_buckets
from forecasting.engine.spec import DEFAULT_THRESHOLDS

MODEL = Path(__file__).resolve().parents[3] / "models" / "tft_model_20261202T135112Z"
PINNED = {
    "tft": "c2f13d4b465592ddb73ca66c76701feb77e0b52dd9dcbc179bf82e65f86c81ef",
    "heuristic": "98d160b014ec2af3d3a472659b0b6d06c88d7de026c70881b4fce8c600f994a3",
}
FRACTIONS = (1.0, 0.9, 0.5, 0.3, 1.0, 0.7, 0.2, 1.0, 0.8, 0.6, 0.4, 1.0)


def _windows():
    start, end = datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 7, 6, tzinfo=UTC)
    windows = simulate_buckets(servers=fleet_names(12), start=start, end=end, seed=21)
    return [w.head(f) for w, f in zip(windows, FRACTIONS, strict=True)]


# The alert limits in force when the digests were taken (issue 22 later raised the relative critical
# limits of disk and latency to 3 × p95, a policy change, not a code move): pinned with them.
THRESHOLDS = {
    **{metric: dict(rule) for metric, rule in DEFAULT_THRESHOLDS.items()},
    "disk_io_mb_s": {"warning": 1.5, "critical": 2.0, "relative": True, "floor": 10.0},
    "latency_ms": {"warning": 1.5, "critical": 2.0, "relative": True, "floor": 20.0},
}


def _before_the_blend(payload: str) -> str:
    """The payload without the blend weights each metric records since issue 24 (after the digests;
    serve_forecasts without weights records the model alone): the numbers stay pinned."""
    metrics = json.loads(payload)
    for forecast in metrics.values():
        assert forecast.pop("blend") == {"model": [1.0] * 3, "last_value": [0.0] * 3}
    return json.dumps(metrics, separators=(",", ":"))


def _digest(windows, quantiles) -> str:
    thresholds = {metric: dict(rule) for metric, rule in THRESHOLDS.items()}
    served = [
        {"payload": _before_the_blend(s.payload), "summary": s.summary, "candidates": s.candidates, "prob_30m": s.prob_30m,
         "prob_8h": s.prob_8h, "explain": s.explain}
        for s in serve_forecasts(windows, quantiles, thresholds, None)
    ]  # fmt: skip
    return hashlib.sha256(json.dumps(served, sort_keys=True).encode()).hexdigest()


def test_heuristic_forecasts_are_served_as_before_the_move():
    windows = _windows()
    assert _digest(windows, np.stack([heuristic_quantiles(w) for w in windows])) == PINNED["heuristic"]


@pytest.mark.slow
def test_tft_forecasts_are_served_as_before_the_move():
    from forecasting.engine.network import load_forecaster

    windows = _windows()
    forecaster = load_forecaster(MODEL, device="cpu", threads=1)
    assert _digest(windows, forecaster.predict_array(windows)) == PINNED["tft"]
