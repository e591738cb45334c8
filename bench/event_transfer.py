"""Does the event model carry over to a source it has never seen? Development series only (issue 22).

    python -m bench.event_transfer --samples /work/runs/event_samples_dev.npz \
        --csv-dir data/nab --csv-dir data/nab_extra --csv-dir data/azure_vm --csv-dir data/jumpstarter \
        --csv-dir data/smd --simulated 20 --days 28 --seed 2 \
        --learners blend "blend(l2=30,depth=2,leaf=200)" --out bench/results/event_transfer.json

The learners were chosen by cross-validation that holds whole *series* out (event_training's 5
folds): the other series of the same source stay in the fit, so a model that learns a source's
quirks (its scale, its event rate, which profile its series get) still scores well. On the
held-out sets, and on the real series of other sources that every landing is checked on, the
event model scored far below that estimate (8 h Brier skill about +0.09 against +0.34). This
bench holds whole *sources* out instead — each --csv-dir and the simulated fleet is one fold, the
model fitted on the others — which is what a new user's fleet is to the shipped model, and
compares learners (with their options: event_training.learner_spec) that way, beside the
series-held-out estimate of the same learners.

Scores: Brier skill against each family's own rate and AUC per window: the headline
("sources_equal") is the mean over sources of each source's own score (its families weighted
equally), beside the families-equal score pooled over every source (the figure the learners were
chosen by until this bench) and each source's. The samples are those ``manage.py
fit_event_model --save-samples`` wrote (the same sources must be given: they say which source
each series belongs to). Never point it at data/holdout*.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from forecasting.engine import event_model as em
from forecasting.engine import event_training as et
from forecasting.engine.folders import read_event_model
from forecasting.engine.probability_scores import sources_equal
from forecasting.engine.series import load_csv_dir
from forecasting.engine.simulator import fleet_names, simulate_fleet_truth

logger = logging.getLogger(__name__)
SIMULATION_START = datetime(2026, 1, 5, tzinfo=UTC)  # as manage.py backtest --simulated
KEYS = ("n", "events", "skill", "auc")


def source_of_series(csv_dirs: list[Path], simulated: int, days: float, seed: int) -> dict[str, str]:
    """Series name → its source (the --csv-dir as given, or "simulated")."""
    out: dict[str, str] = {}
    for folder in csv_dirs:
        if "holdout" in str(folder):
            raise SystemExit("held-out data is never used to choose")
        out.update({w.server: str(folder) for w in load_csv_dir(folder).series})
    if simulated:
        truth = simulate_fleet_truth(servers=fleet_names(simulated), start=SIMULATION_START,
                                     end=SIMULATION_START + timedelta(days=days), seed=seed)  # fmt: skip
        out.update({w.server: "simulated" for w in truth.windows})
    return out


def _brief(scores: dict) -> dict:
    return {k: scores.get(k) for k in KEYS}


def scored(preds: dict, data: dict, source: np.ndarray) -> dict:
    """{window: {learner: {"pooled", "families", "sources": {source: pooled over its families}}}}."""
    fam = data["family"].astype(str)
    out: dict = {}
    for window, by in preds.items():
        y = data["labels"][(et.EVENT_KIND, window)]
        out[window] = {}
        for learner, p in by.items():
            r = et.scores_by_family(p, y, fam)
            sources = {s: _brief(et.scores_by_family(p[source == s], y[source == s], fam[source == s])["pooled"])
                       for s in sorted(set(source.tolist()))}  # fmt: skip
            out[window][learner] = {
                "sources_equal": sources_equal(sources),
                "pooled": _brief(r["pooled"]),
                "families": {f: _brief(s) for f, s in r["families"].items()},
                "sources": sources,
            }
    return out


def _inputs(data: dict, model: Path | None) -> dict[str, list[str]]:
    """Each window's inputs: as the folder's event model names them, else every sampled column."""
    have = list(data.get("features", em.FEATURES))
    if model is None:
        return {w: have for w in data["x"]}
    stored = read_event_model(model)
    return {w: em.window_features(stored, params) for w, params in stored["windows"].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=Path, required=True)
    parser.add_argument("--csv-dir", type=Path, action="append", default=[])
    parser.add_argument("--simulated", type=int, default=0)
    parser.add_argument("--days", type=float, default=28)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--learners", nargs="+", default=["logistic", "trees", "blend", "isotonic"])
    parser.add_argument("--series-folds", action="store_true", help="also the 5 series-held-out folds")
    parser.add_argument("--model", type=Path, help="a model folder: each window's inputs as its event model names them")
    parser.add_argument("--drop", action="append", default=[], metavar="NAME=INPUT,INPUT",
                        help="also every learner without these inputs (a variant named NAME)")
    parser.add_argument("--save-oof", type=Path, metavar="NPZ",
                        help="write the first learner's sources-held-out probabilities per window (bench.live_map_choice --oof)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    for learner in args.learners:
        et.learner_spec(learner)  # fail before any fit
    started = time.perf_counter()
    data, fitted_on = et.load_samples(args.samples)
    source_of = source_of_series(args.csv_dir, args.simulated, args.days, args.seed)
    unknown = sorted(set(data["series"].astype(str).tolist()) - set(source_of))
    if unknown:
        raise SystemExit(f"samples of series no source names: {', '.join(unknown[:5])}")
    source = np.array([source_of[s] for s in data["series"].astype(str)])
    report: dict = {"samples": len(source), "sampled": fitted_on, "learners": args.learners,
                    "sources": {s: int((source == s).sum()) for s in sorted(set(source.tolist()))}}  # fmt: skip
    base = _inputs(data, args.model)
    report["inputs"] = base
    variants = {"": base}
    for text in args.drop:
        name, _, dropped = text.partition("=")
        variants[f" without {name}"] = {w: [f for f in own if f not in dropped.split(",")] for w, own in base.items()}
    folds = {"sources held out": np.unique(source, return_inverse=True)[1]}
    if args.series_folds:
        folds["series held out (5 folds)"] = et.series_folds(data["series"], 5, 0)
    for name, fold in folds.items():
        report[name] = {}
        for suffix, inputs in variants.items():
            preds = et.out_of_fold(data, args.learners, fold=fold, features=inputs)
            if args.save_oof and name == "sources held out" and not suffix:
                np.savez_compressed(args.save_oof, **{w: by[args.learners[0]] for w, by in preds.items()})
            for window, by in scored(preds, data, source).items():
                report[name].setdefault(window, {}).update({f"{lr}{suffix}": r for lr, r in by.items()})
            logger.info("%s%s: %s (%.0f s)", name, suffix,
                        {w: {lr: (round(r["sources_equal"]["skill"], 3), round(r["sources_equal"]["auc"], 3))
                             for lr, r in by.items() if lr.endswith(suffix)} for w, by in report[name].items()},
                        time.perf_counter() - started)  # fmt: skip
    report["seconds"] = round(time.perf_counter() - started, 1)
    text = json.dumps(report, indent=1, default=float)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
