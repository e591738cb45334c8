"""Which inputs should the event model carry? Development series only (issue 22).

    python -m bench.event_history --samples /work/runs/event_samples_blended.npz \
        --csv-dir data/nab --csv-dir data/nab_extra --csv-dir data/azure_vm --csv-dir data/jumpstarter \
        --csv-dir data/smd --simulated 20 --days 28 --seed 2 --every 6 \
        --fleet-every data/azure_vm=12 --fleet-every data/jumpstarter=12 --fleet-every data/smd=12 \
        --fleet-every simulated=12 --out bench/results/event_inputs.json

Reads the samples `manage.py fit_event_model --save-samples` wrote (the same sources and strides
must be given: they say where each sample's origin lies) and cross-validates the event model's
learners (event_training.cross_validate: 5 folds holding whole series out, families weighted
equally) with three input sets: without the previous day's hours (the 27 inputs shipped before),
with them (29), and with them plus the series' own incident history — the share of earlier
windows of the same length, closed before the origin, in which an incident
started (weighted by age with a 72 h half-life, smoothed toward the training rate, as log-odds)
and how much such history there is. The
service can serve that last input from its recorded probability outcomes. Never point it at
data/holdout*: this is where the choice is made.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from forecasting.engine import event_model as em
from forecasting.engine import event_training as et
from forecasting.engine.incidents import DEFAULT_MIN_BUCKETS, WINDOWS
from forecasting.engine.series import load_csv_dir
from forecasting.engine.simulator import fleet_names, simulate_fleet_truth

logger = logging.getLogger(__name__)
SIMULATION_START = datetime(2026, 1, 5, tzinfo=UTC)  # as manage.py backtest --simulated
HALF_LIFE_HOURS = 72.0  # as the live map's outcome counts
PRIOR_STRENGTH = 2.0  # windows' worth of the training rate in the smoothed share


def history_features(labels: np.ndarray, every: int, steps: int, prior: float) -> np.ndarray:
    """(n, 2) for one series' samples in time order (origins ``every`` steps apart): log-odds of
    the share of earlier windows with an incident, counting only windows closed and confirmed
    before the origin, each weighted by its age with a HALF_LIFE_HOURS half-life and smoothed
    toward ``prior`` by PRIOR_STRENGTH windows; and log1p of the (decayed) hours of such history."""
    n = len(labels)
    lag = -(-(steps + DEFAULT_MIN_BUCKETS) // every)  # samples until a window is closed and confirmed
    r = 0.5 ** (every / (HALF_LIFE_HOURS * 12))
    events, count = np.zeros(n), np.zeros(n)
    e = c = 0.0
    for j in range(n):  # decayed sums over samples ≤ j, at j's time
        e, c = e * r + labels[j], c * r + 1.0
        events[j], count[j] = e, c
    i = np.arange(n) - lag
    closed = i >= 0
    ev = np.where(closed, events[np.maximum(i, 0)] * r**lag, 0.0)
    cn = np.where(closed, count[np.maximum(i, 0)] * r**lag, 0.0)
    share = (ev + PRIOR_STRENGTH * prior) / (cn + PRIOR_STRENGTH)
    return np.column_stack([np.log(share / (1 - share)), np.log1p(cn * every / 12.0)])


def _strides(args) -> dict[str, int]:
    """Series name → steps between its samples (as the sampling command's --every / --fleet-every)."""
    fleet_every = dict(s.rsplit("=", 1) for s in args.fleet_every)
    out = {}
    for folder in args.csv_dir:
        if "holdout" in str(folder):
            raise SystemExit("held-out data is never used to choose")
        for w in load_csv_dir(folder).series:
            out[w.server] = int(fleet_every.get(str(folder), args.every))
    if args.simulated:
        truth = simulate_fleet_truth(servers=fleet_names(args.simulated), start=SIMULATION_START,
                                     end=SIMULATION_START + timedelta(days=args.days), seed=args.seed)  # fmt: skip
        out.update({w.server: int(fleet_every.get("simulated", args.every)) for w in truth.windows})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=Path, required=True)
    parser.add_argument("--csv-dir", type=Path, action="append", default=[])
    parser.add_argument("--simulated", type=int, default=0)
    parser.add_argument("--days", type=float, default=28)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--every", type=int, default=12)
    parser.add_argument("--fleet-every", action="append", default=[])
    parser.add_argument("--learners", nargs="+", default=["logistic", "trees", "blend"])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    started = time.perf_counter()
    data, fitted_on = et.load_samples(args.samples)
    strides = _strides(args)
    series = data["series"].astype(str)
    history = {w: np.zeros((len(series), 2)) for w in WINDOWS}
    # samples of one series are contiguous and in time order (event_samples)
    bounds = np.flatnonzero(np.r_[True, series[1:] != series[:-1], True])
    for a, b in itertools.pairwise(bounds):
        for w, steps in WINDOWS.items():
            y = data["labels"][(et.EVENT_KIND, w)]
            history[w][a:b] = history_features(y[a:b], strides[series[a]], steps, float(y.mean()))
    base27 = [f for f in em.FEATURES if f not in ("z_season_max", "season_start")]
    variants = {"27 inputs (shipped)": (base27, None), "29 inputs (+ previous day)": (list(em.FEATURES), None),
                "31 inputs (+ previous day + own history)": (list(em.FEATURES), history)}  # fmt: skip
    report = {"samples": len(series), "sampled": fitted_on, "history_half_life_hours": HALF_LIFE_HOURS, "variants": {}}
    for name, (features, extra) in variants.items():
        x = data["x"] if extra is None else {w: np.column_stack([data["x"][w], extra[w]]) for w in WINDOWS}
        cols = em.feature_columns(features) + ([x["8h"].shape[1] - 2, x["8h"].shape[1] - 1] if extra else [])
        cv = et.cross_validate({**data, "x": {w: v[:, cols] for w, v in x.items()}}, learners=args.learners)
        report["variants"][name] = {
            window: {learner: {"pooled": {k: r["pooled"].get(k) for k in ("n", "events", "skill", "auc")},
                               "families": {f: {k: s.get(k) for k in ("n", "events", "skill", "auc")}
                                            for f, s in r["families"].items()}}
                     for learner, r in by.items()} for window, by in cv.items()}  # fmt: skip
        logger.info("%s: %s (%.0f s)", name, {w: {lr: round(r["pooled"]["skill"], 3) for lr, r in by.items()}
                                              for w, by in report["variants"][name].items()},
                    time.perf_counter() - started)  # fmt: skip
    text = json.dumps(report, indent=2, default=float)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
