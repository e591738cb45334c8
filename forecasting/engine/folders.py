"""Model folders: safetensors weights and JSON, read and written without torch.

A model folder holds:

* ``weights.safetensors`` — the network's tensors (safetensors: no code, no pickle);
* ``spec.json`` — network hyperparameters, vocabularies, quantiles, step, horizon, encoder length;
* ``metrics.json`` — validation loss and backtest figures;
* ``MODEL_CARD.md`` — data, command, duration, parameters, variable importance;
* ``importance.json`` — the network's variable importance over validation windows (optional:
  folders trained before it was recorded have none).

Nothing here unpickles, and reading a folder's spec needs numpy and safetensors only, so the web
process (the model registry, the admin) can check folders.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from forecasting.engine import inputs
from forecasting.engine.blend import BAND_NAMES, BLEND_FORMAT
from forecasting.engine.event_model import EventModelError, check_model
from forecasting.engine.spec import TARGETS

SPEC_FILE = "spec.json"
WEIGHTS_FILE = "weights.safetensors"
METRICS_FILE = "metrics.json"
CARD_FILE = "MODEL_CARD.md"
IMPORTANCE_FILE = "importance.json"  # global variable importance (forecasting.engine.explanation); optional
SPEC_FORMAT = "tftsite-tft/1"
# A folder being written (training writes here, then renames): never a model folder.
TEMP_PREFIX = ".partial-"
SPEC_KEYS = ("hparams", "vocab", "quantiles", "targets", "horizon", "max_encoder", "step_minutes")


class ModelFolderError(Exception):
    """A model folder is missing files or holds something we cannot load."""


@dataclass(frozen=True)
class ModelFolder:
    name: str
    path: str
    spec: dict
    metrics: dict
    created_at: str | None


def model_folder_name(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"tft_model_{now.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}"


def is_temp_folder(name: str) -> bool:
    return name.startswith(TEMP_PREFIX)


def _read_json(path: Path, what: str) -> object:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelFolderError(f"{path.parent.name}: {what} is not valid JSON ({exc})") from exc


def check_spec(name: str, spec: object) -> dict:
    """The spec, if this code can build its network's inputs; ModelFolderError otherwise."""
    if not isinstance(spec, dict) or spec.get("format") != SPEC_FORMAT:
        raise ModelFolderError(f"{name}: {SPEC_FILE} is not a {SPEC_FORMAT} spec")
    for key in SPEC_KEYS:
        if key not in spec:
            raise ModelFolderError(f"{name}: {SPEC_FILE} lacks '{key}'")
    if list(spec["targets"]) != list(TARGETS):
        raise ModelFolderError(f"{name}: targets {spec['targets']} differ from {list(TARGETS)}")
    same_reals = list(spec.get("x_reals", inputs.X_REALS)) == list(inputs.X_REALS)
    same_cats = list(spec.get("x_categoricals", inputs.X_CATEGORICALS)) == list(inputs.X_CATEGORICALS)
    if not (same_reals and same_cats):
        raise ModelFolderError(f"{name}: input layout differs from this code's spec")
    try:
        inputs.Vocab.from_json(spec["vocab"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFolderError(f"{name}: bad vocabulary ({exc})") from exc
    return spec


def _check_weights(path: Path) -> None:
    from safetensors import safe_open  # numpy framework: no torch

    try:
        with safe_open(str(path / WEIGHTS_FILE), framework="numpy") as f:
            if not list(f.keys()):
                raise ModelFolderError(f"{path.name}: {WEIGHTS_FILE} holds no tensors")
    except ModelFolderError:
        raise
    except Exception as exc:  # safetensors raises its own error types
        raise ModelFolderError(f"{path.name}: {WEIGHTS_FILE} unreadable ({exc})") from exc


def read_model_folder(path: Path) -> ModelFolder:
    """Spec and metrics of a model folder, checked without building the network; raises
    ModelFolderError with a readable message if the folder is incomplete or malformed."""
    path = Path(path)
    if not path.is_dir():
        raise ModelFolderError(f"{path} is not a directory")
    for name in (SPEC_FILE, WEIGHTS_FILE):
        if not (path / name).is_file():
            raise ModelFolderError(f"{path.name}: missing {name}")
    spec = check_spec(path.name, _read_json(path / SPEC_FILE, SPEC_FILE))
    _check_weights(path)
    metrics = _read_json(path / METRICS_FILE, METRICS_FILE) if (path / METRICS_FILE).is_file() else {}
    return ModelFolder(path.name, str(path), spec, metrics, spec.get("created_at"))


def write_folder_json(path: Path, spec: dict, metrics: dict | None = None) -> None:
    """spec.json and (if given) metrics.json into path (created)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / SPEC_FILE).write_text(json.dumps(spec, indent=2, sort_keys=True))
    if metrics is not None:
        (path / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True))


def _optional_json(file: Path) -> object | None:
    """An optional file's JSON; None when it is missing or unreadable (optional files inform or
    refine, a folder forecasts without them)."""
    if not file.is_file():
        return None
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError):
        return None


def read_importance(path: Path) -> dict | None:
    """The folder's global variable importance; None for folders trained before it was recorded
    (or whose file is unreadable: it is informative, never needed to forecast)."""
    data = _optional_json(Path(path) / IMPORTANCE_FILE)
    return data if isinstance(data, dict) and "variables" in data else None


def write_importance(path: Path, importance: dict) -> None:
    (Path(path) / IMPORTANCE_FILE).write_text(json.dumps(importance, indent=2, sort_keys=True))


def json_default(obj):
    """JSON for numpy scalars and arrays (backtest figures)."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def update_metrics(path: Path, key: str, value: object) -> None:
    """Set one key of a folder's metrics.json."""
    metrics_path = Path(path) / METRICS_FILE
    data = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    data[key] = value
    metrics_path.write_text(json.dumps(data, indent=2, sort_keys=True, default=json_default))


# Incident-probability recalibration (engine.probability.recalibrated): optional, fitted by
# `backtest --fit-probabilities` on validation forecasts; folders without it serve raw probabilities.
PROBABILITY_FILE = "probability_calibration.json"


def read_probability_calibration(path: Path) -> dict | None:
    """Window ("30m", "8h") → isotonic map {"x", "y"}; None when the folder has none or it is
    malformed (the raw probabilities are served then, never an error)."""
    data = _optional_json(Path(path) / PROBABILITY_FILE)
    windows = data.get("windows") if isinstance(data, dict) else None
    if not isinstance(windows, dict) or not all(isinstance(t, dict) and "x" in t and "y" in t for t in windows.values()):
        return None
    return windows


def write_probability_calibration(path: Path, fitted: dict) -> None:
    (Path(path) / PROBABILITY_FILE).write_text(json.dumps(fitted, indent=2, sort_keys=True, default=json_default))


# Blend of the model with persistence (engine.blend): optional, fitted by `manage.py fit_blend` on
# validation windows; folders without it serve the model alone (every weight 1).
BLEND_FILE = "blend.json"


def read_blend(path: Path) -> dict | None:
    """The folder's blend (weights per band, online strength and ramp); None when the folder has
    none or it is malformed (the model is served alone then, never an error)."""
    data = _optional_json(Path(path) / BLEND_FILE)
    if not isinstance(data, dict) or data.get("format") != BLEND_FORMAT:
        return None
    weights = data.get("weights")
    if not isinstance(weights, dict) or set(weights) != set(BAND_NAMES):
        return None
    every = [weights, *(data.get("per_metric") or {}).values()]
    if not all(isinstance(ws, dict) and set(ws) == set(BAND_NAMES) for ws in every):
        return None
    if not all(isinstance(w, int | float) and 0.0 <= w <= 1.0 for ws in every for w in ws.values()):
        return None
    return data


def write_blend(path: Path, blend: dict) -> None:
    (Path(path) / BLEND_FILE).write_text(json.dumps(blend, indent=2, sort_keys=True, default=json_default))


# The event model (engine.event_model): P(an incident starts within the window), fitted by
# `train_tft` or `manage.py fit_event_model`; optional: folders without it serve the bound above.
EVENT_MODEL_FILE = "event_model.json"


def read_event_model(path: Path) -> dict | None:
    """The folder's event model, checked (engine.event_model.check_model); None when it has none or
    it is malformed (serving falls back to the probability bound, never an error). JSON only: the
    file is parsed with json.loads, never unpickled."""
    data = _optional_json(Path(path) / EVENT_MODEL_FILE)
    if data is None:
        return None
    try:
        return check_model(data)
    except EventModelError:
        return None


def write_event_model(path: Path, model: dict) -> None:
    check_model(model)
    (Path(path) / EVENT_MODEL_FILE).write_text(json.dumps(model, sort_keys=True, default=json_default))


def carry_event_model(source: Path, target: Path) -> str:
    """Give ``target`` (a retrained challenger) the event model of ``source`` (its champion), marked
    with where it came from; what happened, in words. The event model's inputs are the context and
    the served quantiles of whichever network serves: only the forecast features see the new
    network, and the live maps recalibrate what it serves; refitting it would need a forecast at
    every validation origin (MODEL_CARD "Incident probabilities"). Without one to carry, the
    challenger serves the bound (engine.probability) and the note says so."""
    model = read_event_model(source)
    if model is None:
        return f"none: {Path(source).name} has no event model; the challenger serves the probability bound"
    fitted_on = model.get("fitted_on", "?")
    write_event_model(target, {**model, "carried_from": Path(source).name, "fitted_on": fitted_on})
    return f"carried from {Path(source).name} (fitted on {fitted_on})"
