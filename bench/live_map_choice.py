"""Which live-map settings should the service run with? Development series only (issue 22).

    python -m bench.live_map_choice --samples /work/runs/event_samples_dev.npz \
        --model models/tft_model_20261202T135112Z \
        --csv-dir data/nab --csv-dir data/nab_extra --csv-dir data/azure_vm --csv-dir data/jumpstarter \
        --csv-dir data/smd --simulated 20 --days 28 --seed 2 --every 6 \
        --fleet-every data/azure_vm=12 --fleet-every data/jumpstarter=12 --fleet-every data/smd=12 \
        --fleet-every simulated=12 --oof /work/runs/event_oof.npz --out bench/results/live_map_choice.json

``--oof`` may also come from ``bench.event_transfer --save-oof``: each source's probabilities from
a model fitted on the *other* sources, which is what the shipped model is to a new user's fleet
(the series-held-out probabilities computed here still had the source's other series in the fit).

The live map (engine.live_calibration) recalibrates the event model's probabilities from the
outcomes a fleet records. Its settings — the prior's weight, the slope's extra firmness, the
half-life, when a profile gets a map of its own — were set by hand. On the held-out sets the map
served worse rankings than the event model alone, so they are chosen here, the way the held-out
backtest replays them, on development series:

1. The event model's predictions for each development sample come from a model that never saw
   its series (5 folds holding whole series out, the shipped learner and inputs per window,
   families weighted equally): on its own series the model is sharper than it will be on a new
   fleet, and a map tuned on those would learn to trust it too much.
2. Each --csv-dir (and the simulated fleet) is one fleet, replayed on its own clock with the
   service's update rule (``live_map_replay``: hourly refits, an outcome counting as many times as
   the steps between samples), for every setting of the grid.
   ``--part test`` replays only each series' test part, the map starting there, as the held-out
   backtest replays its series (a map that needs weeks to settle shows there).
3. Scores: Brier skill against each fleet-family's own rate and AUC, families weighted equally
   (engine.event_training.scores_by_family), per window, pooled over every development fleet and
   per fleet; "no map" (the model alone) beside them.

The samples are those ``manage.py fit_event_model --save-samples`` wrote (the same sources and
strides must be given: they say where each sample's origin lies). Never point it at data/holdout*.
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

from forecasting.engine import backtest as bt
from forecasting.engine import event_training as et
from forecasting.engine import live_calibration as lc
from forecasting.engine.folders import read_event_model
from forecasting.engine.incidents import DEFAULT_MIN_BUCKETS, WINDOWS
from forecasting.engine.probability_scores import sources_equal
from forecasting.engine.series import load_csv_dir
from forecasting.engine.simulator import fleet_names, simulate_fleet_truth

logger = logging.getLogger(__name__)
SIMULATION_START = datetime(2026, 1, 5, tzinfo=UTC)  # as manage.py backtest --simulated
SIMULATED = "simulated"
NO_MAP = "no map (event model alone)"


def _sources(args) -> dict[str, tuple]:
    """Series name → (its window, its fleet, steps between its samples, whether the fleet is dated)."""
    fleet_every = dict(s.rsplit("=", 1) for s in args.fleet_every)
    out: dict[str, tuple] = {}
    for folder in args.csv_dir:
        if "holdout" in str(folder):
            raise SystemExit("held-out data is never used to choose")
        series = load_csv_dir(folder).series
        dated = all(bool(w.calendar) for w in series)
        for w in series:
            out[w.server] = (w, str(folder), int(fleet_every.get(str(folder), args.every)), dated)
    if args.simulated:
        truth = simulate_fleet_truth(servers=fleet_names(args.simulated), start=SIMULATION_START,
                                     end=SIMULATION_START + timedelta(days=args.days), seed=args.seed)  # fmt: skip
        every = int(fleet_every.get(SIMULATED, args.every))
        dated = all(bool(w.calendar) for w in truth.windows)
        out.update({w.server: (w, SIMULATED, every, dated) for w in truth.windows})
    return out


def clocks(data: dict, sources: dict[str, tuple], part: str = "all") -> dict[str, dict[str, np.ndarray]]:
    """Per window: each sample's fleet, time and outcome close on its fleet's clock (as the
    backtest's replay: backtest.origin_clock), profile, weight (the steps between samples) and
    whether it is replayed ("keep": every sample, or with ``part="test"`` only those in each series'
    test part, its clock starting there, as the held-out backtest replays its series)."""
    series = data["series"].astype(str)
    n = len(series)
    out = {w: {"fleet": np.empty(n, dtype=object), "time": np.zeros(n), "close": np.zeros(n),
               "profile": np.empty(n, dtype=object), "weight": np.zeros(n), "keep": np.zeros(n, dtype=bool)}
           for w in WINDOWS}  # fmt: skip
    bounds = np.flatnonzero(np.r_[True, series[1:] != series[:-1], True])
    for a, b in itertools.pairwise(bounds):
        w, fleet, every, dated = sources[series[a]]
        origins = et.sample_origins(len(w.values), "all", every, bt.TEST_FRACTION)
        if len(origins) != b - a:
            raise SystemExit(f"{series[a]}: {b - a} samples, {len(origins)} origins: give the sampling's sources")
        keep = np.ones(len(origins), dtype=bool)
        if part == "test":
            keep = origins >= et.sample_origins(len(w.values), "test", every, bt.TEST_FRACTION)[0]
        times = np.zeros(len(origins))
        if keep.any():
            times[keep] = bt.origin_clock(w, origins[keep], dated)
        for name, steps in WINDOWS.items():
            c = out[name]
            c["fleet"][a:b], c["profile"][a:b], c["weight"][a:b], c["keep"][a:b] = fleet, w.profile, every, keep
            c["time"][a:b] = times
            c["close"][a:b] = times + (steps + DEFAULT_MIN_BUCKETS - 1) * w.step_minutes * 60.0
    return out


def out_of_fold(data: dict, model: dict, *, folds: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    """Per window: each sample's event-model probability from the shipped learner fitted without
    its series (whole series held out per fold; families weighted equally; the model's inputs)."""
    fold = et.series_folds(data["series"], folds, seed)
    fam = data["family"].astype(str)
    out = {}
    for name in WINDOWS:
        params = model["windows"][name]
        features = params.get("features") or model["features"]
        x = data["x"][name][:, et._columns(data, features)]
        y, bound = data["labels"][(et.EVENT_KIND, name)], data["bound"][name]
        p = np.zeros(len(y))
        for f in range(folds):
            train, test = fold != f, fold == f
            fitted = et.fit_window(params["learner"], x[train], y[train], et.family_weights(fam[train]), bound[train])
            p[test] = et.predict_window(fitted, x[test], bound[test])
            logger.info("window %s fold %d fitted", name, f)
        out[name] = p
    return out


def replay(
    prior: np.ndarray, events: np.ndarray, clock: dict[str, np.ndarray], cfg: lc.LiveMapConfig | None
) -> np.ndarray:
    """The served probabilities of every sample, each fleet replayed on its own (None: no map)."""
    if cfg is None:
        return prior.copy()
    served = prior.copy()
    for fleet in sorted(set(clock["fleet"].tolist())):
        sel = clock["fleet"] == fleet
        served[sel] = lc.live_map_replay(times=clock["time"][sel], closes=clock["close"][sel],
                                         profiles=clock["profile"][sel].astype(str), p_prior=prior[sel],
                                         events=events[sel], cfg=cfg, weight=float(clock["weight"][sel][0]))  # fmt: skip
    return served


def scores(p: np.ndarray, events: np.ndarray, family: np.ndarray, fleet: np.ndarray) -> dict:
    """Skill and AUC pooled (families weighted equally; a family is a fleet's family) and per fleet."""
    fleet_family = np.array([f"{a}:{b}" for a, b in zip(fleet, family, strict=True)])
    pooled = et.scores_by_family(p, events, fleet_family)["pooled"]
    per_fleet = {}
    for name in sorted(set(fleet.tolist())):
        sel = fleet == name
        r = et.scores_by_family(p[sel], events[sel], family[sel])["pooled"]
        per_fleet[name] = {k: r.get(k) for k in ("n", "events", "skill", "auc")}
    return {**{k: pooled.get(k) for k in ("n", "events", "skill", "auc")}, "fleets_equal": sources_equal(per_fleet),
            "fleets": per_fleet}  # fmt: skip


def grid(args) -> list[lc.LiveMapConfig | None]:
    out: list[lc.LiveMapConfig | None] = [None]
    for weight, slope, half, profile in itertools.product(args.prior_weight, args.slope_factor, args.half_life,
                                                          args.profile_min):  # fmt: skip
        out.append(lc.LiveMapConfig(prior_weight=weight, half_life_hours=half, profile_min_outcomes=profile,
                                    slope_prior_factor=slope))  # fmt: skip
    return out


def label(cfg: lc.LiveMapConfig | None) -> str:
    if cfg is None:
        return NO_MAP
    return (f"prior_weight={cfg.prior_weight:g} slope_factor={cfg.slope_prior_factor:g} "
            f"half_life_hours={cfg.half_life_hours:g} profile_min_outcomes={cfg.profile_min_outcomes:g}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=Path, required=True)
    parser.add_argument(
        "--model", type=Path, required=True, help="the folder whose event model's learner/inputs to use"
    )
    parser.add_argument("--csv-dir", type=Path, action="append", default=[])
    parser.add_argument("--simulated", type=int, default=0)
    parser.add_argument("--days", type=float, default=28)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--every", type=int, default=12)
    parser.add_argument("--fleet-every", action="append", default=[])
    parser.add_argument(
        "--oof", type=Path, help="cache of the out-of-fold predictions (.npz): read if there, else written"
    )
    parser.add_argument("--prior-weight", type=float, nargs="+", default=[10, 30, 100, 300, 1000, 3000, 10000])
    parser.add_argument("--slope-factor", type=float, nargs="+", default=[1, 10, 100])
    parser.add_argument("--half-life", type=float, nargs="+", default=[24, 72, 168])
    parser.add_argument("--profile-min", type=float, nargs="+", default=[lc.DEFAULT_PROFILE_MIN_OUTCOMES, 10**12])
    parser.add_argument("--part", choices=["all", "test"], default="all",
                        help="replay every sample, or each series' test part only (as the held-out backtest)")  # fmt: skip
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    started = time.perf_counter()
    data, fitted_on = et.load_samples(args.samples)
    model = read_event_model(args.model)
    if args.oof and args.oof.exists():
        with np.load(args.oof, allow_pickle=False) as z:
            oof = {name: z[name] for name in WINDOWS}
    else:
        oof = out_of_fold(data, model)
        if args.oof:
            np.savez_compressed(args.oof, **oof)
    sample_clocks = clocks(data, _sources(args), args.part)
    report: dict = {"samples": len(data["family"]), "sampled": fitted_on, "part": args.part,
                    "refit_every_s": lc.REPLAY_REFIT_SECONDS, "windows": {}}  # fmt: skip
    for name in WINDOWS:
        keep = sample_clocks[name]["keep"]
        clock = {key: values[keep] for key, values in sample_clocks[name].items()}
        events = data["labels"][(et.EVENT_KIND, name)][keep].astype(np.float64)
        family, fleet = data["family"][keep].astype(str), clock["fleet"].astype(str)
        rows = {}
        for cfg in grid(args):
            served = replay(oof[name][keep], events, clock, cfg)
            rows[label(cfg)] = scores(served, events, family, fleet)
            logger.info("%s %s: skill %+.3f auc %.3f, fleets equal %+.3f / %.3f (%.0f s)", name, label(cfg),
                        rows[label(cfg)]["skill"], rows[label(cfg)]["auc"], rows[label(cfg)]["fleets_equal"]["skill"],
                        rows[label(cfg)]["fleets_equal"]["auc"], time.perf_counter() - started)  # fmt: skip
        report["windows"][name] = rows
    text = json.dumps(report, indent=2, default=float)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
