"""Self-calibrating forecast intervals: adaptive conformal scaling of the quantile spread. Pure numpy.

The state, per series × metric × horizon band, is a pair of log corrections (lower, upper). A band
is served the sum of its own correction and those of every nearer band (``served_log_factors``):
the 0–30 min band its own, 30 min–2 h the first two, 2–8 h all three. Serving scales each
quantile's distance from p50 by exp(served log factor) — the lower factor for levels below 0.5,
the upper one above — so all 7 model quantiles move together, stay sorted, and a skewed error
distribution gets a different correction on each side.

Why a cascade: a 2–8 h target is known 2–8 h after its forecast was made, so a band's own misses
are old news by the time they arrive, and more so the further out the band. Left to its own
misses, the far band widened after a burst had passed and narrowed before the next one: on the
real development series (data/nab + data/nab_extra) that cost 3–6 % pinball on the spiky
families while coverage barely moved. Letting each band follow the correction of the band nearer
to it (whose evidence is fresher) and learn only a small correction of its own keeps the coverage
fix and loses no measurable pinball (see the README, "Self-calibrating intervals").

Update (adaptive conformal inference, Gibbs & Candès 2021, one rule per side and band): after n
targets of band b were observed with ``below`` of them under the served p10 and ``above`` over the
served p90,

    c_lower[b] ← c_lower[b] + γ_b · n_eff · (below/n − 0.1)
    c_upper[b] ← c_upper[b] + γ_b · n_eff · (above/n − 0.1)

with n_eff = min(n, N_CAP): each observed target is one ACI step, but the targets of one forecast
are strongly dependent (one trajectory), so a single pass may not move the state by more than
N_CAP steps. γ falls with the band (GAMMAS). Served factors stay within [1/MAX_FACTOR, MAX_FACTOR].
Since the misses counted are those of the served (calibrated) interval, the long-run miss rate per
side tends to 10 %, i.e. coverage of p10–p90 to 80 %, whatever the raw model's miscalibration.

A series with no state starts from a prior: the mean correction of series of the same profile
(else of the whole fleet) for that metric and band, else 0 (the raw model).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from forecasting.engine import spec
from forecasting.engine.spec import BAND_STEPS

BAND_OF_STEP = np.asarray(spec.BAND_OF_STEP, dtype=np.int64)  # spec's, as an index array
STEP_MIX = np.asarray(spec.STEP_MIX, dtype=np.float64)  # (bands, HORIZON): each band's share of each step

TARGET_MISS = 0.1  # per side: p10 and p90 → 80 % inside
# Per-target ACI step on each band's own log correction: the far bands mostly follow the nearer
# ones (tuned on data/nab + data/nab_extra only; data/holdout played no part).
GAMMAS: tuple[float, ...] = (0.015, 0.01, 0.002)
N_CAP = 12  # at most this many targets' worth of steps per update (tuned with GAMMAS)
MAX_FACTOR = 10.0
LOWER, UPPER = 0, 1


def identity_state(bands: int = len(BAND_STEPS)) -> np.ndarray:
    """Log corrections (bands, 2) of an uncalibrated series: every factor 1."""
    return np.zeros((bands, 2))


def gamma_of_band(band: int | np.ndarray) -> np.ndarray:
    """The ACI step of band index (or indices) ``band``."""
    return np.asarray(GAMMAS, dtype=np.float64)[np.asarray(band)]


def updated_log_factors(
    log_factors: np.ndarray,
    n: np.ndarray,
    below: np.ndarray,
    above: np.ndarray,
    *,
    gamma: float | np.ndarray,
    n_cap: int = N_CAP,
) -> np.ndarray:
    """One ACI step for many states at once: own log corrections (..., 2), counts (...) and the
    step ``gamma`` of each state's band (broadcast against the counts) → (..., 2).

    States with n = 0 are unchanged."""
    n = np.asarray(n, dtype=np.float64)
    safe_n = np.maximum(n, 1.0)
    n_eff = np.minimum(n, n_cap)
    miss = np.stack([np.asarray(below, dtype=np.float64), np.asarray(above, dtype=np.float64)], axis=-1)
    step = np.asarray(gamma, dtype=np.float64)[..., None] * n_eff[..., None] * (miss / safe_n[..., None] - TARGET_MISS)
    bound = math.log(MAX_FACTOR)
    return np.clip(np.asarray(log_factors, dtype=np.float64) + step, -bound, bound)


def served_log_factors(own: np.ndarray) -> np.ndarray:
    """Served log factors (..., bands, 2) from the bands' own corrections (..., bands, 2): each
    band gets its own plus every nearer band's (the cascade in the module docstring)."""
    bound = math.log(MAX_FACTOR)
    return np.clip(np.cumsum(np.asarray(own, dtype=np.float64), axis=-2), -bound, bound)


