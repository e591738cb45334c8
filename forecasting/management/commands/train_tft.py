"""python manage.py train_tft — train the TFT and write models/tft_model_<UTC time>/.

Data: the database (default; all servers or --servers a,b), --csv-dir DIR (contract-shaped CSVs, or
NAB layout timestamp,value with --metric; --exclude GLOB leaves files out), and/or --simulated N_SERVERS --days D (fleet simulator).
Sources can be combined (e.g. simulated fleet + a CSV folder).
"""

from __future__ import annotations

import logging
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from forecasting.engine import network, training
from forecasting.engine.blend_fit import attach_blend
from forecasting.engine.series import SeriesWindow, load_csv_dir
from forecasting.engine.spec import METRICS
from forecasting.engine.synthetic import load_generic_series
from forecasting.windows import server_histories

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Train the Temporal Fusion Transformer and write a safetensors/JSON model folder."

    def add_arguments(self, parser):
        src = parser.add_argument_group("data")
        src.add_argument("--servers", help="comma-separated server names (database source); default all")
        src.add_argument("--csv-dir", action="append", default=[], help="folder of CSV files (repeatable)")
        src.add_argument(
            "--exclude",
            action="append",
            default=[],
            metavar="GLOB",
            help="leave out CSV files whose name matches (repeatable; e.g. a held-out series)",
        )
        src.add_argument(
            "--metric",
            default="auto",
            choices=["auto", *METRICS],
            help="NAB-layout CSVs: metric that 'value' is (auto: from the file name); others are 0.0",
        )
        src.add_argument(
            "--csv-fraction",
            type=float,
            default=1.0,
            help="keep only the first fraction of each CSV series (0.6: leave the last 40%% to a backtest)",
        )
        src.add_argument("--simulated", type=int, default=0, metavar="N_SERVERS", help="simulated fleet size")
        src.add_argument("--days", type=float, default=14.0, help="days of simulated history per server")
        src.add_argument(
            "--sim-seeds", type=int, default=1, help="independent simulated fleets (seed, seed+1, ...) to add"
        )
        src.add_argument(
            "--generic",
            type=int,
            default=0,
            metavar="N_SERIES",
            help="generic synthetic series (level shifts, spikes, cycles, noise) over --days, for variety",
        )
        src.add_argument("--db", action="store_true", help="also use the database when other sources are given")
        src.add_argument(
            "--from-db",
            action="store_true",
            help="retrain like the weekly task: the DB rollups (less the last TFT_RETRAIN_HOLDOUT_DAYS) plus "
            "TFT_RETRAIN_PRIOR_DIRS, warm-started from the active model; promoted only if it beats it there",
        )

        tr = parser.add_argument_group("training")
        tr.add_argument("--epochs", type=int, default=30)
        tr.add_argument("--batches-per-epoch", type=int, default=150)
        tr.add_argument("--batch-size", type=int, default=64)
        tr.add_argument("--learning-rate", type=float, default=3e-3)
        tr.add_argument("--patience", type=int, default=5, help="early stopping: epochs without improvement")
        tr.add_argument("--max-minutes", type=float, default=15.0, help="wall-clock budget for the loop")
        tr.add_argument("--val-fraction", type=float, default=0.2, help="last part of each series held out")
        tr.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
        tr.add_argument("--seed", type=int, default=0)
        tr.add_argument(
            "--threads",
            type=int,
            default=1,
            help="torch CPU threads (1 is fastest on a shared 2-core machine; 0: torch default)",
        )

        size = parser.add_argument_group("network size")
        size.add_argument("--hidden-size", type=int, default=16)
        size.add_argument("--attention-heads", type=int, default=2)
        size.add_argument("--hidden-continuous-size", type=int, default=8)
        size.add_argument("--lstm-layers", type=int, default=1)
        size.add_argument("--dropout", type=float, default=0.1)

        out = parser.add_argument_group("output")
        out.add_argument("--out", default=None, help="parent folder for the model (default TFT_MODELS_DIR)")
        out.add_argument("--no-progress", action="store_true")
        out.add_argument("--no-backtest", action="store_true", help="skip the backtest at the end")

    def handle(self, *args, **opts):
        network.set_threads(opts["threads"])
        if opts["from_db"]:
            return self._retrain(opts)
        started = time.perf_counter()
        data = _training_data(opts)
        self.stdout.write(f"data: {len(data.series)} series, {sum(len(w.values) for w in data.series)} buckets")
        out_dir = Path(opts["out"]) if opts["out"] else Path(settings.TFT_MODELS_DIR)
        try:
            result = training.train(
                data.series,
                _train_config(opts),
                out_dir=out_dir,
                progress=not opts["no_progress"],
                data_description="\n".join(data.described),
                command=self._command_line(opts),
            )
        except (ValueError, RuntimeError) as exc:
            raise CommandError(str(exc)) from exc
        backtest_note = "skipped"
        if not opts["no_backtest"]:
            sources = training.BacktestSources(
                csv_dirs=[Path(d) for d in opts["csv_dir"]],
                metric=opts["metric"],
                exclude=opts["exclude"],
                simulated=bool(opts["simulated"]),
            )
            backtest_note = training.attach_backtest(result.path, sources, device=opts["device"])
            backtest_note += "; probabilities: " + training.attach_probability_recalibration(
                result.path, data.series, opts["val_fraction"], device=opts["device"]
            )
            if result.path is not None:  # the per-band blend with persistence (engine.blend)
                forecaster = network.load_forecaster(result.path, device=opts["device"])
                backtest_note += "; " + attach_blend(result.path, data.series, forecaster, opts["val_fraction"])
            backtest_note += "; event model: " + training.attach_event_model(
                result.path, data.series, opts["val_fraction"], device=opts["device"]
            )
        m = result.metrics
        self.stdout.write(
            self.style.SUCCESS(
                f"model {result.path.name}: val_loss {m['val_loss']:.4f} over {m['val_windows']} windows, "
                f"{m['epochs_run']} epochs ({m['stopped_by']}), {result.spec['n_parameters']} parameters, "
                f"{(time.perf_counter() - started) / 60:.1f} min; backtest: {backtest_note}\n{result.path}"
            )
        )

    def _retrain(self, opts: dict) -> None:
        """The champion/challenger path of the weekly task, run here with this command's settings."""
        from forecasting.lifecycle.retraining import training_run_execute
        from forecasting.lifecycle.services import training_run_start

        run = training_run_start(trigger="command")
        if run is None:
            raise CommandError("a training run is already running (see admin → Training runs)")
        cfg = _train_config(opts)
        overrides = {k: getattr(cfg, k) for k in _RETRAIN_OPTIONS}
        try:
            outcome = training_run_execute(run_id=run.pk, overrides=overrides)
        except Exception as exc:
            raise CommandError(f"training run {run.pk} failed: {exc}") from exc
        self.stdout.write(self.style.SUCCESS(f"training run {run.pk}: {outcome}"))

    def _command_line(self, opts: dict) -> str:
        """The command as typed, or (from call_command) the options that differ from the defaults."""
        if sys.argv[1:2] == ["train_tft"]:
            return "python manage.py train_tft " + " ".join(shlex.quote(a) for a in sys.argv[2:])
        parser = self.create_parser("manage.py", "train_tft")
        defaults = {a.dest: a.default for a in parser._actions}
        given = []
        for k, v in sorted(opts.items()):
            if k in _NOT_RECORDED or k not in defaults or v == defaults[k] or v in (None, False, []):
                continue
            flag = f"--{k.replace('_', '-')}"
            for item in v if isinstance(v, list) else [v]:
                given.append(flag if item is True else f"{flag} {shlex.quote(str(item))}")
        return "python manage.py train_tft " + " ".join(given)


