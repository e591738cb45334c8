"""What an incident is, defined once. Pure numpy, no Django.

Two kinds of incident, both on the 5-minute grid:

* **threshold incident** — the served critical limit of a metric (``probability.limits_batch``:
  absolute, or a multiple of the server's own level over its context, never below the rule's
  floor) is reached by the bucket mean for at least ``min_buckets`` consecutive buckets (the
  service reads ``TFT_INCIDENT_MIN_BUCKETS``, default 2: one noisy bucket is not an incident). The
  incident *starts* at the first bucket of such a run; a run already going on at the origin
  (its previous bucket also at or above the limit) does not start in the window.
* **reported incident** — a bucket whose (dominant) state is in ``incident_states``
  (``critical_issue``; ``offline`` too when configured). It starts at a bucket in such a state
  whose previous bucket is not.

``prob_30m`` / ``prob_8h`` are the probabilities that an incident of either kind *starts* within
the window [origin, origin + W) — W = ``WINDOWS["30m"]`` (6 steps) or ``WINDOWS["8h"]`` (96). A
threshold run may be confirmed (its ``min_buckets``-th bucket) after the window ends: it started
in it. Limits are judged per origin, from the context before it (what the service knew when it
served the probability).

The default relative limits of disk_io_mb_s and latency_ms are those of ``spec.DEFAULT_THRESHOLDS``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from forecasting.engine.spec import HORIZON, STATE_INDEX, STEP_MINUTES

DEFAULT_MIN_BUCKETS = 2
WINDOWS: dict[str, int] = {"30m": 30 // STEP_MINUTES, "8h": HORIZON}
REPORTED_STATES: tuple[str, ...] = ("critical_issue",)
REPORTED_STATES_WITH_OFFLINE: tuple[str, ...] = ("critical_issue", "offline")
KINDS: tuple[str, ...] = ("threshold", "reported", "incident")  # "incident": either kind
DEFINITION = {
    "threshold": "the served critical limit (absolute, or relative to the server's own context) reached by the "
    "5-minute mean for at least min_buckets consecutive buckets; starts at the run's first bucket",
    "reported": "a bucket whose dominant state is an incident state (critical_issue; offline when configured); "
    "starts where the previous bucket is not",
    "incident": "an incident of either kind starts within the window [origin, origin + W)",
}


def run_lengths_ahead(above: np.ndarray) -> np.ndarray:
    """For a boolean array (..., T): at each t, how many consecutive True values start at t."""
    above = np.asarray(above, dtype=bool)
    out = np.zeros(above.shape, dtype=np.int64)
    run = np.zeros(above.shape[:-1], dtype=np.int64)
    for t in range(above.shape[-1] - 1, -1, -1):
        run = np.where(above[..., t], run + 1, 0)
        out[..., t] = run
    return out


def threshold_incident_buckets(values: np.ndarray, critical: float | np.ndarray, min_buckets: int) -> np.ndarray:
    """(T,) or (T, M) values against a fixed limit: True at buckets that belong to a run of at
    least ``min_buckets`` consecutive buckets at or above ``critical`` (NaN = below)."""
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        above = np.nan_to_num(v, nan=-np.inf) >= critical
    axis_last = np.moveaxis(above, 0, -1)
    ahead = run_lengths_ahead(axis_last)
    behind = run_lengths_ahead(axis_last[..., ::-1])[..., ::-1]
    return np.moveaxis(ahead + behind - 1 >= min_buckets, -1, 0) & above


def threshold_starts(
    values: np.ndarray, critical: np.ndarray, origins: np.ndarray, steps: int, *, min_buckets: int = DEFAULT_MIN_BUCKETS
) -> np.ndarray:
    """(n,) does a threshold incident start within [o, o + steps) for each origin o?

    ``values`` (T, M) bucket means (NaN where missing), ``critical`` (n, M) the limits served at
    each origin, ``origins`` (n,) bucket indices. Buckets past the end of the series count as
    missing (a run cut by the end is not confirmed)."""
    y = np.asarray(values, dtype=np.float64)
    origins = np.asarray(origins, dtype=np.int64)
    k = max(int(min_buckets), 1)
    idx = origins[:, None] + np.arange(-1, steps + k - 1)[None, :]  # the bucket before, the window, confirmation
    inside = (idx >= 0) & (idx < len(y))
    seg = np.where(inside[:, :, None], y[np.clip(idx, 0, len(y) - 1)], np.nan)  # (n, 1 + steps + k - 1, M)
    with np.errstate(invalid="ignore"):
        above = np.nan_to_num(seg, nan=-np.inf) >= np.asarray(critical, dtype=np.float64)[:, None, :]
    ahead = run_lengths_ahead(np.moveaxis(above, 1, -1))  # (n, M, L)
    starts = (ahead[:, :, 1 : steps + 1] >= k) & ~np.moveaxis(above, 1, -1)[:, :, :steps]
    return starts.any(axis=(1, 2))


def reported_buckets(states: np.ndarray, incident_states: Iterable[str] = REPORTED_STATES) -> np.ndarray:
    """(T,) True where the bucket's state is an incident state (-1, no state, is not)."""
    codes = np.array([STATE_INDEX[s] for s in incident_states], dtype=np.int64)
    return np.isin(np.asarray(states, dtype=np.int64), codes)


def reported_starts(
    states: np.ndarray, origins: np.ndarray, steps: int, *, incident_states: Iterable[str] = REPORTED_STATES
) -> np.ndarray:
    """(n,) does a reported incident start within [o, o + steps) for each origin o?"""
    bad = reported_buckets(states, incident_states)
    origins = np.asarray(origins, dtype=np.int64)
    idx = origins[:, None] + np.arange(-1, steps)[None, :]
    inside = (idx >= 0) & (idx < len(bad))
    seg = np.where(inside, bad[np.clip(idx, 0, len(bad) - 1)], False)
    return (seg[:, 1:] & ~seg[:, :-1]).any(axis=1)


def incident_labels(
    values: np.ndarray,
    states: np.ndarray,
    critical: np.ndarray,
    origins: np.ndarray,
    *,
    min_buckets: int = DEFAULT_MIN_BUCKETS,
    incident_states: Iterable[str] = REPORTED_STATES,
    windows: dict[str, int] | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """kind ("threshold", "reported", "incident") → window name → (n,) bool: does an incident of
    that kind start within the window after each origin (see the module docstring)."""
    out: dict[str, dict[str, np.ndarray]] = {kind: {} for kind in KINDS}
    for name, steps in (windows or WINDOWS).items():
        thr = threshold_starts(values, critical, origins, steps, min_buckets=min_buckets)
        rep = reported_starts(states, origins, steps, incident_states=incident_states)
        out["threshold"][name] = thr
        out["reported"][name] = rep
        out["incident"][name] = thr | rep
    return out
