"""The event model: P(an incident starts within W) learned for the incident of engine.incidents.

Plain numpy at inference (the web and worker processes import no scikit-learn); training may use
scikit-learn (``fit_*`` import it lazily). A fitted model is a JSON-able dict, stored as
``event_model.json`` in the model folder (engine.folders), never pickled.

Features of one server at one origin (``event_features``), for the scored metrics of the server:

* context, per metric, in units of the series' own variability s (standard deviation of the 24 h
  context): distance of the critical limit c to the last value, to the last hour's maximum and to
  the context's maximum ((c − x) / s, the smallest over metrics); the share of context buckets at
  or above c (crossings) and within half the gap between median and c (near-misses); threshold
  incidents that started in the context; the last hour's trend (per hour, in s); level (last / c);
  whether an incident is going on at the origin;
* the forecast (the served, calibrated quantiles), per window: distance of c to the window's
  maximum p50, p90 and top quantile, in s; the current method's bound (probability.exceedance,
  max over the window's steps) as log-odds;
* recent states: share of the last hour in critical_issue, offline, heavy_load, recovery;
  critical_issue share and reported-incident starts over the context; whether the series has
  states at all;
* the profile (one-hot);
* the same hours of the previous day, per window (the 24 h context holds them): distance of c to
  the maximum over [origin − 1 day, origin − 1 day + W), in s, and whether a threshold incident
  started there (daily-periodic series repeat yesterday's peak);
* the server's own incident history, per window: the share of its earlier, closed windows in
  which an incident started (weighted by age, 72 h half-life, smoothed toward the development
  rate; a log-odds ratio) and how many hours of such history there are (``history_inputs``; the
  service keeps the decayed sums from its resolved outcomes, the backtest from the labels).

A stored model names the features it was fitted on (a subset of ``FEATURES``, in any order; a
window may have its own list), so a folder fitted before an input was added keeps serving with the
inputs it knows, and each window keeps only the inputs that helped it on development series.

Per-metric figures are reduced over the scored metrics to the most dangerous one (min distance,
max share). One model per window ("30m", "8h"). Learners: ``logistic`` (L2-regularised logistic
regression on standardised features, fitted by Newton's method here), ``trees`` (scikit-learn
gradient-boosted trees, exported as node arrays and evaluated in numpy) and ``blend`` (the mean of
both probabilities).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from forecasting.engine.incidents import DEFAULT_MIN_BUCKETS, WINDOWS, run_lengths_ahead
from forecasting.engine.probability import exceedance, limits_batch
from forecasting.engine.spec import CONTEXT, PROFILES, STATE_INDEX, STEPS_PER_DAY, TARGETS

FORMAT = "tftsite-event-model/1"
HOUR = 12  # buckets
Z_CLIP = 20.0
_CONTEXT_FEATURES = (
    "z_last",
    "z_hour_max",
    "z_context_max",
    "share_above",
    "share_near",
    "log_starts_context",
    "trend_per_hour",
    "level",
    "ongoing",
)
_FORECAST_FEATURES = ("z_p50_max", "z_p90_max", "z_top_max", "bound_logit")
_STATE_FEATURES = (
    "hour_critical",
    "hour_offline",
    "hour_heavy",
    "hour_recovery",
    "context_critical",
    "log_reported_context",
    "has_states",
)
_SEASON_FEATURES = ("z_season_max", "season_start")
_HISTORY_FEATURES = ("history_lor", "history_hours")
FEATURES: tuple[str, ...] = (
    *_CONTEXT_FEATURES,
    *_FORECAST_FEATURES,
    *_STATE_FEATURES,
    *(f"profile_{p}" for p in PROFILES),
    *_SEASON_FEATURES,
    *_HISTORY_FEATURES,
)
_MIN_OVER_METRICS = {"z_last", "z_hour_max", "z_context_max", "z_p50_max", "z_p90_max", "z_top_max", "z_season_max"}


LEARNERS: tuple[str, ...] = ("logistic", "trees", "blend")


class EventModelError(ValueError):
    """An event model dict that this code cannot evaluate."""


# ---------------------------------------------------------------------------------------------
# Features
def _last_observed(context: np.ndarray) -> np.ndarray:
    """(N, M) the last non-NaN value of each context (N, T, M); NaN where none."""
    ok = ~np.isnan(context)
    idx = context.shape[1] - 1 - np.argmax(ok[:, ::-1, :], axis=1)
    last = np.take_along_axis(context, idx[:, None, :], axis=1)[:, 0, :]
    return np.where(ok.any(axis=1), last, np.nan)


def _nan_median(context: np.ndarray) -> np.ndarray:
    """(N, M) median over axis 1 ignoring NaN; np.nanmedian only for the columns with gaps (it
    goes row by row, 20× slower than np.median on a full fleet)."""
    out = np.median(context, axis=1)
    gaps = np.isnan(out)
    if gaps.any():
        out[gaps] = np.nanmedian(np.moveaxis(context, 1, -1)[gaps], axis=-1)
    return out


def _hour_trend(context: np.ndarray) -> np.ndarray:
    """(N, M) least-squares slope over the last hour × HOUR (change per hour), NaN-tolerant."""
    win = context[:, -HOUR:, :]
    t = np.arange(HOUR, dtype=np.float64)[None, :, None]
    ok = ~np.isnan(win)
    n = ok.sum(axis=1)
    with np.errstate(all="ignore"):
        tm = np.where(ok, t, 0).sum(axis=1) / n
        ym = np.nansum(win, axis=1) / n
        dt = np.where(ok, t - tm[:, None, :], 0.0)
        slope = (dt * np.nan_to_num(win - ym[:, None, :])).sum(axis=1) / (dt * dt).sum(axis=1)
    return np.where(n >= 3, slope * HOUR, 0.0)


def _context_features(context: np.ndarray, critical: np.ndarray, min_buckets: int) -> dict[str, np.ndarray]:
    """Per-metric (N, M) context features (see the module docstring)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: metrics a series lacks
        s = np.nanstd(context, axis=1)
        s = np.maximum(np.nan_to_num(s, nan=0.0), 1e-3 * np.abs(critical) + 1e-6)
        last = _last_observed(context)
        hour_max = np.nanmax(context[:, -HOUR:, :], axis=1)
        ctx_max = np.nanmax(context, axis=1)
        median = _nan_median(context)
    filled = np.nan_to_num(context, nan=-np.inf)
    above = filled >= critical[:, None, :]
    near = filled >= (median + 0.5 * (critical - median))[:, None, :]
    observed = np.maximum((~np.isnan(context)).sum(axis=1), 1)
    ahead = run_lengths_ahead(np.moveaxis(above, 1, -1))  # (N, M, T)
    prev = np.concatenate([np.zeros_like(above[:, :1]), above[:, :-1]], axis=1)
    start_at = (np.moveaxis(ahead, -1, 1) >= min_buckets) & ~prev  # (N, T, M) a confirmed run starts here
    starts = start_at.sum(axis=1)

    def z(x: np.ndarray) -> np.ndarray:
        return np.clip(np.nan_to_num((critical - x) / s, nan=Z_CLIP), -Z_CLIP, Z_CLIP)

    return {
        "scale": s,
        "start_at": start_at,
        "z_last": z(last),
        "z_hour_max": z(hour_max),
        "z_context_max": z(ctx_max),
        "share_above": above.sum(axis=1) / observed,
        "share_near": near.sum(axis=1) / observed,
        "log_starts_context": np.log1p(starts),
        "trend_per_hour": np.clip(np.nan_to_num(_hour_trend(context) / s), -Z_CLIP, Z_CLIP),
        "level": np.clip(np.nan_to_num(last / np.maximum(critical, 1e-9)), 0.0, 5.0),
        "ongoing": above[:, -1, :].astype(np.float64),
    }


