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
started (event_model.series_history / history_inputs: weighted by age with a 72 h half-life,
smoothed toward the development rate, as a log-odds ratio) and how many hours of it there are. The
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
from forecasting.engine.incidents import WINDOWS
from forecasting.engine.series import load_csv_dir
from forecasting.engine.simulator import fleet_names, simulate_fleet_truth

logger = logging.getLogger(__name__)
SIMULATION_START = datetime(2026, 1, 5, tzinfo=UTC)  # as manage.py backtest --simulated


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
    parser.add_argument("--variants", nargs="+", default=[], help="only the variants starting with these (27 29 31)")
    parser.add_argument("--save-samples", type=Path, help="write the samples with the history inputs (.npz)")
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
            events, hours = em.series_history(y[a:b], every=strides[series[a]], steps=steps)
            history[w][a:b] = em.history_inputs(events, hours, w)
    if "history_lor" not in data["features"]:  # samples from before the input: add it from their labels
        data["x"] = {w: np.column_stack([data["x"][w], history[w]]) for w in WINDOWS}
        data["features"] = [*data["features"], "history_lor", "history_hours"]
    if args.save_samples:
        et.save_samples(args.save_samples, data, fitted_on=fitted_on)
    season, own = ("z_season_max", "season_start"), ("history_lor", "history_hours")
    variants = {"27 inputs (shipped)": [f for f in em.FEATURES if f not in (*season, *own)],
                "29 inputs (+ previous day)": [f for f in em.FEATURES if f not in own],
                "31 inputs (+ previous day + own history)": list(em.FEATURES)}  # fmt: skip
    report = {"samples": len(series), "sampled": fitted_on, "history_half_life_hours": em.HISTORY_HALF_LIFE_HOURS,
              "variants": {}}  # fmt: skip
    for name, features in variants.items():
        if args.variants and not any(name.startswith(v) for v in args.variants):
            continue
        cv = et.cross_validate(data, learners=args.learners, features=features)
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
