"""Writes and worker-side reads of the live interval calibration (forecasting.engine.calibration).

The live scoring pass (forecasting.scoring.services.forecasts_score) hands each pass's coverage
counts to `intervals_recalibrate` inside its own transaction, right after moving its scored-bands
markers by compare-and-swap: a pass that lost the race rolls back, so each scored target moves a
state exactly once. The prediction run reads the states with `served_log_factors` and applies them
to the TFT's quantiles before scoring and storing its forecasts.

A state row holds its band's own correction; what is served is the cascade of the nearer bands'
corrections and its own (engine.calibration.served_log_factors).

The calibration is applied to TFT forecasts only, so it takes the served counts of the active TFT
model version only (scoring.services._coverage) and each state records that version. A state of
another version (fitted on the old model's errors) is reset by the first pass after a switch: one
UPDATE of every such row back to no correction and n 0, in the pass's transaction, whether or not the
pass brings counts of the new model (the first hours after a switch mostly score the old model's
forecasts, which are left out). Between the switch and that pass (one TFT_SCORE_INTERVAL_SECONDS at
most) the prediction run still applies the old factors.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime

import numpy as np
from django.db import transaction

from forecasting.engine.calibration import Priors, gamma_of_band, updated_log_factors
from forecasting.engine.calibration import served_log_factors as cascaded
from forecasting.engine.scoring import CoverageCounts
from forecasting.engine.spec import BAND_NAMES, TARGETS
from forecasting.models import CalibrationState
from ingest.models import Server

logger = logging.getLogger(__name__)

_Key = tuple[int, str, str]  # server id, metric, band name


def _summed(observations: Iterable[CoverageCounts]) -> dict[_Key, np.ndarray]:
    """n, below, above per key (a key listed twice in one pass counts once, with both counts)."""
    totals: dict[_Key, np.ndarray] = {}
    for c in observations:
        if c.band not in BAND_NAMES or c.n <= 0:
            continue
        key = (c.server_id, c.metric, c.band)
        totals[key] = totals.get(key, 0) + np.array([c.n, c.below, c.above], dtype=np.float64)
    return totals


def _priors(server_ids: set[int]) -> dict[tuple[int, str], np.ndarray]:
    """(server, metric) → prior log factors (bands, 2) for servers that have no state yet: the mean
    of their profile's states (else the fleet's) for that metric."""
    profiles = dict(Server.objects.filter(pk__in=server_ids).values_list("pk", "profile"))
    known = _states_by_server_metric(CalibrationState.objects.all())
    out = {}
    for metric in TARGETS:
        priors = Priors((profile, state) for (_, m), (profile, state) in known.items() if m == metric)
        for server_id in server_ids:
            out[(server_id, metric)] = priors.of(profiles.get(server_id, "generic"))
    return out


def _states_by_server_metric(states) -> dict[tuple[int, str], tuple[str, np.ndarray]]:
    """(server, metric) → (profile, log factors (bands, 2)) of stored states (missing bands 0)."""
    out: dict[tuple[int, str], tuple[str, np.ndarray]] = {}
    rows = states.values_list("server_id", "server__profile", "metric", "band", "log_lower", "log_upper")
    for server_id, profile, metric, band, lower, upper in rows:
        entry = out.setdefault((server_id, metric), (profile, np.zeros((len(BAND_NAMES), 2))))
        entry[1][BAND_NAMES.index(band)] = (lower, upper)
    return out


def _states_of_other_models_reset(*, model_name: str, now: datetime) -> int:
    """Reset every state fitted on another model version to no correction (log factors 0, n 0) and
    hand it to ``model_name``: one UPDATE, matching no row except on the first pass after a switch."""
    reset = CalibrationState.objects.exclude(model_name=model_name).update(
        log_lower=0.0, log_upper=0.0, n=0, model_name=model_name, updated_at=now
    )
    if reset:
        logger.info("interval calibration reset after a model switch", extra={"states": reset, "model": model_name})
    return reset


def intervals_recalibrate(*, observations: Iterable[CoverageCounts], model_name: str,
                          now: datetime | None = None) -> int:
    """Move each server × metric × band state one adaptive-conformal step from a scoring pass's
    counts of model version ``model_name`` (a new state starts from its profile's prior), in one
    locked read and one upsert; first reset the states of any other version. An empty
    ``model_name`` (no active model) changes nothing. Returns the number of states written."""
    if not model_name:
        return 0
    now = now or datetime.now(UTC)
    totals = _summed(observations)
    with transaction.atomic():
        _states_of_other_models_reset(model_name=model_name, now=now)
        if not totals:
            return 0
        keys = list(totals)
        server_ids = {k[0] for k in keys}
        locked = CalibrationState.objects.select_for_update().filter(server_id__in=server_ids)
        current = {(s.server_id, s.metric, s.band): s for s in locked}
        missing = {k[0] for k in keys if k not in current}
        priors = _priors(missing) if missing else {}
        start = np.array([_start_factors(k, current, priors) for k in keys])  # (K, 2)
        counts = np.stack([totals[k] for k in keys])  # (K, 3)
        gamma = gamma_of_band(np.array([BAND_NAMES.index(k[2]) for k in keys]))
        moved = updated_log_factors(start, counts[:, 0], counts[:, 1], counts[:, 2], gamma=gamma)
        rows = [
            CalibrationState(
                server_id=k[0],
                metric=k[1],
                band=k[2],
                log_lower=float(moved[i, 0]),
                log_upper=float(moved[i, 1]),
                n=(current[k].n if k in current else 0) + int(counts[i, 0]),
                model_name=model_name,
                updated_at=now,
            )
            for i, k in enumerate(keys)
        ]
        CalibrationState.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["server", "metric", "band"],
            update_fields=["log_lower", "log_upper", "n", "model_name", "updated_at"],
        )
    logger.info("intervals recalibrated", extra={"states": len(rows), "new": sum(k not in current for k in keys)})
    return len(rows)


def _start_factors(key: _Key, current: dict, priors: dict) -> tuple[float, float]:
    if key in current:
        return current[key].log_lower, current[key].log_upper
    server_id, metric, band = key
    return tuple(priors[(server_id, metric)][BAND_NAMES.index(band)])


def served_log_factors(*, server_ids: list[int]) -> np.ndarray:
    """(N, metrics, bands, 2) log factors the prediction run applies to each server's quantiles,
    in TARGETS order: the cascade of the server's own states, of its profile's prior where it has
    none."""
    own = _states_by_server_metric(CalibrationState.objects.filter(server_id__in=server_ids))
    missing = {s for s in server_ids if any((s, m) not in own for m in TARGETS)}
    priors = _priors(missing) if missing else {}
    out = np.zeros((len(server_ids), len(TARGETS), len(BAND_NAMES), 2))
    for i, server_id in enumerate(server_ids):
        for m, metric in enumerate(TARGETS):
            state = own.get((server_id, metric))
            out[i, m] = state[1] if state is not None else priors[(server_id, metric)]
    return cascaded(out)