def _forecast_features(quantiles: np.ndarray, levels: Sequence[float], critical: np.ndarray, s: np.ndarray,
                       steps: int) -> dict[str, np.ndarray]:  # fmt: skip
    """Per-metric (N, M) forecast features over the first ``steps`` forecast steps."""
    q = np.asarray(quantiles[:, :steps], dtype=np.float64)  # (N, W, M, K)
    levels = list(levels)
    top = q[..., -1].max(axis=1)
    p50 = q[..., int(np.argmin(np.abs(np.array(levels) - 0.5)))].max(axis=1)
    p90 = q[..., int(np.argmin(np.abs(np.array(levels) - 0.9)))].max(axis=1)
    bound = exceedance(q, np.array(levels), critical[:, None, :]).max(axis=1)
    bound = np.clip(bound, 1e-6, 1 - 1e-6)

    def z(x: np.ndarray) -> np.ndarray:
        return np.clip(np.nan_to_num((critical - x) / s, nan=Z_CLIP), -Z_CLIP, Z_CLIP)

    return {
        "z_p50_max": z(p50),
        "z_p90_max": z(p90),
        "z_top_max": z(top),
        "bound_logit": np.log(bound / (1 - bound)),
    }


def _season_features(context: np.ndarray, critical: np.ndarray, ctx: dict[str, np.ndarray],
                     steps: int) -> dict[str, np.ndarray]:  # fmt: skip
    """Per-metric (N, M) features of the window's hours one day before: [T − day, T − day + steps)
    of the context (T buckets; zero-information values when the context is shorter than a day)."""
    lo = context.shape[1] - STEPS_PER_DAY
    n, _, m = context.shape
    if lo < 0:
        return {"z_season_max": np.full((n, m), Z_CLIP), "season_start": np.zeros((n, m))}
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        peak = np.nanmax(context[:, lo : lo + steps, :], axis=1)
    z = np.clip(np.nan_to_num((critical - peak) / ctx["scale"], nan=Z_CLIP), -Z_CLIP, Z_CLIP)
    return {"z_season_max": z, "season_start": ctx["start_at"][:, lo : lo + steps, :].any(axis=1).astype(np.float64)}