_RETRAIN_OPTIONS = (
    "epochs", "batches_per_epoch", "batch_size", "learning_rate", "patience", "max_minutes", "val_fraction",
    "seed", "device", "hparams",
)
_NOT_RECORDED = {"verbosity", "settings", "pythonpath", "traceback", "no_color", "force_color", "skip_checks"}


@dataclass
class TrainingData:
    series: list[SeriesWindow] = field(default_factory=list)
    described: list[str] = field(default_factory=list)  # one model-card line per source

    def add(self, series: list[SeriesWindow], description: str) -> None:
        self.series += series
        self.described.append(description)


def _add_csv(data: TrainingData, opts: dict) -> None:
    for csv_dir in opts["csv_dir"]:
        try:
            got = load_csv_dir(Path(csv_dir), opts["metric"], fraction=opts["csv_fraction"], exclude=opts["exclude"])
        except (FileNotFoundError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        frac = f", first {opts['csv_fraction']:.0%} of each" if opts["csv_fraction"] < 1 else ""
        excluded = f", excluding {', '.join(opts['exclude'])}" if opts["exclude"] else ""
        data.add(
            got.series,
            f"- {len(got.series)} series from CSV folder `{csv_dir}` (metric {opts['metric']}{frac}{excluded})",
        )


def _add_synthetic(data: TrainingData, opts: dict) -> None:
    if opts["simulated"]:
        for k in range(max(1, opts["sim_seeds"])):
            seed = opts["seed"] + k
            data.add(
                training.load_simulated_series(opts["simulated"], opts["days"], seed),
                f"- simulated fleet: {opts['simulated']} servers x {opts['days']:g} days, seed {seed}",
            )
    if opts["generic"]:
        data.add(
            load_generic_series(opts["generic"], opts["days"], opts["seed"]),
            f"- {opts['generic']} generic synthetic series x {opts['days']:g} days, seed {opts['seed']}",
        )


def _training_data(opts: dict) -> TrainingData:
    """Every requested source as engine series, with the model card's description of each."""
    data = TrainingData()
    _add_csv(data, opts)
    _add_synthetic(data, opts)
    if opts["db"] or not (opts["csv_dir"] or opts["simulated"] or opts["generic"]):
        names = [s.strip() for s in (opts["servers"] or "").split(",") if s.strip()] or None
        got = server_histories(server_names=names)
        data.add(got, f"- {len(got)} servers from the database" + (f" ({', '.join(names)})" if names else ""))
    if not data.series:
        raise CommandError("no training data (empty database? use --csv-dir or --simulated)")
    return data


def _train_config(opts: dict) -> training.TrainConfig:
    return training.TrainConfig(
        epochs=opts["epochs"],
        batches_per_epoch=opts["batches_per_epoch"],
        batch_size=opts["batch_size"],
        learning_rate=opts["learning_rate"],
        patience=opts["patience"],
        max_minutes=opts["max_minutes"],
        val_fraction=opts["val_fraction"],
        seed=opts["seed"],
        device=opts["device"],
        hparams={
            "hidden_size": opts["hidden_size"],
            "attention_head_size": opts["attention_heads"],
            "hidden_continuous_size": opts["hidden_continuous_size"],
            "lstm_layers": opts["lstm_layers"],
            "dropout": opts["dropout"],
        },
    )
