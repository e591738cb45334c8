"""python manage.py fit_blend — fit a model folder's blend with persistence (blend.json), no retraining.

The per-band weights of the model against the last value (forecasting.engine.blend) are chosen on
validation windows: of every --csv-dir series, the origins whose targets lie in --part (default
0.48–0.60: the validation tail of a model trained with --csv-fraction 0.6 and val_fraction 0.2),
of every --unseen-csv-dir series (never trained on) its first 60 %, and of a simulated fleet (--simulated N, --seed S: use a seed the model never trained on) every
origin. Families are weighted equally (infrastructure families by default). Writes blend.json
into the model folder (--dry-run: print it only).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from forecasting.engine.bands import INFRASTRUCTURE, REPORT_FAMILIES
from forecasting.engine.blend import STRENGTH
from forecasting.engine.blend_fit import FIT_EVERY, VALIDATION_PART, fit_blend
from forecasting.engine.folders import json_default, write_blend
from forecasting.engine.network import load_forecaster
from forecasting.management.commands.backtest import _csv_source, _simulated_source, newest_model_folder

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Fit the per-band blend of a model folder with persistence on validation windows (blend.json)."

    def add_arguments(self, parser):
        parser.add_argument("--model", type=Path, help="model folder (default: newest models/tft_model_*)")
        parser.add_argument("--csv-dir", type=Path, action="append", default=[], help="CSV folder (repeatable)")
        parser.add_argument("--exclude", action="append", default=[], metavar="GLOB")
        parser.add_argument("--metric", default="auto")
        parser.add_argument("--part", type=float, nargs=2, default=VALIDATION_PART, metavar=("LO", "HI"))
        parser.add_argument(
            "--unseen-csv-dir",
            type=Path,
            action="append",
            default=[],
            help="CSV folder the model never trained on: fitted on its first --unseen-part (repeatable)",
        )
        parser.add_argument("--unseen-part", type=float, default=0.6, help="leaves the backtest's last 40 %% unseen")
        parser.add_argument("--unseen-every", type=int, default=48, help="steps between their fit origins")
        parser.add_argument("--simulated", type=int, metavar="N", help="also fit on N simulated servers (whole)")
        parser.add_argument("--days", type=float, default=14.0)
        parser.add_argument("--seed", type=int, default=7, help="simulator seed (one the model never saw)")
        parser.add_argument("--every", type=int, default=FIT_EVERY, help="steps between fit origins")
        parser.add_argument("--families", nargs="+", choices=REPORT_FAMILIES, default=list(INFRASTRUCTURE))
        parser.add_argument("--strength", type=float, default=STRENGTH, help="online move (engine.blend)")
        parser.add_argument("--dry-run", action="store_true", help="print the blend, do not write it")

    def handle(self, *args, **opts):
        path = opts["model"] or newest_model_folder(settings.TFT_MODELS_DIR)
        if path is None or not Path(path).is_dir():
            raise CommandError(f"no model folder {path}")
        if not (opts["csv_dir"] or opts["unseen_csv_dir"] or opts["simulated"]):
            raise CommandError("give --csv-dir, --unseen-csv-dir and/or --simulated: the windows to fit on")
        forecaster = load_forecaster(path, device="cpu")
        sources, named = [], []
        if opts["csv_dir"]:
            csv = _csv_source({**opts, "metrics": None})
            sources.append((csv.series, csv.metrics, tuple(opts["part"]), "real", opts["every"]))
            named.append(f"{csv.name} part {opts['part'][0]:g}-{opts['part'][1]:g}")
        if opts["unseen_csv_dir"]:
            unseen = _csv_source({**opts, "csv_dir": opts["unseen_csv_dir"], "metrics": None})
            part = (0.0, opts["unseen_part"])
            sources.append((unseen.series, unseen.metrics, part, "real", opts["unseen_every"]))
            named.append(f"{unseen.name} part 0-{opts['unseen_part']:g}")
        if opts["simulated"]:
            sim = _simulated_source({**opts, "metrics": None})
            sources.append((sim.series, sim.metrics, (0.0, 1.0), "simulated", opts["every"]))
            named.append(sim.name)
        blend = fit_blend(sources, forecaster, families=opts["families"])
        blend["strength"] = opts["strength"]
        blend["fitted_on"] = " + ".join(named)
        blend["families"] = opts["families"]
        if not opts["dry_run"]:
            write_blend(path, blend)
            logger.info("blend written", extra={"folder": str(path), "weights": blend["weights"]})
        self.stdout.write(json.dumps(blend, indent=2, default=json_default))