def _state_features(states: np.ndarray) -> dict[str, np.ndarray]:
    """(N,) features of the states (N, T) before the origin (-1 = no state)."""
    st = np.asarray(states, dtype=np.int64)
    hour = st[:, -HOUR:]

    def share(block: np.ndarray, state: str) -> np.ndarray:
        return (block == STATE_INDEX[state]).mean(axis=1)

    crit = st == STATE_INDEX["critical_issue"]
    prev = np.concatenate([np.zeros_like(crit[:, :1]), crit[:, :-1]], axis=1)
    return {
        "hour_critical": share(hour, "critical_issue"),
        "hour_offline": share(hour, "offline"),
        "hour_heavy": share(hour, "heavy_load"),
        "hour_recovery": share(hour, "recovery"),
        "context_critical": crit.mean(axis=1),
        "log_reported_context": np.log1p((crit & ~prev).sum(axis=1)),
        "has_states": (st >= 0).any(axis=1).astype(np.float64),
    }


def event_features(
    context: np.ndarray,
    states: np.ndarray,
    quantiles: np.ndarray,
    levels: Sequence[float],
    critical: np.ndarray,
    profiles: Sequence[str],
    *,
    scored: np.ndarray | None = None,
    min_buckets: int = DEFAULT_MIN_BUCKETS,
    windows: dict[str, int] | None = None,
    history: Mapping[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Window name → (N, len(FEATURES)) features of N servers at their origin.

    ``context`` (N, T, M) bucket means before the origin (NaN gaps), ``states`` (N, T) state
    indices (-1 none), ``quantiles`` (N, H, M, K) the served forecast at ``levels``,
    ``critical`` (N, M) the served critical limits, ``profiles`` (N,), ``scored`` (N, M) bool: the
    metrics that count (default: every metric with an observed value), ``history`` window → (N, 2)
    the servers' own incident history (``history_inputs``; default none: zeros)."""
    context = np.asarray(context, dtype=np.float64)
    critical = np.asarray(critical, dtype=np.float64)
    if scored is None:
        scored = ~np.isnan(context).all(axis=1)
    scored = np.asarray(scored, dtype=bool)
    ctx = _context_features(context, critical, min_buckets)
    st = _state_features(states)
    prof = np.array([[p == name for name in PROFILES] for p in profiles], dtype=np.float64).reshape(-1, len(PROFILES))
    out = {}
    for name, steps in (windows or WINDOWS).items():
        per_metric = {
            **ctx,
            **_forecast_features(quantiles, levels, critical, ctx["scale"], steps),
            **_season_features(context, critical, ctx, steps),
        }
        own = np.zeros((len(prof), 2)) if history is None or name not in history else np.asarray(history[name])
        cols = {**{f"profile_{p}": prof[:, i] for i, p in enumerate(PROFILES)}, **st,
                "history_lor": own[:, 0], "history_hours": own[:, 1]}  # fmt: skip
        for feature in (*_CONTEXT_FEATURES, *_FORECAST_FEATURES, *_SEASON_FEATURES):
            v = per_metric[feature]
            if feature in _MIN_OVER_METRICS:
                cols[feature] = np.where(scored, v, np.inf).min(axis=1)
            else:
                cols[feature] = np.where(scored, v, -np.inf).max(axis=1)
        x = np.column_stack([cols[f] for f in FEATURES])
        out[name] = np.nan_to_num(x, nan=0.0, posinf=Z_CLIP, neginf=-Z_CLIP)
    return out


# ---------------------------------------------------------------------------------------------
# The server's own incident history (from the outcomes of its earlier, closed windows)
HISTORY_HALF_LIFE_HOURS = 72.0  # as the live map's outcome counts
HISTORY_PRIOR_HOURS = 2.0  # hours of windows at the prior rate that smooth a short history
HISTORY_PRIOR: dict[str, float] = {"30m": 0.006, "8h": 0.05}  # the development sets' rates (MODEL_CARD)


def history_keep(elapsed_seconds: float) -> float:
    """The share of a history's decayed sums kept after ``elapsed_seconds`` (none lost to clock skew)."""
    return 0.5 ** (max(float(elapsed_seconds), 0.0) / 3600.0 / HISTORY_HALF_LIFE_HOURS)


def history_inputs(events_hours: np.ndarray, hours: np.ndarray, window: str) -> np.ndarray:
    """(N, 2) history inputs from decayed sums over a server's closed windows of one length (each
    window counts its origin's spacing in hours; ``events_hours`` those with an incident): the
    log-odds ratio of its smoothed incident share to HISTORY_PRIOR, and log1p of the hours of
    history. No history gives (0, 0)."""
    prior = HISTORY_PRIOR[window]
    events_hours, hours = np.asarray(events_hours, dtype=np.float64), np.asarray(hours, dtype=np.float64)
    share = (events_hours + HISTORY_PRIOR_HOURS * prior) / (hours + HISTORY_PRIOR_HOURS)
    share = np.clip(share, 1e-6, 1 - 1e-6)
    ratio = np.log(share / (1 - share)) - math.log(prior / (1 - prior))
    return np.column_stack([ratio, np.log1p(hours)])


def history_share(inputs: np.ndarray, window: str) -> np.ndarray:
    """(N,) the smoothed incident share that history inputs (N, 2) carry (the inverse of their
    log-odds ratio): the server's own base rate of incidents in a window, HISTORY_PRIOR without history."""
    prior = HISTORY_PRIOR[window]
    logit = np.asarray(inputs, dtype=np.float64)[:, 0] + math.log(prior / (1 - prior))
    return 1.0 / (1.0 + np.exp(-logit))


def series_history(labels: np.ndarray, *, every: int, steps: int, min_buckets: int = DEFAULT_MIN_BUCKETS,
                   half_life_hours: float = HISTORY_HALF_LIFE_HOURS) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(events_hours, hours) at each of one series' origins ``every`` steps apart, in time order,
    from the incident labels of the earlier origins whose window and confirmation closed before it
    (what the service's resolved outcomes hold then), decayed by age as the service decays them."""
    labels = np.asarray(labels, dtype=np.float64)
    n, weight = len(labels), every / HOUR  # hours each origin stands for
    lag = -(-(steps + min_buckets) // every)  # origins until a window is closed and confirmed
    r = 0.5 ** (weight / half_life_hours)
    events, count = np.zeros(n), np.zeros(n)
    e = c = 0.0
    for j in range(n):  # decayed sums over origins ≤ j, at j's time
        e, c = e * r + labels[j] * weight, c * r + weight
        events[j], count[j] = e, c
    i = np.arange(n) - lag
    closed = i >= 0
    at = np.maximum(i, 0)
    return np.where(closed, events[at] * r**lag, 0.0), np.where(closed, count[at] * r**lag, 0.0)


# ---------------------------------------------------------------------------------------------
# Learners: fitting
def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


def fit_logistic(x: np.ndarray, y: np.ndarray, *, weight: np.ndarray | None = None, l2: float = 1.0,
                 iterations: int = 50) -> dict:  # fmt: skip
    """L2-regularised logistic regression (Newton's method) on standardised features: a dict
    {"learner": "logistic", "mean", "std", "coef", "intercept"} that ``predict`` evaluates. The
    penalty ``l2`` is per unit of total sample weight × 1e-3 (scale-free across data sizes)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    w = np.ones(len(y)) if weight is None else np.asarray(weight, dtype=np.float64)
    w = w / w.mean()
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std = np.where(std > 1e-9, std, 1.0)
    xs = np.column_stack([np.ones(len(x)), (x - mean) / std])
    beta = np.zeros(xs.shape[1])
    prior = np.clip(np.average(y, weights=w), 1e-4, 1 - 1e-4)
    beta[0] = math.log(prior / (1 - prior))
    penalty = np.full(xs.shape[1], l2 * 1e-3 * w.sum())
    penalty[0] = 0.0

    def objective(b: np.ndarray) -> float:
        z = xs @ b
        return float(np.sum(w * (np.logaddexp(0.0, z) - y * z)) + 0.5 * np.sum(penalty * b * b))

    current = objective(beta)
    for _ in range(iterations):
        p = _sigmoid(xs @ beta)
        grad = xs.T @ (w * (p - y)) + penalty * beta
        hess = (xs * (w * p * (1 - p))[:, None]).T @ xs + np.diag(penalty + 1e-6)
        step = np.linalg.solve(hess, grad)
        scale = 1.0  # backtracking: a full Newton step can overshoot where the classes nearly separate
        while scale > 1e-4 and objective(beta - scale * step) > current:
            scale /= 2
        beta = beta - scale * step
        previous, current = current, objective(beta)
        if previous - current < 1e-9 * max(1.0, abs(previous)):
            break
    return {
        "learner": "logistic",
        "mean": mean.tolist(),
        "std": std.tolist(),
        "intercept": float(beta[0]),
        "coef": beta[1:].tolist(),
    }


def fit_trees(x: np.ndarray, y: np.ndarray, *, weight: np.ndarray | None = None, trees: int = 150, depth: int = 3,
              rate: float = 0.05, leaf: int = 50, seed: int = 0) -> dict:  # fmt: skip
    """Gradient-boosted trees (scikit-learn, imported here only), exported as node arrays; ``leaf``
    is the fewest samples a leaf holds."""
    from sklearn.ensemble import GradientBoostingClassifier

    y = np.asarray(y, dtype=np.float64)
    if y.min() == y.max():  # one class only (no incident in the data): a constant, no trees
        prior = float(np.clip(y.mean(), 1e-4, 1 - 1e-4))
        return {"learner": "trees", "init": math.log(prior / (1 - prior)), "rate": rate, "trees": []}
    clf = GradientBoostingClassifier(
        n_estimators=trees, max_depth=depth, learning_rate=rate, subsample=0.8, min_samples_leaf=leaf, random_state=seed
    )
    clf.fit(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.int64), sample_weight=weight)
    init = float(clf._raw_predict_init(np.asarray(x[:1], dtype=np.float64))[0, 0])
    exported = []
    for est in clf.estimators_[:, 0]:
        t = est.tree_
        exported.append({
            "left": t.children_left.tolist(),
            "right": t.children_right.tolist(),
            "feature": t.feature.tolist(),
            "threshold": np.round(t.threshold, 9).tolist(),
            "value": np.round(t.value[:, 0, 0], 9).tolist(),
        })  # fmt: skip
    return {"learner": "trees", "init": init, "rate": rate, "trees": exported}


# ---------------------------------------------------------------------------------------------
# Inference (numpy only)
def _trees_raw(params: dict, x: np.ndarray) -> np.ndarray:
    raw = np.full(len(x), float(params["init"]))
    rows = np.arange(len(x))
    for tree in params["trees"]:
        left = np.asarray(tree["left"], dtype=np.int64)
        right = np.asarray(tree["right"], dtype=np.int64)
        feature = np.asarray(tree["feature"], dtype=np.int64)
        threshold = np.asarray(tree["threshold"], dtype=np.float64)
        node = np.zeros(len(x), dtype=np.int64)
        for _ in range(64):
            leaf = left[node] < 0
            if leaf.all():
                break
            go_left = x[rows, np.maximum(feature[node], 0)] <= threshold[node]
            node = np.where(leaf, node, np.where(go_left, left[node], right[node]))
        raw += float(params["rate"]) * np.asarray(tree["value"], dtype=np.float64)[node]
    return raw


def predict(params: dict, x: np.ndarray) -> np.ndarray:
    """P(event) for features x (N, len(FEATURES)) with one window's fitted parameters."""
    x = np.asarray(x, dtype=np.float64)
    learner = params.get("learner")
    if learner == "logistic":
        z = (x - np.asarray(params["mean"])) / np.asarray(params["std"]) @ np.asarray(params["coef"])
        return _sigmoid(z + float(params["intercept"]))
    if learner == "trees":
        return _sigmoid(_trees_raw(params, x))
    if learner == "blend":  # the mean of its parts' probabilities
        return np.mean([predict(part, x) for part in params["parts"]], axis=0)
    raise EventModelError(f"unknown learner {learner!r}")


def check_model(model: object) -> dict:
    """The model dict if this code can evaluate it; EventModelError otherwise."""
    if not isinstance(model, dict) or model.get("format") != FORMAT:
        raise EventModelError(f"not a {FORMAT} model")
    windows = model.get("windows")
    if not isinstance(windows, dict) or not all(w in windows for w in WINDOWS):
        raise EventModelError(f"model lacks windows {list(WINDOWS)}")
    for params in windows.values():
        if not isinstance(params, dict) or params.get("learner") not in LEARNERS:
            raise EventModelError("a window's learner is missing or unknown")
        features = list(window_features(model, params))
        if not features or len(set(features)) != len(features) or not set(features) <= set(FEATURES):
            raise EventModelError("a window's features are not a subset of this code's FEATURES")
    return model


def window_features(model: dict, params: dict) -> list[str]:
    """The inputs one window was fitted on: its own list when it has one, else the model's."""
    return list(params.get("features") or model.get("features", ()))


def model_probabilities(model: dict, features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Window name → (N,) P(an incident starts within the window), from ``event_features`` (every
    one of FEATURES; each window reads the columns it was fitted on, in its own order)."""
    out = {}
    for name, x in features.items():
        params = model["windows"].get(name)
        if params is not None:
            out[name] = predict(params, x[:, feature_columns(window_features(model, params))])
    return out


def feature_columns(names: Sequence[str]) -> list[int]:
    """Columns of ``event_features``' matrices holding ``names``, in their order."""
    return [FEATURES.index(name) for name in names]


def new_model(windows: dict[str, dict], *, min_buckets: int, thresholds: dict, meta: dict | None = None,
              features: Sequence[str] = FEATURES) -> dict:  # fmt: skip
    """A storable event model from fitted per-window parameters (fitted on ``features``)."""
    return {
        "format": FORMAT,
        "features": list(features),
        "windows": windows,
        "min_buckets": int(min_buckets),
        "thresholds": thresholds,
        **(meta or {}),
    }


# ---------------------------------------------------------------------------------------------
# Serving
def padded_windows(windows: Sequence, context_steps: int = CONTEXT) -> tuple[np.ndarray, np.ndarray]:
    """Contexts (N, context_steps, M) float64 and states (N, context_steps) of SeriesWindows, the
    most recent buckets right-aligned, NaN / -1 before a short history."""
    n = len(windows)
    values = np.full((n, context_steps, len(TARGETS)), np.nan)
    states = np.full((n, context_steps), -1, dtype=np.int64)
    for i, w in enumerate(windows):
        v = np.asarray(w.values, dtype=np.float64)[-context_steps:]
        values[i, context_steps - len(v) :] = v
        st = np.asarray(w.states)[-context_steps:]
        states[i, context_steps - len(st) :] = st
    return values, states


def serve_event_probabilities(
    model: dict,
    *,
    windows: Sequence,
    quantiles: np.ndarray,
    levels: Sequence[float],
    thresholds: dict | None = None,
    critical: np.ndarray | None = None,
    history: Mapping[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Window ("30m", "8h") → (N,) P(an incident starts within it) for N servers at their origin:
    ``windows`` their SeriesWindows (the context the forecast was made from), ``quantiles``
    (N, H, M, K) the served (calibrated) forecast at ``levels``, and the critical limits in force:
    ``critical`` (N, M) when the caller has them, else from ``thresholds`` (probability.limits_batch),
    and the servers' own incident history (window → (N, 2) ``history_inputs``; default none).
    What the service stores as prob_30m / prob_8h."""
    context, states = padded_windows(windows)
    if critical is None:
        _, critical = limits_batch(context, thresholds, TARGETS)
    feats = event_features(
        context,
        states,
        quantiles,
        levels,
        critical,
        [w.profile for w in windows],
        min_buckets=int(model.get("min_buckets", DEFAULT_MIN_BUCKETS)),
        history=history,
    )
    return model_probabilities(model, feats)
