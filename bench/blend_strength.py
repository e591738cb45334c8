"""Choose the blend's online strength (forecasting.engine.blend.STRENGTH) and the ramps between bands
(spec.BAND_RAMP_STEPS) on development series.

    python -m bench.blend_strength --model models/tft_model_X --csv-dir data/nab --csv-dir data/nab_extra \
        --simulated 20 --seed 11 --strengths 0 2 4 8 [--ramps 0,0,0 0,6,12 --json out.json]

Runs the backtest once per strength × ramps over the same windows (the TFT's forecasts are computed
once and reused) and prints, per source, the served forecast's MASE / pinball × naive per horizon band
(infrastructure families weighted equally) and its coverage. Never point it at data/holdout*.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from forecasting.engine import backtest as bt
from forecasting.engine import blend as bl
from forecasting.engine import calibration as cal
from forecasting.engine import spec
from forecasting.engine.folders import read_blend
from forecasting.engine.network import load_forecaster
from forecasting.engine.series import load_csv_dir
from forecasting.engine.simulator import fleet_names, simulate_fleet_truth
from forecasting.engine.spec import METRICS

logger = logging.getLogger(__name__)
SIMULATION_START = datetime(2026, 1, 5, tzinfo=UTC)  # as manage.py backtest --simulated


class CachedForecaster:
    """The forecaster's answers, kept by window key (``server#origin``) across backtest runs."""

    def __init__(self, forecaster) -> None:
        self.forecaster = forecaster
        self.cache: dict[str, dict] = {}

    def predict(self, windows):
        todo = [w for w in windows if w.server not in self.cache]
        if todo:
            self.cache.update(self.forecaster.predict(todo))
        return {w.server: self.cache[w.server] for w in windows}


def _sources(args) -> list[tuple[str, list, object]]:
    out = []
    for folder in args.csv_dir:
        loaded = load_csv_dir(folder)
        out.append(
            (str(folder), loaded.series, {w.server: loaded.metric_of.get(w.server, METRICS) for w in loaded.series})
        )
    if args.simulated:
        truth = simulate_fleet_truth(
            servers=fleet_names(args.simulated),
            start=SIMULATION_START,
            end=SIMULATION_START + timedelta(days=args.days),
            seed=args.seed,
        )
        out.append((f"simulated seed {args.seed}", truth.windows, None))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--csv-dir", type=Path, action="append", default=[])
    parser.add_argument("--simulated", type=int, default=0)
    parser.add_argument("--days", type=float, default=14.0)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.0, 2.0, 4.0, 8.0])
    shipped = ",".join(map(str, spec.BAND_RAMP_STEPS)) + ":" + ",".join(map(str, spec.BAND_RAMP_LEAD))
    parser.add_argument("--ramps", nargs="+", default=[shipped],
                        help="band ramps to compare: steps into each band, optionally ':' steps before it (0,6,12 or 0,3,6:0,3,6)")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()
    if any("holdout" in str(f) for f in args.csv_dir):
        parser.error("choose on development series only")
    blend = read_blend(args.model)
    if blend is None:
        parser.error(f"{args.model} has no blend.json (manage.py fit_blend first)")
    forecaster = CachedForecaster(load_forecaster(args.model, device="cpu"))
    print(f"weights {blend['weights']}")
    rows = []
    for name, series, metrics in _sources(args):
        for ramps in args.ramps:
            _use_ramps(*(tuple(int(r) for r in part.split(",")) for part in ramps.split(":")))
            for strength in args.strengths:
                result = bt.run_backtest(series, forecaster, metrics=metrics, blend={**blend, "strength": strength})
                if "served" not in result["families_equal"]:
                    print(f"{name:<28} no infrastructure family")
                    break
                rows.append({"source": name, "ramps": ramps, "strength": strength, "per_band": result["per_band"],
                             "families_equal": result["families_equal"]})  # fmt: skip
                _print(rows[-1])
    _use_ramps(spec.BAND_RAMP_STEPS, spec.BAND_RAMP_LEAD)
    if args.json:
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=1, default=float))


def _use_ramps(ramps: tuple[int, ...], leads: tuple[int, ...] | None = None) -> None:
    """Serve with these ramps between bands (the blend's weights and the calibration's factors)."""
    bl.STEP_MIX = cal.STEP_MIX = np.asarray(spec.step_mix(ramps, leads), dtype=np.float64)


def _print(row: dict) -> None:
    cells = []
    for band, by_method in row["per_band"].items():
        r = by_method["served"]
        cells.append(f"{band} {r['mase_x_naive']:.3f}/{r['pinball_x_naive']:.3f} cov {r['coverage']:.2f}")
    whole = row["families_equal"]["served"]
    print(f"{row['source']:<28} ramps {row['ramps']:<7} strength {row['strength']:<4g} " + " | ".join(cells) +
          f" | 0-8h {whole['mase_x_naive']:.3f}/{whole['pinball_x_naive']:.3f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    main()
