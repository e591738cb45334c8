"""Live recalibration of the served incident probabilities from the outcomes the service records,
and live scores of those probabilities. Pure numpy, no Django.

The map. ``p_served = σ(a + b · logit(p_prior))`` where ``p_prior`` is what the model folder
serves (its event model, or its trained map): the trained probabilities are the prior, and the map
starts at the identity (a = 0, b = 1). It is the maximum a posteriori logistic fit of the recorded
outcomes (did an incident of engine.incidents start within the window) on ``logit(p_prior)``, with a
Gaussian prior on (a, b) centred on the identity whose precision is ``prior_weight`` on the
intercept and ``SLOPE_PRIOR_FACTOR`` times that on the slope (in the units of one outcome's
log-likelihood): with a few dozen outcomes the prior holds the map near the identity, with
thousands it moves toward the observed rates. A fleet with fewer incidents than the
training data (all outcomes 0) pulls ``a`` down and reads lower; one with more reads higher.

Sufficient state. The outcomes are kept as counts per bin of ``logit(p_prior)`` (``BINS`` equal bins
on [−LOGIT_CLIP, LOGIT_CLIP]): outcomes, events and the sum of the logits (the bin's mean logit is
the regressor), so an update is O(bins) whatever the fleet size. Counts decay by half every
``half_life`` (the service passes the elapsed fraction), so the map follows a fleet that changes.

Per profile: the same fit, with its prior centred on the fleet's map instead of the identity, so a
profile with little data reads like the fleet and one with much data reads like itself.

Live scores come from a histogram of (served probability, outcome) cells — what one SQL GROUP BY
gives — with h22a's scoring math (engine.probability_scores: Brier, skill vs the sample's own
rate, AUC, 10-bin reliability).
"""

from __future__ import annotations

import math

import numpy as np

from forecasting.engine.probability_scores import RELIABILITY_BINS, auc

BINS = 40
LOGIT_CLIP = 9.0  # p in [1.2e-4, 0.99988]: beyond that a probability carries no more ranking we can use
IDENTITY = (0.0, 1.0)
# The intercept says how often incidents happen on this fleet — what differs most between fleets and
# what a day of outcomes shows even when it holds no incident. The slope says how sharply the model
# ranks servers, a property of the model that carries over between fleets and that only incidents
# inform: a fleet without any must not sharpen (or flatten) the ranking it was trained with. So the
# slope's prior is this many times firmer than the intercept's.
SLOPE_PRIOR_FACTOR = 10.0
_EDGES = np.linspace(-LOGIT_CLIP, LOGIT_CLIP, BINS + 1)


def logit(p: np.ndarray | float) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    return np.clip(np.log(p / (1 - p)), -LOGIT_CLIP, LOGIT_CLIP)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


def empty_counts() -> dict[str, list[float]]:
    """The state of a map with no outcomes yet: per bin, outcomes, events and sum of logits."""
    return {"n": [0.0] * BINS, "events": [0.0] * BINS, "logit_sum": [0.0] * BINS}


def counts_add(counts: dict, p_prior: np.ndarray, events: np.ndarray, *, decay: float = 1.0) -> dict:
    """The state after multiplying the old counts by ``decay`` (0–1, the elapsed half-lives'
    factor) and adding outcomes (prior probabilities, 0/1 events)."""
    z = logit(p_prior)
    which = np.clip(np.searchsorted(_EDGES, z, side="right") - 1, 0, BINS - 1)
    e = np.asarray(events, dtype=np.float64)
    n_new = np.bincount(which, minlength=BINS)
    e_new = np.bincount(which, weights=e, minlength=BINS)
    z_new = np.bincount(which, weights=z, minlength=BINS)
    out = {}
    for key, new in (("n", n_new), ("events", e_new), ("logit_sum", z_new)):
        old = np.asarray(counts.get(key) or [0.0] * BINS, dtype=np.float64)
        out[key] = np.round(old * decay + new, 6).tolist()
    return out


