"""Forecasts served on a fixed set of windows are pinned: a refactor that moves code (issue 21 moved
serving into the engine) must not change a single served number.

The digests were computed before the move, from the shipped default model and the then
`forecasting.services._score_chunk`, on 12 simulated servers of different history lengths; the
payloads are rounded to 3 decimals as served. A deliberate change to serving updates the pins in the
same commit, saying why.

The heuristic is plain numpy and stays pinned by its digest. The TFT's forward pass is not
bit-identical across CPUs (torch picks AVX2 or AVX-512 kernels by machine): on an Intel AVX-512
machine a value near a rounding boundary lands on the other side of it and the digest differs while
no code changed. Its pin is therefore the served output itself (pinned_tft_served.json.gz, written on
such a machine from the tree whose output still matched the digest on AMD EPYC), compared field by
field: every number within 2e-3 (one unit in the served 3rd decimal, plus float noise), every other
value and all text between the numbers exact."""

import gzip
import hashlib
import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from forecasting.engine.heuristic import heuristic_quantiles
from forecasting.engine.serving import serve_forecasts
from forecasting.engine.simulator import fleet_names, simulate_buckets
from forecasting.engine.spec import DEFAULT_THRESHOLDS

MODEL = Path(__file__).resolve().parents[3] / "models" / "tft_model_20261202T135112Z"
PINNED = {"heuristic": "98d160b014ec2af3d3a472659b0b6d06c88d7de026c70881b4fce8c600f994a3"}
PINNED_TFT = Path(__file__).with_name("pinned_tft_served.json.gz")
TOLERANCE = 2e-3
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
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


def _before_the_blend(payload: str, *, parse: bool) -> str | dict:
    """The payload without the blend weights each metric records since issue 24 (after the pins;
    serve_forecasts without weights records the model alone): the numbers stay pinned."""
    metrics = json.loads(payload)
    for forecast in metrics.values():
        assert forecast.pop("blend") == {"model": [1.0] * 3, "last_value": [0.0] * 3}
    return metrics if parse else json.dumps(metrics, separators=(",", ":"))


def _served(windows, quantiles, *, parse_payload: bool = False) -> list[dict]:
    thresholds = {metric: dict(rule) for metric, rule in THRESHOLDS.items()}
    return [
        {"payload": _before_the_blend(s.payload, parse=parse_payload), "summary": s.summary,
         "candidates": s.candidates, "prob_30m": s.prob_30m, "prob_8h": s.prob_8h, "explain": s.explain}
        for s in serve_forecasts(windows, quantiles, thresholds, None)
    ]  # fmt: skip


def _digest(windows, quantiles) -> str:
    return hashlib.sha256(json.dumps(_served(windows, quantiles), sort_keys=True).encode()).hexdigest()


def _differences(got, want, path: str = "") -> list[str]:
    """Where `got` differs from `want`: numbers beyond TOLERANCE, anything else not equal (text is
    compared with its numbers taken out, and those numbers within TOLERANCE)."""
    if isinstance(want, dict) and isinstance(got, dict):
        if got.keys() != want.keys():
            return [f"{path}: keys {sorted(got)} != {sorted(want)}"]
        return [d for key in want for d in _differences(got[key], want[key], f"{path}.{key}")]
    if isinstance(want, list) and isinstance(got, list):
        if len(got) != len(want):
            return [f"{path}: {len(got)} items != {len(want)}"]
        return [d for i, (g, w) in enumerate(zip(got, want, strict=True)) for d in _differences(g, w, f"{path}[{i}]")]
    if isinstance(want, str) and isinstance(got, str):
        same_text = NUMBER.split(got) == NUMBER.split(want)
        got_n, want_n = [float(x) for x in NUMBER.findall(got)], [float(x) for x in NUMBER.findall(want)]
        if (
            same_text
            and len(got_n) == len(want_n)
            and all(abs(g - w) <= TOLERANCE for g, w in zip(got_n, want_n, strict=True))
        ):
            return []
        return [f"{path}: {got!r} != {want!r}"]
    numbers = (int, float)
    if isinstance(want, numbers) and isinstance(got, numbers) and not isinstance(want, bool):
        if math.isclose(got, want, rel_tol=0, abs_tol=TOLERANCE):
            return []
    elif got == want:
        return []
    return [f"{path}: {got!r} != {want!r}"]


def test_heuristic_forecasts_are_served_as_before_the_move():
    windows = _windows()
    assert _digest(windows, np.stack([heuristic_quantiles(w) for w in windows])) == PINNED["heuristic"]


@pytest.mark.slow
def test_tft_forecasts_are_served_as_before_the_move():
    from forecasting.engine.network import load_forecaster

    windows = _windows()
    forecaster = load_forecaster(MODEL, device="cpu", threads=1)
    served = _served(windows, forecaster.predict_array(windows), parse_payload=True)
    differences = _differences(served, json.loads(gzip.decompress(PINNED_TFT.read_bytes())))
    assert not [d for d in differences if not _peak_step_tie(d, served)], differences[:10]


PEAK_STEP = re.compile(r"^\[(\d+)\]\.summary\.(\w+)\.peak_step: (\d+) != (\d+)$")


def _peak_step_tie(difference: str, served: list[dict]) -> bool:
    """A peak step that moved to a step whose served p50 is within TOLERANCE of the pinned peak's (a
    near-tie the other CPU's kernels break the other way: the p50 at 95 and 96 of a flat tail)."""
    match = PEAK_STEP.match(difference)
    if match is None:
        return False
    i, metric, got, want = int(match[1]), match[2], int(match[3]), int(match[4])
    p50 = served[i]["payload"][metric]["p50"]
    return abs(p50[got - 1] - p50[want - 1]) <= TOLERANCE
