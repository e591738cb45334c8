"""python manage.py fit_event_model — fit the event model for an existing model folder.

P(an incident starts within 30 min / 8 h) (engine.event_model, incidents per engine.incidents),
fitted from the folder's own forecasts of the given series (the backtest's sources: --csv-dir,
repeatable, and/or --simulated N --days D --seed S), served as the prediction run serves them
(blended with the last value by the folder's blend.json, then interval-calibrated), and written
into the folder as event_model.json, without retraining the network. --part train (default) fits on
the first 60 % of each series and leaves the rest to `backtest`; --part all uses every origin.
--learner picks the learner (default: the one that won on held-out development series, see the
model card). --fleet-every DIR=N samples one source more sparsely (long, quiet sets);
--save-samples keeps the samples (.npz, no pickle) and --from-samples refits from them without
forecasting again (e.g. with --without to leave inputs out).
"""

from __future__ import annotations

import logging
from pathlib import Path

from django.core.management.base import CommandError

from forecasting.engine import event_model as em
from forecasting.engine import event_training
from forecasting.engine.folders import write_event_model
from forecasting.engine.incidents import WINDOWS
from forecasting.management.commands import backtest

logger = logging.getLogger(__name__)


def _stride(text: str) -> tuple[str, int]:
    fleet, sep, every = text.rpartition("=")
    if not sep or not fleet or not every.isdigit() or int(every) < 1:
        raise ValueError(f"expected FLEET=N with N ≥ 1, got {text!r}")
    return fleet, int(every)


def _left_out(text: str) -> tuple[str | None, str]:
    window, sep, feature = text.rpartition(":")
    if feature not in em.FEATURES or (sep and window not in WINDOWS):
        raise ValueError(f"expected FEATURE or WINDOW:FEATURE ({', '.join(WINDOWS)}), got {text!r}")
    return (window or None), feature


class Command(backtest.Command):
    help = "Fit the event model (incident probabilities) for a model folder from its forecasts, and store it."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--part", choices=["train", "all"], default="train", help="origins to fit on")
        parser.add_argument(
            "--every", type=int, default=event_training.SampleConfig.every, help="steps between origins"
        )
        parser.add_argument(
            "--fleet-every", type=_stride, action="append", default=[], metavar="FLEET=N",
            help="steps between origins for one source (a --csv-dir as given, or 'simulated')",
        )  # fmt: skip
        parser.add_argument("--save-samples", type=Path, help="also write the samples here (.npz)")
        parser.add_argument("--from-samples", type=Path, help="fit from samples saved by --save-samples")
        parser.add_argument(
            "--without", nargs="+", default=[], type=_left_out, metavar="[WINDOW:]FEATURE",
            help="inputs to leave out, of every window or of one (e.g. 30m:history_lor)",
        )  # fmt: skip

    def handle(self, *args, **opts):
        forecaster = self._forecaster(opts)
        if forecaster is None:
            raise CommandError("no model folder to fit an event model for")
        cfg = event_training.SampleConfig(min_buckets=opts["min_buckets"], every=opts["every"],
                                          blend=self._blend(forecaster, opts))  # fmt: skip
        if opts["from_samples"]:
            try:
                data, fitted_on = event_training.load_samples(opts["from_samples"])
            except (OSError, ValueError, KeyError) as exc:
                raise CommandError(f"cannot read samples: {exc}") from exc
        else:
            data, fitted_on = self._samples(forecaster, cfg, opts)
        if not len(data["series"]):
            raise CommandError("no origins to fit the event model on (series too short)")
        if opts["save_samples"]:
            event_training.save_samples(opts["save_samples"], data, fitted_on=fitted_on)
        everywhere = {f for w, f in opts["without"] if w is None}
        features = [f for f in em.FEATURES if f not in everywhere]
        own = {w: [f for f in features if (w, f) not in opts["without"]] for w in {w for w, _ in opts["without"] if w}}
        try:
            model = event_training.fit_event_model(data, learner=opts["learner"], cfg=cfg, features=features,
                                                   window_features=own or None, meta={"fitted_on": fitted_on})  # fmt: skip
        except ValueError as exc:  # samples without an input: leave it out with --without, or sample again
            raise CommandError(str(exc)) from exc
        write_event_model(self.model_path, model)
        rates = ", ".join(f"{w} {r:.3f}" for w, r in model["training_event_rate"].items())
        self.stdout.write(
            f"event model ({opts['learner']}) fitted on {model['samples']} origins with "
            f"{', '.join(f'{w} {len(em.window_features(model, p))}' for w, p in model['windows'].items())} inputs "
            f"(event rate {rates}) → {self.model_path / 'event_model.json'}"
        )

    def _samples(self, forecaster, cfg, opts) -> tuple[dict, str]:
        source = backtest._series_source(opts)
        strides = dict(opts["fleet_every"])
        fleet_of = {s: "simulated" if f.startswith("simulated ") else f for s, f in (source.fleets or {}).items()}
        unknown = set(strides) - set(fleet_of.values())
        if unknown:
            raise CommandError(f"--fleet-every names no source: {', '.join(sorted(unknown))}")
        every = {s: strides.get(f, cfg.every) for s, f in fleet_of.items()}
        data = event_training.event_samples(
            source.series, forecaster, metrics=source.metrics, part=opts["part"], cfg=cfg, every=every
        )
        what = "every origin" if opts["part"] == "all" else "training part (first 60 %)"
        blended = "blended as served" if cfg.blend is not None else "model alone"
        sparse = "".join(f", {f} every {n}" for f, n in strides.items())
        return data, f"{what} of {source.name} (every {cfg.every} steps{sparse}; forecasts {blended})"
