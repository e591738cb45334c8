"""python manage.py fit_event_model — fit the event model for an existing model folder.

P(an incident starts within 30 min / 8 h) (engine.event_model, incidents per engine.incidents),
fitted from the folder's own forecasts of the given series (the backtest's sources: --csv-dir,
repeatable, and/or --simulated N --days D --seed S) and written into the folder as
event_model.json, without retraining the network. --part train (default) fits on the first 60 %
of each series and leaves the rest to `backtest`; --part all uses every origin. --learner picks
the learner (default: the one that won on held-out development series, see the model card).
"""

from __future__ import annotations

import logging

from django.core.management.base import CommandError

from forecasting.engine import event_training
from forecasting.engine.folders import write_event_model
from forecasting.management.commands import backtest

logger = logging.getLogger(__name__)


class Command(backtest.Command):
    help = "Fit the event model (incident probabilities) for a model folder from its forecasts, and store it."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--part", choices=["train", "all"], default="train", help="origins to fit on")
        parser.add_argument(
            "--every", type=int, default=event_training.SampleConfig.every, help="steps between origins"
        )

    def handle(self, *args, **opts):
        forecaster = self._forecaster(opts)
        if forecaster is None:
            raise CommandError("no model folder to fit an event model for")
        source = backtest._series_source(opts)
        cfg = event_training.SampleConfig(min_buckets=opts["min_buckets"], every=opts["every"])
        data = event_training.event_samples(
            source.series, forecaster, metrics=source.metrics, part=opts["part"], cfg=cfg
        )
        if not len(data["series"]):
            raise CommandError("no origins to fit the event model on (series too short)")
        what = "every origin" if opts["part"] == "all" else "training part (first 60 %)"
        model = event_training.fit_event_model(
            data, learner=opts["learner"], cfg=cfg, meta={"fitted_on": f"{what} of {source.name}"}
        )
        write_event_model(self.model_path, model)
        rates = ", ".join(f"{w} {r:.3f}" for w, r in model["training_event_rate"].items())
        self.stdout.write(
            f"event model ({opts['learner']}) fitted on {model['samples']} origins (event rate {rates}) "
            f"→ {self.model_path / 'event_model.json'}"
        )
