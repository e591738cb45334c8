"""Would a seasonal input help the event model's 8 h window? Development series only (issue 22).

    python -m bench.event_seasonal --model models/tft_model_X --csv-dir data/nab --csv-dir data/smd \
        --simulated 20 --days 10 --seed 2 --every 36 --out bench/results/event_seasonal.json

Samples every ``--every`` steps of whole series (engine.event_training.event_samples, with the
folder's forecasts), then 5-fold cross-validation holding whole series out
(event_training.cross_validate, families weighted equally) of the event model's learners with and
without two added context inputs: the distance of the critical limit to the maximum over the same
8 hours of the previous day (in units of the series' own standard deviation, the most dangerous
scored metric; the 288-step context holds that day), and whether that window held a threshold
incident start. Never point it at data/holdout*: this is where the choice is made.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from forecasting.engine import backtest as bt
from forecasting.engine import event_model as em
from forecasting.engine import event_training as et
from forecasting.engine.incidents import WINDOWS, threshold_starts
from forecasting.engine.network import load_forecaster
from forecasting.engine.probability import limits_batch
from forecasting.engine.series import load_csv_dir
from forecasting.engine.simulator import fleet_names, simulate_fleet_truth
from forecasting.engine.spec import CONTEXT, DEFAULT_THRESHOLDS, METRICS, STEPS_PER_DAY

logger = logging.getLogger(__name__)
SIMULATION_START = datetime(2026, 1, 5, tzinfo=UTC)  # as manage.py backtest --simulated
SEASONAL = ("z_season_max", "season_start")


def seasonal_features(w, scored, origins: np.ndarray, steps: int) -> np.ndarray:
    """(n, 2): the limit's distance to the max over [o − day, o − day + steps) in units of the
    context's standard deviation (smallest over the scored metrics) and whether a threshold incident
    started there (engine.incidents, two buckets, runs confirmed within the context)."""
    cols = [METRICS.index(m) for m in scored]
    y = w.values.astype(np.float64)
    context = np.stack([y[o - CONTEXT : o] for o in origins])
    _, critical = limits_batch(context, dict(DEFAULT_THRESHOLDS), METRICS)
    lo = CONTEXT - STEPS_PER_DAY
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        s = np.maximum(np.nan_to_num(np.nanstd(context, axis=1), nan=0.0), 1e-3 * np.abs(critical) + 1e-6)
        season_max = np.nanmax(context[:, lo : lo + steps, :], axis=1)
    z = np.clip(np.nan_to_num((critical - season_max) / s, nan=em.Z_CLIP), -em.Z_CLIP, em.Z_CLIP)[:, cols].min(axis=1)
    day_ago = origins - STEPS_PER_DAY
    started = threshold_starts(y[:, cols], critical[:, cols], day_ago, steps, min_buckets=2)
    return np.column_stack([z, started.astype(np.float64)])


def _sources(args) -> list[tuple[str, list, object]]:
    out = []
    for folder in args.csv_dir:
        if "holdout" in str(folder):
            raise SystemExit("held-out data is never used to choose")
        loaded = load_csv_dir(folder)
        out.append((str(folder), loaded.series, {w.server: loaded.metric_of.get(w.server, METRICS) for w in loaded.series}))
    if args.simulated:
        truth = simulate_fleet_truth(servers=fleet_names(args.simulated), start=SIMULATION_START,
                                     end=SIMULATION_START + timedelta(days=args.days), seed=args.seed)  # fmt: skip
        out.append((f"simulated seed {args.seed}", truth.windows, None))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--csv-dir", type=Path, action="append", default=[])
    parser.add_argument("--simulated", type=int, default=0)
    parser.add_argument("--days", type=float, default=10)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--every", type=int, default=36)
    parser.add_argument("--learners", nargs="+", default=["logistic", "trees", "blend"])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    forecaster = load_forecaster(args.model, device="cpu")
    cfg = et.SampleConfig(every=args.every)
    parts, started = [], time.perf_counter()
    for name, series, metrics in _sources(args):
        data = et.event_samples(series, forecaster, metrics=metrics, part="all", cfg=cfg)
        scored = bt._scored_metrics(series, metrics)
        extra = {window: [] for window in WINDOWS}
        for w in series:
            origins = et.sample_origins(len(w.values), "all", cfg.every, bt.TEST_FRACTION)
            if len(origins):
                for window, steps in WINDOWS.items():
                    extra[window].append(seasonal_features(w, scored[w.server], origins, steps))
        data["extra"] = {window: np.concatenate(v) for window, v in extra.items()}
        parts.append(data)
        logger.info("%s: %d samples (%.0f s so far)", name, len(data["series"]), time.perf_counter() - started)
    cat = np.concatenate
    data = {
        "labels": {k: cat([p["labels"][k] for p in parts]) for k in parts[0]["labels"]},
        "bound": {k: cat([p["bound"][k] for p in parts]) for k in WINDOWS},
        "series": cat([p["series"] for p in parts]),
        "family": cat([p["family"] for p in parts]),
    }
    base_x = {k: cat([p["x"][k] for p in parts]) for k in WINDOWS}
    extra_x = {k: cat([p["extra"][k] for p in parts]) for k in WINDOWS}
    report = {"samples": len(data["series"]), "every": args.every, "sources": [n for n, _, _ in _sources(args)],
              "sampling_seconds": round(time.perf_counter() - started, 1), "features_added": list(SEASONAL)}  # fmt: skip
    for variant, x in (("base", base_x), ("seasonal", {k: np.column_stack([base_x[k], extra_x[k]]) for k in WINDOWS})):
        cv = et.cross_validate({**data, "x": x}, learners=args.learners)
        report[variant] = {window: {learner: {"pooled": {k: r["pooled"][k] for k in ("n", "events", "skill", "auc")},
                                              "families": {f: {k: s.get(k) for k in ("n", "events", "skill", "auc")}
                                                           for f, s in r["families"].items()}}
                                    for learner, r in by.items()} for window, by in cv.items()}  # fmt: skip
    text = json.dumps(report, indent=2, default=float)
    if args.out:
        args.out.write_text(text)
    logger.info("%s", text)


if __name__ == "__main__":
    main()
