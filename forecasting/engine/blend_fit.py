"""Fit a model folder's blend weights (engine.blend) on validation windows. Numpy only.

The windows are origins whose targets all lie in the part [lo, hi) of each series (fractions of its
length): for a model trained on the first 60 % of a series with a 20 % validation tail that is
[0.48, 0.60) — the windows training held out — so the backtest's test part (the last 40 %) stays
unseen. A simulated fleet of a seed the model never saw can be given whole (lo = 0, hi = 1).
The forecaster needs ``predict_array(windows)`` (B, H, M, K) and ``quantiles`` (K levels).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from forecasting.engine.backtest import (
    _UPPER,
    PREDICT_CHUNK,
    QUANTILE_LEVELS,
    _scored_metrics,
    context_window,
)
from forecasting.engine.bands import INFRASTRUCTURE, report_family
from forecasting.engine.blend import BlendFit, fit_weights, persistence_quantiles
from forecasting.engine.folders import write_blend
from forecasting.engine.metrics import naive_scale
from forecasting.engine.series import SeriesWindow
from forecasting.engine.spec import CONTEXT, HORIZON, METRICS, profile_for

logger = logging.getLogger(__name__)

VALIDATION_PART = (0.48, 0.60)  # train_tft --csv-fraction 0.6 with its val_fraction 0.2
FIT_EVERY = 12  # an origin an hour: many more windows than the backtest's every 4 h


def fit_origins(n_steps: int, part: tuple[float, float], every: int = FIT_EVERY) -> np.ndarray:
    """Origins whose context precedes and whose targets lie inside [lo, hi) of a series of n steps."""
    lo, hi = part
    first = max(math.ceil(lo * n_steps), CONTEXT)
    last = math.floor(hi * n_steps) - HORIZON
    return np.arange(first, last + 1, every, dtype=np.int64) if last >= first else np.zeros(0, dtype=np.int64)


def _levels_index(levels: Sequence[float]) -> list[int]:
    tau = np.asarray(levels, dtype=np.float64)
    return [int(np.argmin(np.abs(tau - q))) for q in QUANTILE_LEVELS]


def collect_blend_fit(
    sources: Iterable[tuple[list[SeriesWindow], Mapping | Sequence[str] | None, tuple[float, float], str, int]],
    forecaster,
    *,
    fit: BlendFit | None = None,
) -> BlendFit:
    """Every validation window's loss per grid weight. ``sources``: (series, metrics as in
    run_backtest, part, kind, every: steps between origins) with kind "real" (single-value files mapped onto a metric: their
    family comes from the name) or "simulated" (contract servers: from the metric). The kinds are
    kept apart ("cpu" and "cpu (simulated)"), so both weigh alike however many windows each has."""
    fit = fit or BlendFit()
    pick = _levels_index(forecaster.quantiles)
    for series, metrics, part, kind, every in sources:
        scored = _scored_metrics(series, metrics)
        for w in series:
            origins = fit_origins(len(w.values), part, every)
            if not len(origins):
                continue
            wins = [context_window(w, int(o)) for o in origins]
            q = np.concatenate(
                [forecaster.predict_array(wins[i : i + PREDICT_CHUNK]) for i in range(0, len(wins), PREDICT_CHUNK)]
            )
            for m in scored[w.server]:
                _add_metric(fit, w, m, origins, q[:, :, METRICS.index(m), pick].astype(np.float64), kind)
        logger.info("blend fit: %s", fit.windows())
    return fit


def _add_metric(fit: BlendFit, w: SeriesWindow, m: str, origins: np.ndarray, q: np.ndarray, kind: str) -> None:
    y = w.values[:, METRICS.index(m)].astype(np.float64)
    scale = naive_scale(y[: int(origins[0])])
    family = report_family(w.server, m, mapped=kind == "real")
    family = (family if kind == "real" else f"{family} ({kind})") + f" [{m}]"  # engine.blend._group
    for k, o in enumerate(origins):
        persistence = persistence_quantiles(y[o - CONTEXT : o], QUANTILE_LEVELS, HORIZON, upper=_UPPER[m])
        fit.add(family, y[o : o + HORIZON], q[k], persistence, QUANTILE_LEVELS, scale)


def fit_blend(sources, forecaster, *, families: Iterable[str] = INFRASTRUCTURE) -> dict:
    """The blend JSON of a model folder: per-band weights fitted families-equal over ``families``."""
    return fit_weights(collect_blend_fit(sources, forecaster), families)


def attach_blend(path, series: list[SeriesWindow], forecaster, val_fraction: float) -> str:
    """At training time: fit the blend on the validation tail (the last ``val_fraction`` of each
    training series, held out from the gradient steps) and store it in the folder (blend.json).
    Contract-named servers (a simulated fleet) form their own kind, every other series is "real"."""
    simulated = [w for w in series if profile_for(w.server) != "generic"]
    real = [w for w in series if profile_for(w.server) == "generic"]
    part = (1.0 - val_fraction, 1.0)
    sources = [(real, None, part, "real", FIT_EVERY), (simulated, None, part, "simulated", FIT_EVERY)]
    try:
        blend = fit_blend([s for s in sources if s[0]], forecaster)
    except Exception as exc:  # like the probability fit: a failed fit must not lose the trained model
        logger.exception("blend fit failed")
        return f"failed ({exc})"
    blend["fitted_on"] = f"validation tail ({val_fraction:g}) of the training series"
    write_blend(path, blend)
    return f"blend weights {blend['weights']}"
