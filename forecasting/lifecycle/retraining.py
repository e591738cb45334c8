"""Worker-side retraining (imports torch through the engine): train a challenger on the fleet's
rollups plus the shipped real data, backtest it and the champion on the held-back recent days with
the `backtest` protocol (engine.backtest.run_backtest), and hand the figures to the decision.

Runs on the `training` queue's worker only; the web process uses forecasting.lifecycle.services.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings

from forecasting import registry
from forecasting.engine import backtest as bt
from forecasting.engine import folders, network, training
from forecasting.engine.series import SeriesWindow, load_csv_dir
from forecasting.engine.spec import CONTEXT, STEPS_PER_DAY
from forecasting.lifecycle import services as training_services
from forecasting.models import ModelVersion, TrainingRun
from forecasting.windows import server_histories

logger = logging.getLogger(__name__)

EVENT_MODEL_NOTE = "event_model"  # the challenger's metrics.json: where its event model came from


@dataclass
class FleetSplit:
    """The fleet's own series cut at ``cut``: training before it, the held-back days after it
    (each with one context of history before the cut, so every origin lies in the held-back days)."""

    cut: datetime | None
    train: list[SeriesWindow] = field(default_factory=list)
    holdout: list[SeriesWindow] = field(default_factory=list)
    holdout_steps: int = 0
    skipped: list[str] = field(default_factory=list)  # servers without a full held-back window

    @property
    def test_fraction(self) -> float:
        return self.holdout_steps / (CONTEXT + self.holdout_steps)


def _part(w: SeriesWindow, lo: int, hi: int) -> SeriesWindow:
    start = w.start + timedelta(minutes=w.step_minutes * lo)
    return SeriesWindow(w.server, w.profile, start, w.step_minutes, w.values[lo:hi], w.states[lo:hi], w.calendar)


def fleet_split(series: list[SeriesWindow], holdout_days: int) -> FleetSplit:
    """Hold the most recent ``holdout_days`` of the fleet out of training."""
    if not series:
        return FleetSplit(cut=None)
    step = series[0].step_minutes
    newest = max(w.start + timedelta(minutes=step * len(w.values)) for w in series)
    steps = holdout_days * STEPS_PER_DAY
    split = FleetSplit(cut=newest - timedelta(minutes=step * steps), holdout_steps=steps)
    for w in series:
        at = round((split.cut - w.start).total_seconds() / (step * 60))
        if at >= 2:
            split.train.append(_part(w, 0, min(at, len(w.values))))
        if at - CONTEXT >= 0 and at + steps <= len(w.values):
            split.holdout.append(_part(w, at - CONTEXT, at + steps))
        else:
            split.skipped.append(w.server)
    return split


def _prior_series() -> tuple[list[SeriesWindow], list[str]]:
    """The shipped real data (data/nab, data/nab_extra): a prior beside the fleet's own series."""
    series, described = [], []
    for directory in settings.TFT_RETRAIN_PRIOR_DIRS:
        path = directory if directory.is_absolute() else Path(settings.BASE_DIR) / directory
        if path.is_dir():
            got = load_csv_dir(path, "auto").series
            series += got
            described.append(f"- {len(got)} series from `{directory}` (prior)")
    return series, described


def _config(champion: ModelVersion | None, overrides: dict) -> training.TrainConfig:
    defaults = {"max_minutes": float(settings.TFT_RETRAIN_MAX_MINUTES), "device": settings.TFT_DEVICE}
    cfg = training.TrainConfig(**(defaults | overrides))
    if settings.TFT_RETRAIN_WARM_START and champion is not None and champion.valid and champion.spec:
        cfg.warm_start = champion.path
        cfg.hparams = dict(champion.spec["hparams"])  # the champion's weights need its network
    return cfg


def _backtest(holdout: FleetSplit, forecaster) -> dict:
    return bt.run_backtest(holdout.holdout, forecaster, test_fraction=holdout.test_fraction)["methods"]


def _load(version: ModelVersion):
    return network.load_forecaster(Path(version.path), device=settings.TFT_DEVICE, threads=settings.TFT_TORCH_THREADS)


