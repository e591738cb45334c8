"""Live recalibration of the served incident probabilities from the outcomes the service records,
and live scores of those probabilities. Pure numpy, no Django.

The map. ``p_served = σ(a + b · logit(p_prior))`` where ``p_prior`` is what the model folder
serves (its event model, or its trained map): the trained probabilities are the prior, and the map
starts at the identity (a = 0, b = 1). It is the maximum a posteriori logistic fit of the recorded
outcomes (did an incident of engine.incidents start within the window) on ``logit(p_prior)``, with a
Gaussian prior on (a, b) centred on the identity whose precision is ``prior_weight`` on the
intercept and ``slope_prior_factor`` times that on the slope (in the units of one outcome's
log-likelihood): with a few dozen outcomes the prior holds the map near the identity, with
thousands it moves toward the observed rates. A fleet with fewer incidents than the
training data (all outcomes 0) pulls ``a`` down and reads lower; one with more reads higher.

Sufficient state. The outcomes are kept as counts per bin of ``logit(p_prior)`` (``BINS`` equal bins
on [−LOGIT_CLIP, LOGIT_CLIP]): outcomes, events and the sum of the logits (the bin's mean logit is
the regressor), so an update is O(bins) whatever the fleet size. Counts decay by half every
``half_life`` (the service passes the elapsed fraction), so the map follows a fleet that changes.

Per profile: the same fit, with its prior centred on the fleet's map instead of the identity, so a
profile with little data reads like the fleet and one with much data reads like itself.

The service's rule, in one home for the service (forecasting.scoring.probabilities) and the
backtest's replay (``live_map_replay``): ``fleet_pass`` adds one resolution pass's outcomes of one
window to the fleet's map and to the map of each profile among them (fleet first, then the profiles
centred on the fleet's new map; each scope decays by the time since its own last update),
``maps_in_force`` keeps the fleet's map and each profile's with ``profile_min_outcomes``, and
``map_serve`` gives a server its profile's map, else the fleet's. The ``DEFAULT_*`` constants are the
settings' defaults (tftsite.settings reads them from here).

Live scores come from a histogram of (served probability, outcome) cells — what one SQL GROUP BY
gives — with h22a's scoring math (engine.probability_scores: Brier, skill vs the sample's own
rate, AUC, 10-bin reliability).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

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
DEFAULT_SLOPE_PRIOR_FACTOR = 10.0
FLEET = "fleet"  # the fleet-wide scope (the other scopes are profiles)
# Defaults of TFT_PROBABILITY_PRIOR_WEIGHT, _HALF_LIFE_HOURS and _PROFILE_MIN_OUTCOMES (tftsite.settings);
# TFT_PROBABILITY_SLOPE_PRIOR_FACTOR's is DEFAULT_SLOPE_PRIOR_FACTOR above.
DEFAULT_PRIOR_WEIGHT = 100.0
DEFAULT_HALF_LIFE_HOURS = 72.0
DEFAULT_PROFILE_MIN_OUTCOMES = 2000
SERVED_DECIMALS = 4  # a served probability is stored rounded to this many decimals
# The backtest's replay refits the maps once an hour of series time (the service refits at every
# scoring pass, TFT_SCORE_INTERVAL_SECONDS: an hour is coarser, so the replay is, if anything, slower to follow).
REPLAY_REFIT_SECONDS = 3600.0
_EDGES = np.linspace(-LOGIT_CLIP, LOGIT_CLIP, BINS + 1)


def logit(p: np.ndarray | float) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    return np.clip(np.log(p / (1 - p)), -LOGIT_CLIP, LOGIT_CLIP)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


def empty_counts() -> dict[str, list[float]]:
    """The state of a map with no outcomes yet: per bin, outcomes, events and sum of logits."""
    return {"n": [0.0] * BINS, "events": [0.0] * BINS, "logit_sum": [0.0] * BINS}


def counts_add(counts: dict, p_prior: np.ndarray, events: np.ndarray, *, decay: float = 1.0,
               weight: float = 1.0) -> dict:  # fmt: skip
    """The state after multiplying the old counts by ``decay`` (0–1, the elapsed half-lives'
    factor) and adding outcomes (prior probabilities, 0/1 events), each counting ``weight`` times."""
    z = logit(p_prior)
    which = np.clip(np.searchsorted(_EDGES, z, side="right") - 1, 0, BINS - 1)
    e = np.asarray(events, dtype=np.float64)
    n_new = np.bincount(which, minlength=BINS) * weight
    e_new = np.bincount(which, weights=e, minlength=BINS) * weight
    z_new = np.bincount(which, weights=z, minlength=BINS) * weight
    out = {}
    for key, new in (("n", n_new), ("events", e_new), ("logit_sum", z_new)):
        old = np.asarray(counts.get(key) or [0.0] * BINS, dtype=np.float64)
        out[key] = np.round(old * decay + new, 6).tolist()
    return out


def map_fit(counts: dict, *, prior: tuple[float, float] = IDENTITY, prior_weight: float,
            slope_factor: float = DEFAULT_SLOPE_PRIOR_FACTOR) -> tuple[float, float]:  # fmt: skip
    """(a, b): the MAP logistic fit of the counts on logit(p_prior), Gaussian prior centred on
    ``prior`` with precision ``prior_weight`` on the intercept and ``slope_factor`` times that on
    the slope (Newton's method; the objective is strictly convex)."""
    n = np.asarray(counts["n"], dtype=np.float64)
    e = np.asarray(counts["events"], dtype=np.float64)
    x = np.divide(np.asarray(counts["logit_sum"], dtype=np.float64), n, out=np.zeros(BINS), where=n > 0)
    theta = np.array(prior, dtype=np.float64)
    centre = theta.copy()
    lam = max(float(prior_weight), 1e-6) * np.array([1.0, float(slope_factor)])
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


# --- The service's update rule, shared with the backtest's replay ------------------------------------


@dataclass(frozen=True)
class LiveMapConfig:
    """The settings of the live maps (the service passes its TFT_PROBABILITY_* settings)."""

    prior_weight: float = DEFAULT_PRIOR_WEIGHT
    half_life_hours: float = DEFAULT_HALF_LIFE_HOURS
    profile_min_outcomes: float = DEFAULT_PROFILE_MIN_OUTCOMES
    slope_prior_factor: float = DEFAULT_SLOPE_PRIOR_FACTOR


@dataclass
class MapState:
    """One scope's map: its decayed counts, its fitted (a, b) and when it was last updated (seconds on
    the caller's clock; None: never)."""

    counts: dict = field(default_factory=empty_counts)
    params: tuple[float, float] = IDENTITY
    updated_s: float | None = None

    @property
    def outcomes(self) -> float:
        return effective_outcomes(self.counts)


def state_update(state: MapState, p_prior: np.ndarray, events: np.ndarray, *, now_s: float,
                 prior: tuple[float, float], cfg: LiveMapConfig, weight: float = 1.0) -> MapState:  # fmt: skip
    """The state after decaying its counts by the half-lives elapsed since its last update, adding the
    outcomes (each ``weight`` times) and refitting (MAP, centred on ``prior``)."""
    elapsed = 0.0 if state.updated_s is None else max(now_s - state.updated_s, 0.0)
    decay = 0.5 ** (elapsed / (cfg.half_life_hours * 3600.0))
    counts = counts_add(state.counts, p_prior, events, decay=decay, weight=weight)
    return MapState(counts, map_fit(counts, prior=prior, prior_weight=cfg.prior_weight,
                                    slope_factor=cfg.slope_prior_factor), now_s)  # fmt: skip


def fleet_pass(states: dict[str, MapState], profiles: np.ndarray, p_prior: np.ndarray, events: np.ndarray, *,
               now_s: float, cfg: LiveMapConfig, weight: float = 1.0) -> dict[str, MapState]:  # fmt: skip
    """One pass's outcomes of one window (each with its server's profile; each counting ``weight``
    times) added to the fleet's map and to each of their profiles' maps (centred on the fleet's new
    map); the updated states, by scope (``states`` is not changed; scopes without outcomes in the
    pass are not in the result)."""
    profiles = np.asarray(profiles).astype(str)
    p_prior = np.asarray(p_prior, dtype=np.float64)
    events = np.asarray(events, dtype=np.float64)
    fleet = state_update(states.get(FLEET) or MapState(), p_prior, events, now_s=now_s, prior=IDENTITY, cfg=cfg,
                         weight=weight)  # fmt: skip
    out = {FLEET: fleet}
    for profile in sorted(set(profiles.tolist())):
        sel = profiles == profile
        out[profile] = state_update(states.get(profile) or MapState(), p_prior[sel], events[sel], now_s=now_s,
                                    prior=fleet.params, cfg=cfg, weight=weight)  # fmt: skip
    return out


def in_force(scope: str, outcomes: float, cfg: LiveMapConfig) -> bool:
    """Whether a scope's map is served: the fleet's always, a profile's once it has enough outcomes."""
    return scope == FLEET or outcomes >= cfg.profile_min_outcomes


def map_serve(p_prior: float, profile: str, maps: dict[str, tuple[float, float]]) -> float | None:
    """What a server of ``profile`` is served for a prior probability: through its profile's map in
    force, else the fleet's; None when no map is in force (the prior is served as it is)."""
    params = maps.get(profile) or maps.get(FLEET)
    if params is None:
        return None
    return round(float(map_apply(p_prior, params)), SERVED_DECIMALS)


def _serve_into(served: np.ndarray, idx: np.ndarray, p_prior: np.ndarray, profiles: np.ndarray,
                maps: dict[str, tuple[float, float]]) -> None:  # fmt: skip
    """``map_serve`` of the origins ``idx`` at once (each through its profile's map in force, else the
    fleet's, rounded as served; the prior as it is without a map)."""
    if not len(idx) or not maps:
        return
    for profile in np.unique(profiles[idx]).tolist():
        sel = idx[profiles[idx] == profile]
        params = maps.get(profile) or maps.get(FLEET)
        if params is not None:
            served[sel] = np.round(map_apply(p_prior[sel], params), SERVED_DECIMALS)


def live_map_replay(*, times: np.ndarray, closes: np.ndarray, profiles: np.ndarray, p_prior: np.ndarray,
                    events: np.ndarray, cfg: LiveMapConfig = LiveMapConfig(), refit_every_s: float = REPLAY_REFIT_SECONDS,
                    weight: float = 1.0) -> np.ndarray:  # fmt: skip
    """What the service would have served (one fleet, one window), replayed online: the probability
    of each origin (``times``, seconds on the fleet's clock) through the maps in force at that time.
    An outcome is known from ``closes`` (its window and the buckets that confirm a run have passed)
    and joins the maps at the first refit at or after that (refits every ``refit_every_s`` on the
    same clock, the grid starting at 0), with the service's pass (``fleet_pass``): decay, MAP fit,
    per-profile maps. An origin at a refit time is served after that refit; nothing closing after
    an origin can change what that origin is served (no look-ahead). ``weight``: how many of the
    service's outcomes each replayed one stands for (the service records one per server and 5-minute
    origin; a backtest sampling every k steps passes k, so the maps hold the counts the service
    would hold and move as fast)."""
    times = np.asarray(times, dtype=np.float64)
    profiles = np.asarray(profiles).astype(str)
    p_prior = np.asarray(p_prior, dtype=np.float64)
    events = np.asarray(events, dtype=np.float64)
    refit_at = np.ceil(np.asarray(closes, dtype=np.float64) / refit_every_s) * refit_every_s
    order = np.argsort(times, kind="stable")
    sorted_times = times[order]
    served = p_prior.copy()
    states: dict[str, MapState] = {}
    maps: dict[str, tuple[float, float]] = {}
    by_refit = np.argsort(refit_at, kind="stable")
    refits, first = np.unique(refit_at[by_refit], return_index=True)
    groups = np.split(by_refit, first[1:])
    start = 0
    for k, refit in enumerate([*refits.tolist(), math.inf]):
        stop = int(np.searchsorted(sorted_times, refit, side="left"))
        _serve_into(served, order[start:stop], p_prior, profiles, maps)  # the maps of the previous refit
        start = stop
        if math.isinf(refit):
            break
        sel = groups[k]
        states.update(fleet_pass(states, profiles[sel], p_prior[sel], events[sel], now_s=refit, cfg=cfg, weight=weight))
        maps = {scope: s.params for scope, s in states.items() if in_force(scope, s.outcomes, cfg)}
    return served