def band_counts(y: np.ndarray, p10: np.ndarray, p90: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """(bands, 3) counts n, below, above of the observed targets y (H,) against a served interval;
    ``observed`` (H,) masks the targets that count (known and not yet used)."""
    mask = observed & np.isfinite(y)
    out = np.zeros((len(BAND_STEPS), 3))
    band = BAND_OF_STEP[: len(y)]
    yv = np.where(mask, y, 0.0)
    for col, hit in enumerate((mask, mask & (yv < p10), mask & (yv > p90))):
        out[:, col] = np.bincount(band, weights=hit.astype(np.float64), minlength=len(BAND_STEPS))[: len(BAND_STEPS)]
    return out


def apply_calibration(
    quantiles: np.ndarray,
    levels: Iterable[float],
    log_factors: np.ndarray,
    *,
    lower: float | np.ndarray = 0.0,
    upper: float | np.ndarray = math.inf,
) -> np.ndarray:
    """Scale every quantile's distance from the median by its side's factor in its step's band
    (log factors ramped linearly from one band's to the next across each band edge: spec.STEP_MIX).

    quantiles (..., H, K) at ``levels`` (K, one of them 0.5); log_factors (..., bands, 2), the
    served ones (``served_log_factors`` of the states), with the same leading shape; lower/upper
    broadcast against (..., H). Sorted input stays sorted."""
    q = np.asarray(quantiles, dtype=np.float64)
    tau = np.asarray(tuple(levels), dtype=np.float64)
    median = int(np.argmin(np.abs(tau - 0.5)))
    horizon = q.shape[-2]
    log_by_band = np.swapaxes(np.asarray(log_factors, dtype=np.float64), -1, -2)  # (..., 2, bands)
    per_step = np.exp(np.swapaxes(log_by_band @ STEP_MIX[:, :horizon], -1, -2))  # (..., H, 2)
    side = np.where(tau < 0.5, LOWER, UPPER)  # (K,)
    factor = per_step[..., side]  # (..., H, K)
    med = q[..., median : median + 1]
    out = med + factor * (q - med)
    lo = np.asarray(lower, dtype=np.float64)[..., None]
    hi = np.asarray(upper, dtype=np.float64)[..., None]
    return np.clip(out, lo, hi)


class Priors:
    """The priors of new series, from the states of known ones: the mean log corrections (bands, 2)
    of each profile's states, and of all states. Built once per pass (not per new series: a
    first pass over a 1,000-server fleet asks for 4,000 priors)."""

    def __init__(self, states: Iterable[tuple[str, np.ndarray]]) -> None:
        groups: dict[str, list[np.ndarray]] = {}
        for profile, state in states:
            groups.setdefault(profile, []).append(np.asarray(state, dtype=np.float64))
        self._by_profile = {p: np.mean(np.stack(v), axis=0) for p, v in groups.items()}
        every = [s for v in groups.values() for s in v]
        self._fleet = np.mean(np.stack(every), axis=0) if every else identity_state()

    def of(self, profile: str) -> np.ndarray:
        """Mean over states of ``profile``, else over all states, else identity."""
        return self._by_profile.get(profile, self._fleet).copy()


class OnlineCalibrator:
    """The backtest's calibrator of one series × metric, fed in time order without look-ahead.

    ``serve(origin, quantiles)`` first takes in every target of earlier forecasts that is known
    at ``origin`` (step h of origin o is known from o + h + 1 on, i.e. index o + h < origin) and
    not taken in yet, then returns the calibrated quantiles for this origin."""

    def __init__(self, prior: np.ndarray | None = None, *, n_cap: int = N_CAP) -> None:
        self.log_factors = identity_state() if prior is None else np.array(prior, dtype=np.float64)  # own
        self.n_cap = n_cap
        self._pending: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def _take_in(self, origin: int) -> None:
        keep = []
        for o, y, p10, p90, used in self._pending:
            known = (o + np.arange(len(y))) < origin
            fresh = known & ~used
            if fresh.any():
                counts = band_counts(y, p10, p90, fresh)
                self.log_factors = updated_log_factors(
                    self.log_factors,
                    counts[:, 0],
                    counts[:, 1],
                    counts[:, 2],
                    gamma=gamma_of_band(np.arange(len(BAND_STEPS))),
                    n_cap=self.n_cap,
                )
                used = used | fresh
            if not used.all():
                keep.append((o, y, p10, p90, used))
        self._pending = keep

    def serve(self, origin: int, quantiles: np.ndarray, levels: Iterable[float], **clip) -> np.ndarray:
        """Calibrated quantiles (H, K) for a forecast issued at ``origin``."""
        self._take_in(origin)
        return apply_calibration(quantiles, levels, self.served, **clip)

    @property
    def served(self) -> np.ndarray:
        """The log factors (bands, 2) served now."""
        return served_log_factors(self.log_factors)

    def record(self, origin: int, y: np.ndarray, p10: np.ndarray, p90: np.ndarray) -> None:
        """The served interval of the forecast at ``origin`` and its targets y (H,), to be taken in
        once each target is known."""
        self._pending.append((origin, np.asarray(y, dtype=np.float64), p10, p90, ~np.isfinite(y)))


def served_factors(log_factors: np.ndarray | None) -> dict[str, list[float]]:
    """The factors a forecast was served with (served log factors, not the own corrections), per
    band (BAND_NAMES order), as the API shows them:
    {"lower": [3], "upper": [3]}; None (a heuristic forecast) → all 1."""
    state = identity_state() if log_factors is None else np.asarray(log_factors, dtype=np.float64)
    factors = np.round(np.exp(state), 4)
    return {"lower": factors[:, LOWER].tolist(), "upper": factors[:, UPPER].tolist()}