def _backtests(split: FleetSplit, challenger: ModelVersion, champion: ModelVersion | None, run_id: int) -> dict:
    training_services.training_run_progress(run_id=run_id, progress={"phase": "backtest"})
    metrics: dict = {
        "holdout": {
            "cut": split.cut.isoformat() if split.cut else None,
            "days": settings.TFT_RETRAIN_HOLDOUT_DAYS,
            "servers": len(split.holdout),
            "skipped_servers": split.skipped,
        },
        "challenger": _backtest(split, _load(challenger)),
    }
    if champion is not None and champion.valid:
        metrics["champion"] = _backtest(split, _load(champion))
    return metrics


def _train(run: TrainingRun, split: FleetSplit, overrides: dict) -> ModelVersion:
    prior, described = _prior_series()
    cfg = _config(run.champion, overrides)
    # the worker's cores are shared with the web and prediction workers: OpenMP threads that wait
    # for a busy core make a CPU training many times slower (TFT_TORCH_THREADS=1 there)
    network.set_threads(settings.TFT_TORCH_THREADS)

    def on_epoch(row: dict) -> None:
        progress = {"phase": "training", "epoch": row["epoch"], "epochs": row["epochs"]}
        training_services.training_run_progress(
            run_id=run.pk, progress={**progress, "val_loss": row["val_loss"], "best_val_loss": row["best_val_loss"]}
        )

    result = training.train(
        split.train + prior,
        cfg,
        out_dir=Path(settings.TFT_MODELS_DIR),
        progress=False,
        data_description="\n".join([f"- {len(split.train)} servers from the database before {split.cut}", *described]),
        command=f"training run {run.pk} ({run.trigger})",
        on_epoch=on_epoch,
        extra_metrics={registry.RETRAIN_KEY: {"training_run": run.pk, "warm_start": cfg.warm_start or None}},
    )
    _event_model_carry(run.champion, result.path)
    return registry.model_version_register(path=result.path)


def _event_model_carry(champion: ModelVersion | None, path: Path | None) -> None:
    """The challenger serves incident probabilities from its champion's event model (copied, not
    refitted: see folders.carry_event_model), never silently from the old bound; the note goes into
    its metrics (and from there into the run's)."""
    if path is None:
        return
    if champion is None or not champion.path:
        note = "none: no champion to carry it from; the challenger serves the probability bound"
    else:
        note = folders.carry_event_model(Path(champion.path), path)
    logger.info("challenger event model", extra={"folder": str(path), "event_model": note})
    folders.update_metrics(path, EVENT_MODEL_NOTE, note)


def training_run_execute(*, run_id: int, overrides: dict | None = None) -> str:
    """Train, backtest and decide one claimed run; a failure marks it failed (nothing activated)."""
    if not training_services.training_run_claim(run_id=run_id):
        return "not claimed (already taken or no longer running)"
    run = TrainingRun.objects.select_related("champion", "challenger").get(pk=run_id)
    try:
        split = fleet_split(server_histories(), settings.TFT_RETRAIN_HOLDOUT_DAYS)
        if not split.holdout:
            raise ValueError(f"no server has {settings.TFT_RETRAIN_HOLDOUT_DAYS} held-back days plus a day of history")
        challenger = run.challenger if run.kind == TrainingRun.Kind.COMPARE else _train(run, split, overrides or {})
        metrics = _backtests(split, challenger, run.champion, run.pk)
        metrics["training"] = challenger.metrics.get(registry.RETRAIN_KEY, {}) | {
            k: challenger.metrics.get(k) for k in ("val_loss", "epochs_run", "stopped_by", "duration_s", EVENT_MODEL_NOTE)
        }
        decided = training_services.training_run_decide(run_id=run_id, challenger_id=challenger.pk, metrics=metrics)
    except Exception as exc:  # recorded on the run; the active model keeps serving
        logger.exception("training run failed", extra={"training_run": run_id})
        training_services.training_run_fail(run_id=run_id, error=f"{type(exc).__name__}: {exc}")
        raise
    training_services.candidates_prune()
    return f"{decided.decision}: {decided.reason}"
