"""Samples for the event model, its fit, and its comparison with the current method. Numpy (the
``trees`` learner imports scikit-learn when fitted; nothing here is imported by serving).

A sample is one (series, origin): the event-model features (engine.event_model) from the context
and the served forecast (blended and interval-calibrated, as backtest ``served_inputs``), the incident
labels of engine.incidents per kind and window, and the current method's probability (the
max-over-steps bound of engine.probability) for the comparison. Series are grouped by family
(``backtest.probability_family``) so that scores weigh families equally and cross-validation holds whole
series out.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from forecasting.engine import backtest as bt
from forecasting.engine import event_model as em
from forecasting.engine.incidents import DEFAULT_MIN_BUCKETS, REPORTED_STATES, WINDOWS, incident_labels
from forecasting.engine.probability import fit_isotonic, incident_probabilities, limits_batch, recalibrated
from forecasting.engine.probability_scores import family_pooled
from forecasting.engine.series import SeriesWindow
from forecasting.engine.spec import CONTEXT, DEFAULT_THRESHOLDS, HORIZON, METRICS

logger = logging.getLogger(__name__)

LEARNERS: tuple[str, ...] = ("logistic", "trees")
DEFAULT_LEARNER = "blend"  # see the model card: it won on held-out development series
EVENT_KIND = "incident"  # what the shipped model predicts: an incident of either kind starts


@dataclass
class EventSamples:
    x: dict[str, list[np.ndarray]] = field(default_factory=dict)  # window → features
    labels: dict[tuple[str, str], list[np.ndarray]] = field(default_factory=dict)  # (kind, window) → 0/1
    bound: dict[str, list[np.ndarray]] = field(default_factory=dict)  # window → current method's p
    series: list[np.ndarray] = field(default_factory=list)
    family: list[np.ndarray] = field(default_factory=list)

    def add(self, w: SeriesWindow, family: str, feats: dict, labels: dict, bound: dict) -> None:
        n = len(next(iter(feats.values())))
        for name, x in feats.items():
            self.x.setdefault(name, []).append(x)
            self.bound.setdefault(name, []).append(bound[name])
        for kind, by_window in labels.items():
            for name, e in by_window.items():
                self.labels.setdefault((kind, name), []).append(e.astype(np.float64))
        self.series.append(np.full(n, w.server, dtype=object))
        self.family.append(np.full(n, family, dtype=object))

    def arrays(self) -> dict:
        """Everything concatenated: {"x": {window}, "labels": {(kind, window)}, "bound": {window},
        "series", "family"}."""
        cat = np.concatenate
        return {
            "x": {k: cat(v) for k, v in self.x.items()},
            "labels": {k: cat(v) for k, v in self.labels.items()},
            "bound": {k: cat(v) for k, v in self.bound.items()},
            "series": cat(self.series) if self.series else np.zeros(0, dtype=object),
            "family": cat(self.family) if self.family else np.zeros(0, dtype=object),
        }


@dataclass(frozen=True)
class SampleConfig:
    thresholds: Mapping[str, dict] = field(default_factory=lambda: DEFAULT_THRESHOLDS)
    min_buckets: int = DEFAULT_MIN_BUCKETS
    incident_states: tuple[str, ...] = REPORTED_STATES
    every: int = bt.PROB_EVERY
    blend: Mapping | None = None  # the folder's blend.json: the forecast is served blended (None: the model alone)


def sample_origins(n_steps: int, part: str, every: int, fraction: float) -> np.ndarray:
    """Origins of the test part / the training part (backtest._probability_origins) or "all"."""
    if part == "all":
        return np.arange(CONTEXT, n_steps - HORIZON + 1, every, dtype=np.int64)
    return bt._probability_origins(n_steps, part, every, fraction)


def series_samples(w: SeriesWindow, scored: Sequence[str], origins: np.ndarray, q: np.ndarray, levels,
                   cfg: SampleConfig) -> tuple[dict, dict, dict]:  # fmt: skip
    """One series at its origins: (features by window, labels by kind and window, the current
    method's probability — the calibrated bound — by window), from what serving sees
    (backtest.served_inputs)."""
    cols = [METRICS.index(m) for m in scored]
    setup = bt.ProbabilitySetup(tuple(levels), cfg.thresholds, min_buckets=cfg.min_buckets, blend=cfg.blend)
    context, states, critical, served = bt.served_inputs(w, cols, origins, q, setup)
    mask = np.zeros((len(origins), len(METRICS)), dtype=bool)
    mask[:, cols] = True
    feats = em.event_features(
        context, states, served, levels, critical, [w.profile] * len(origins), scored=mask, min_buckets=cfg.min_buckets,
        history=bt.incident_history(w, cols, origins, setup),
    )
    labels = incident_labels(
        w.values[:, cols].astype(np.float64), w.states, critical[:, cols], origins,
        min_buckets=cfg.min_buckets, incident_states=cfg.incident_states,
    )  # fmt: skip
    probs = incident_probabilities(served[:, :, cols], np.array(levels), critical[:, cols])
    return feats, labels, {"30m": probs["prob_30m"], "8h": probs["prob_8h"]}


def event_samples(
    series: list[SeriesWindow],
    forecaster,
    *,
    metrics=None,
    part: str = "all",
    fraction: float = bt.TEST_FRACTION,
    cfg: SampleConfig | None = None,
    every: Mapping[str, int] | None = None,
) -> dict:
    """Samples (``EventSamples.arrays``) of every series at origins every ``cfg.every`` steps (or
    ``every[server]``) of ``part`` ("all", "train" or "test", as the backtest's probability evaluation)."""
    cfg = cfg or SampleConfig()
    samples = EventSamples()
    scored = bt._scored_metrics(series, metrics)
    levels = tuple(forecaster.quantiles)
    for w in series:
        origins = sample_origins(len(w.values), part, (every or {}).get(w.server, cfg.every), fraction)
        if not len(origins):
            continue
        q = forecaster.predict_array([bt.context_window(w, int(o)) for o in origins])
        feats, labels, bound = series_samples(w, scored[w.server], origins, q, levels, cfg)
        samples.add(w, bt.probability_family(w, scored[w.server]), feats, labels, bound)
    out = samples.arrays()
    logger.info("event samples: %d origins of %d series", len(out["series"]), len(series))
    return out


def save_samples(path: Path, data: dict, *, fitted_on: str) -> None:
    """``event_samples``' arrays as one .npz (strings as unicode arrays: loadable without pickle)."""
    arrays = {f"x/{k}": v for k, v in data["x"].items()}
    arrays |= {f"bound/{k}": v for k, v in data["bound"].items()}
    arrays |= {f"labels/{kind}/{w}": v for (kind, w), v in data["labels"].items()}
    arrays |= {"series": data["series"].astype(str), "family": data["family"].astype(str)}
    arrays |= {"features": np.array(data.get("features", em.FEATURES)), "fitted_on": np.array(fitted_on)}
    with Path(path).open("wb") as fh:
        np.savez_compressed(fh, **arrays)


def load_samples(path: Path) -> tuple[dict, str]:
    """(arrays, what they were sampled from) saved by ``save_samples``; ``features`` names the
    columns of ``x`` (samples from before an input was added lack it); ValueError when a column is
    no input of this code."""
    with np.load(Path(path), allow_pickle=False) as z:
        features = z["features"].tolist()
        if not set(features) <= set(em.FEATURES):
            raise ValueError(f"{path}: sampled with inputs this code does not know; sample again")
        data: dict = {"x": {}, "bound": {}, "labels": {}, "series": z["series"], "family": z["family"],
                      "features": features}  # fmt: skip
        for key in z.files:
            head, _, rest = key.partition("/")
            if head in ("x", "bound"):
                data[head][rest] = z[key]
            elif head == "labels":
                kind, _, window = rest.partition("/")
                data["labels"][(kind, window)] = z[key]
        return data, str(z["fitted_on"])


# ---------------------------------------------------------------------------------------------
# Fitting and comparing
def _columns(data: dict, features: Sequence[str]) -> list[int]:
    """Columns of the samples' ``x`` holding ``features`` (``data["features"]`` names them; default
    event_model.FEATURES); ValueError naming an input the samples lack."""
    have = list(data.get("features", em.FEATURES))
    missing = [f for f in features if f not in have]
    if missing:
        raise ValueError(f"the samples lack the inputs {', '.join(missing)}; sample again")
    return [have.index(f) for f in features]


def family_weights(family: np.ndarray) -> np.ndarray:
    """Each family's samples weigh 1 / its size, normalised to mean 1 (families count equally)."""
    _, inverse, counts = np.unique(family.astype(str), return_inverse=True, return_counts=True)
    w = 1.0 / counts[inverse]
    return w / w.mean()


LEARNER_OPTIONS: dict[str, tuple[str, ...]] = {
    "logistic": ("l2",),
    "trees": ("trees", "depth", "rate", "leaf"),
    "blend": ("l2", "trees", "depth", "rate", "leaf"),  # each part takes its own
    "isotonic": (),
}
_SPEC = re.compile(r"^(?P<name>[a-z]+)(?:\((?P<options>[^()]*)\))?$")


def learner_spec(text: str) -> tuple[str, dict[str, float]]:
    """A learner and its options from "trees" or "blend(l2=30,depth=2)"; ValueError naming what is
    wrong (an unknown learner, an option it does not take, a value that is not a positive number)."""
    match = _SPEC.match(text.strip())
    if not match or match["name"] not in LEARNER_OPTIONS:
        raise ValueError(f"unknown learner {text!r}: expected one of {', '.join(LEARNER_OPTIONS)}, "
                         f"optionally with options, e.g. blend(l2=30,depth=2)")  # fmt: skip
    name, options = match["name"], {}
    for item in filter(None, (match["options"] or "").split(",")):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in LEARNER_OPTIONS[name]:
            raise ValueError(f"learner {name} takes no option {item.strip()!r} (it takes: "
                             f"{', '.join(LEARNER_OPTIONS[name]) or 'none'})")  # fmt: skip
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not (number > 0 and math.isfinite(number)):
            raise ValueError(f"learner option {key} must be a positive number, got {value.strip()!r}")
        options[key] = number
    return name, options


def fit_window(learner: str, x: np.ndarray, y: np.ndarray, weight: np.ndarray, bound: np.ndarray) -> dict:
    """One window's parameters for ``learner`` ("logistic", "trees", "blend" of the two, or
    "isotonic": the current method's bound through an isotonic map, stored as {"learner":
    "isotonic", "x", "y"}), with its options if given (``learner_spec``: "blend(l2=30,depth=2)")."""
    name, options = learner_spec(learner)
    if name == "logistic":
        return em.fit_logistic(x, y, weight=weight, **options)
    if name == "trees":
        ints = {k: int(v) for k, v in options.items() if k in ("trees", "depth", "leaf")}
        return em.fit_trees(x, y, weight=weight, **{**options, **ints})
    if name == "blend":
        parts = []
        for part in LEARNERS:
            own = ",".join(f"{k}={v:g}" for k, v in options.items() if k in LEARNER_OPTIONS[part])
            parts.append(fit_window(f"{part}({own})", x, y, weight, bound))
        return {"learner": "blend", "parts": parts}
    return {"learner": "isotonic", **fit_isotonic(bound, y)}


def predict_window(params: dict, x: np.ndarray, bound: np.ndarray) -> np.ndarray:
    if params["learner"] == "isotonic":
        return recalibrated(bound, params)
    return em.predict(params, x)


def series_folds(series: np.ndarray, k: int, seed: int) -> np.ndarray:
    names = np.unique(series.astype(str))
    rng = np.random.default_rng(seed)
    fold_of = dict(zip(rng.permutation(names), np.arange(len(names)) % k, strict=True))
    return np.array([fold_of[s] for s in series.astype(str)])


def out_of_fold(data: dict, learners: Sequence[str], *, fold: np.ndarray, kind: str = EVENT_KIND,
                features: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
                ) -> dict[str, dict[str, np.ndarray]]:  # fmt: skip
    """{window: {learner: P}}: each sample's probability from each learner fitted (families weighted
    equally) on the samples of every other ``fold`` value; "bound" is the current method's. The
    inputs: ``features`` (one list, or one per window as a stored model names them; None: every
    column of the samples)."""
    fam = data["family"].astype(str)
    shortcut = "blend" in learners and set(LEARNERS) <= set(learners)  # the blend of the plain parts
    out: dict = {}
    for name in data["x"]:
        own = features.get(name) if isinstance(features, Mapping) else features
        cols = slice(None) if own is None else _columns(data, own)
        x, y, bound = data["x"][name][:, cols], data["labels"][(kind, name)], data["bound"][name]
        preds = {learner: np.zeros(len(y)) for learner in learners}
        for f in np.unique(fold):
            train, test = fold != f, fold == f
            w = family_weights(fam[train])
            for learner in learners:
                if learner == "blend" and shortcut:
                    continue  # the mean of its parts' predictions, below: the same fit, once
                params = fit_window(learner, x[train], y[train], w, bound[train])
                preds[learner][test] = predict_window(params, x[test], bound[test])
            if shortcut:
                preds["blend"][test] = np.mean([preds[part][test] for part in LEARNERS], axis=0)
        preds["bound"] = bound
        out[name] = preds
    return out


def cross_validate(data: dict, learners: Sequence[str] = (*LEARNERS, "isotonic"), *, folds: int = 5,
                   seed: int = 0, kind: str = EVENT_KIND, features: Sequence[str] | None = None,
                   groups: np.ndarray | None = None) -> dict:  # fmt: skip
    """Held-out scores of each learner (and of the raw bound, "bound"): whole series are held out
    per fold (``folds`` random folds of series), or, with ``groups`` (one label per sample, e.g. its
    source), one group at a time; every learner is fitted on the other folds (families weighted
    equally) and scored on the held-out samples, with the inputs ``features`` (a subset of
    event_model.FEATURES; None: every column of the samples).
    Returns {window: {learner: {"pooled": …, "families": {family: …}}}}."""
    fold = series_folds(data["series"], folds, seed) if groups is None else np.unique(groups.astype(str), return_inverse=True)[1]
    fam = data["family"].astype(str)
    preds = out_of_fold(data, learners, fold=fold, kind=kind, features=features)
    return {
        name: {learner: scores_by_family(p, data["labels"][(kind, name)], fam) for learner, p in by.items()}
        for name, by in preds.items()
    }


def scores_by_family(p: np.ndarray, event: np.ndarray, family: np.ndarray) -> dict:
    """{"families": {family: scores}, "pooled": families weighted equally}."""
    from forecasting.engine.probability_scores import probability_scores

    groups = {f: (p[family == f], event[family == f]) for f in sorted(set(family.tolist()))}
    return {
        "families": {f: probability_scores(a, b) for f, (a, b) in groups.items()},
        "pooled": family_pooled(groups),
    }


def fit_event_model(data: dict, *, learner: str, cfg: SampleConfig | None = None, meta: dict | None = None,
                    features: Sequence[str] = em.FEATURES,
                    window_features: Mapping[str, Sequence[str]] | None = None) -> dict:  # fmt: skip
    """The storable event model (engine.event_model.new_model) fitted on every sample of ``data``
    for the "incident" event (either kind), families weighted equally, on the inputs ``features``
    (or, for a window in ``window_features``, on its own list, stored with its parameters)."""
    cfg = cfg or SampleConfig()
    weight = family_weights(data["family"])
    labels = {name: data["labels"][(EVENT_KIND, name)] for name in WINDOWS}
    windows = {}
    for name in WINDOWS:
        own = (window_features or {}).get(name)
        x = data["x"][name][:, _columns(data, own or features)]
        windows[name] = fit_window(learner, x, labels[name], weight, data["bound"][name])
        if own is not None:
            windows[name]["features"] = list(own)
    base = {name: float(np.mean(data["labels"][(EVENT_KIND, name)])) for name in WINDOWS}
    used = set(features) | {f for own in (window_features or {}).values() for f in own}
    return em.new_model(
        windows,
        features=[f for f in em.FEATURES if f in used] if window_features else features,
        min_buckets=cfg.min_buckets,
        thresholds=dict(cfg.thresholds),
        meta={"event": EVENT_KIND, "incident_states": list(cfg.incident_states), "samples": len(data["series"]),
              "training_event_rate": base, **(meta or {})},
    )  # fmt: skip


def event_rates(series: list[SeriesWindow], *, metrics=None, cfg: SampleConfig | None = None) -> dict:
    """How often an incident starts: per family (backtest.probability_family), kind and window, the
    share of origins (every ``cfg.every`` steps with a full context and horizon) followed by one.
    No forecast needed: {family: {"origins": n, kind: {window: rate}}}."""
    cfg = cfg or SampleConfig()
    scored = bt._scored_metrics(series, metrics)
    counts: dict[str, dict] = {}
    for w in series:
        origins = sample_origins(len(w.values), "all", cfg.every, 0.0)
        if not len(origins):
            continue
        cols = [METRICS.index(m) for m in scored[w.server]]
        y = w.values.astype(np.float64)
        context = np.stack([y[o - CONTEXT : o] for o in origins])
        _, critical = limits_batch(context, dict(cfg.thresholds), METRICS)
        labels = incident_labels(y[:, cols], w.states, critical[:, cols], origins,
                                 min_buckets=cfg.min_buckets, incident_states=cfg.incident_states)  # fmt: skip
        c = counts.setdefault(bt.probability_family(w, cols), {"origins": 0})
        c["origins"] += len(origins)
        for kind, by_window in labels.items():
            for name, e in by_window.items():
                c.setdefault(kind, {}).setdefault(name, 0)
                c[kind][name] += int(e.sum())
    return {
        family: {
            "origins": c["origins"],
            **{k: {w: v / c["origins"] for w, v in c[k].items()} for k in c if k != "origins"},
        }
        for family, c in counts.items()
    }