def map_fit(counts: dict, *, prior: tuple[float, float] = IDENTITY, prior_weight: float) -> tuple[float, float]:
    """(a, b): the MAP logistic fit of the counts on logit(p_prior), Gaussian prior centred on
    ``prior`` with precision ``prior_weight`` on the intercept and SLOPE_PRIOR_FACTOR times that on
    the slope (Newton's method; the objective is strictly convex)."""
    n = np.asarray(counts["n"], dtype=np.float64)
    e = np.asarray(counts["events"], dtype=np.float64)
    x = np.divide(np.asarray(counts["logit_sum"], dtype=np.float64), n, out=np.zeros(BINS), where=n > 0)
    theta = np.array(prior, dtype=np.float64)
    centre = theta.copy()
    lam = max(float(prior_weight), 1e-6) * np.array([1.0, SLOPE_PRIOR_FACTOR])
    for _ in range(50):
        s = sigmoid(theta[0] + theta[1] * x)
        r = n * s - e
        grad = np.array([r.sum(), (r * x).sum()]) + lam * (theta - centre)
        w = n * s * (1 - s)
        hess = np.array([[w.sum(), (w * x).sum()], [(w * x).sum(), (w * x * x).sum()]]) + np.diag(lam)
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.abs(step).max() < 1e-9:
            break
    return round(float(theta[0]), 6), round(float(theta[1]), 6)


def map_apply(p_prior: np.ndarray, params: tuple[float, float] | None) -> np.ndarray:
    """Prior probabilities through a fitted map (unchanged when ``params`` is None)."""
    p = np.asarray(p_prior, dtype=np.float64)
    if params is None:
        return p
    a, b = params
    return sigmoid(a + b * logit(p))


def effective_outcomes(counts: dict) -> float:
    return float(np.sum(counts.get("n") or [0.0]))


def histogram_scores(cell: np.ndarray, n: np.ndarray, incident: np.ndarray, p_sum: np.ndarray,
                     p_squared: np.ndarray) -> dict:  # fmt: skip
    """Scores of served probabilities from histogram cells: each cell holds ``n`` outcomes that are
    all ``incident`` (0/1), whose probabilities round to ``cell`` and sum to ``p_sum`` (squares:
    ``p_squared``). Same keys as engine.probability_scores.probability_scores; Brier, the mean and
    the reliability table are exact, AUC is exact up to the cells' resolution (ties by cell)."""
    n = np.asarray(n, dtype=np.float64)
    e = np.asarray(incident, dtype=np.float64)
    p_sum = np.asarray(p_sum, dtype=np.float64)
    total = float(n.sum())
    if total <= 0:
        return {"n": 0, "events": 0}
    events = float((n * e).sum())
    base = events / total
    brier = float((np.asarray(p_squared, dtype=np.float64).sum() - 2 * (p_sum * e).sum() + events) / total)
    climatology = base * (1 - base)
    return {
        "n": int(total),
        "events": int(events),
        "base_rate": base,
        "mean_prob": float(p_sum.sum() / total),
        "brier": brier,
        "brier_climatology": climatology,
        "skill": 1 - brier / climatology if climatology > 0 else math.nan,
        "auc": auc(np.asarray(cell, dtype=np.float64), e, n),
        "reliability": histogram_reliability(p_sum / np.maximum(n, 1), n, e),
    }


def histogram_reliability(p: np.ndarray, n: np.ndarray, e: np.ndarray, bins: int = RELIABILITY_BINS) -> list[dict]:
    """The 10 equal-width bins of engine.probability_scores.reliability, from histogram cells
    (mean probability ``p``, ``n`` outcomes, outcome ``e``). A cell's mean is a sum divided by a
    count: the tolerance keeps a cell of 0.2's at 0.2, not at 0.19999999999999998, one bin lower."""
    which = np.minimum((p * bins + 1e-9).astype(np.int64), bins - 1)
    table = []
    for b in range(bins):
        sel = which == b
        count = float(n[sel].sum())
        if count > 0:
            table.append({
                "bin": f"{b / bins:.1f}-{(b + 1) / bins:.1f}",
                "n": int(count),
                "mean_prob": float((n[sel] * p[sel]).sum() / count),
                "frequency": float((n[sel] * e[sel]).sum() / count),
            })  # fmt: skip
    return table
