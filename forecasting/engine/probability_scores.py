"""Scores of probability forecasts against 0/1 outcomes: Brier, Brier skill, AUC, reliability.
Numpy only; every function takes optional sample weights so that pooled figures can weigh series
families equally (``family_pooled``).

* Brier = Σ w (p − e)² / Σ w; climatology = the sample's own (weighted) event rate b, whose Brier
  is b (1 − b); skill = 1 − Brier / b (1 − b) (positive: better than always saying b).
* AUC = P(p of an event > p of a non-event), ties count one half (weighted Mann–Whitney).
* reliability: 10 equal-width bins of p, each with n, mean p and the observed event frequency.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

RELIABILITY_BINS = 10


def _weights(p: np.ndarray, weight: np.ndarray | None) -> np.ndarray:
    return np.ones(len(p)) if weight is None else np.asarray(weight, dtype=np.float64)


def brier(p: np.ndarray, event: np.ndarray, weight: np.ndarray | None = None) -> float:
    p = np.asarray(p, dtype=np.float64)
    return float(np.average((p - np.asarray(event, dtype=np.float64)) ** 2, weights=_weights(p, weight)))


def auc(p: np.ndarray, event: np.ndarray, weight: np.ndarray | None = None) -> float:
    """Area under the ROC curve (NaN when the sample has no events or no non-events)."""
    p = np.asarray(p, dtype=np.float64)
    e = np.asarray(event, dtype=bool)
    w = _weights(p, weight)
    w_pos, w_neg = w[e].sum(), w[~e].sum()
    if w_pos <= 0 or w_neg <= 0:
        return math.nan
    values, inverse = np.unique(p, return_inverse=True)
    pos = np.bincount(inverse, weights=w * e, minlength=len(values))
    neg = np.bincount(inverse, weights=w * ~e, minlength=len(values))
    neg_below = np.cumsum(neg) - neg
    return float((pos * (neg_below + 0.5 * neg)).sum() / (w_pos * w_neg))


def reliability(p: np.ndarray, event: np.ndarray, weight: np.ndarray | None = None,
                bins: int = RELIABILITY_BINS) -> list[dict]:  # fmt: skip
    """Equal-width bins of p: {"bin", "n", "mean_prob", "frequency"} for each non-empty bin."""
    p = np.asarray(p, dtype=np.float64)
    e = np.asarray(event, dtype=np.float64)
    w = _weights(p, weight)
    which = np.minimum((p * bins).astype(np.int64), bins - 1)
    table = []
    for b in range(bins):
        sel = which == b
        if sel.any():
            table.append({
                "bin": f"{b / bins:.1f}-{(b + 1) / bins:.1f}",
                "n": int(sel.sum()),
                "mean_prob": float(np.average(p[sel], weights=w[sel])),
                "frequency": float(np.average(e[sel], weights=w[sel])),
            })  # fmt: skip
    return table


def probability_scores(p: np.ndarray, event: np.ndarray, weight: np.ndarray | None = None,
                       bins: int = RELIABILITY_BINS) -> dict:  # fmt: skip
    """n, events, base_rate, mean_prob, median_prob (unweighted), brier, brier_climatology, skill,
    auc, reliability."""
    p = np.asarray(p, dtype=np.float64)
    e = np.asarray(event, dtype=np.float64)
    if not len(p):
        return {"n": 0, "events": 0}
    w = _weights(p, weight)
    base = float(np.average(e, weights=w))
    score = brier(p, e, w)
    climatology = base * (1 - base)
    return {
        "n": len(p),
        "events": int(e.sum()),
        "base_rate": base,
        "mean_prob": float(np.average(p, weights=w)),
        "median_prob": float(np.median(p)),
        "brier": score,
        "brier_climatology": climatology,
        "skill": 1 - score / climatology if climatology > 0 else math.nan,
        "auc": auc(p, e, w),
        "reliability": reliability(p, e, w, bins),
    }


def family_pooled(groups: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    """Scores of samples pooled over families ({family: (p, event)}) with each family weighted
    equally (every sample weighs 1 / its family's size); ``n`` and ``events`` stay counts."""
    parts = [(np.asarray(p, dtype=np.float64), np.asarray(e, dtype=np.float64)) for p, e in groups.values() if len(p)]
    if not parts:
        return {"n": 0, "events": 0, "families": 0}
    p = np.concatenate([a for a, _ in parts])
    e = np.concatenate([b for _, b in parts])
    w = np.concatenate([np.full(len(a), 1.0 / len(a)) for a, _ in parts])
    return {**probability_scores(p, e, w), "families": len(parts)}


def sources_equal(per_source: Mapping[str, Mapping]) -> dict:
    """The mean over sources (fleets, data sets) of each one's own skill and AUC, sources with at
    least one event only: what a new fleet can expect. Pooling families across sources instead lets
    the source whose family is easiest stand for every fleet of that family (issue 22: SMD's memory
    made the development estimate +0.33 where each source's mean was +0.11)."""
    rows = [r for r in per_source.values() if r.get("events") and _finite(r.get("skill")) and _finite(r.get("auc"))]
    return {"sources": len(rows), "skill": float(np.mean([r["skill"] for r in rows])) if rows else None,
            "auc": float(np.mean([r["auc"] for r in rows])) if rows else None}  # fmt: skip


def _finite(x) -> bool:
    return x is not None and math.isfinite(x)
