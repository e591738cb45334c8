"""Worker-side access to the TFT: loads the active model once per process, lazily.

It imports the engine's network module (and so torch) at its top: only worker-side code (the
prediction-run services, the commands) imports this module; the web process never does.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from django.conf import settings

from forecasting.engine.folders import ModelFolderError
from forecasting.engine.network import Forecaster, load_forecaster

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_cache: dict = {}
_logged_causes: set[str] = set()


class ModelUnavailableError(Exception):
    """No usable model: the message is the fallback reason shown per server."""


def log_once(cause: str, message: str, **extra) -> None:
    """Log a fallback cause once per process, not once per server per minute."""
    if cause in _logged_causes:
        return
    _logged_causes.add(cause)
    logger.warning(message, extra={"cause": cause, **extra})


def _fingerprint(path: Path) -> tuple:
    files = [path / "spec.json", path / "weights.safetensors"]
    try:
        return tuple((f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    except OSError as exc:
        raise ModelUnavailableError(f"model_folder_unreadable: {path.name}: {exc.strerror or exc}") from None


def get_forecaster(path: str | Path) -> Forecaster:
    """The loaded forecaster for this folder; reloaded when its files change, never for each run."""
    path = Path(path)
    fingerprint = _fingerprint(path)
    with _lock:
        cached = _cache.get("entry")
        if cached and cached[0] == (str(path), fingerprint):
            return cached[1]
        try:
            forecaster = load_forecaster(path, device=settings.TFT_DEVICE, threads=settings.TFT_TORCH_THREADS or None)
        except (ModelFolderError, OSError, RuntimeError, ValueError, KeyError) as exc:
            _cache.pop("entry", None)
            raise ModelUnavailableError(f"model_load_failed: {exc}") from exc
        _cache["entry"] = ((str(path), fingerprint), forecaster)
        _logged_causes.clear()  # a new model: report fresh problems again
        return forecaster


