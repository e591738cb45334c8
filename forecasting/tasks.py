"""Celery tasks: one-liners over services. They take ids, carry expiry and time limits, and are
safe to run twice (the run's unique 'running' constraint and the unique run+server forecasts)."""

from celery import shared_task
from django.conf import settings
from django.db import transaction

from forecasting import scoring_services, services

_INTERVAL = settings.TFT_PREDICTION_INTERVAL_SECONDS


@shared_task(name="forecasting.tasks.predict_fleet", soft_time_limit=60, time_limit=90, expires=_INTERVAL * 0.9)
def predict_fleet() -> int | None:
    """Beat: start a run and fan its chunks out to the `gpu` queue."""
    run, chunks = services.prediction_run_start()
    if run is None:
        return None

    def enqueue() -> None:
        for ids in chunks:
            predict_fleet_chunk.apply_async(
                kwargs={"run_id": run.pk, "server_ids": ids}, expires=settings.TFT_RUN_STALE_SECONDS
            )

    transaction.on_commit(enqueue)
    return run.pk


@shared_task(
    name="forecasting.tasks.predict_fleet_chunk",
    soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.CELERY_TASK_TIME_LIMIT,
)
def predict_fleet_chunk(*, run_id: int, server_ids: list[int]) -> bool:
    """The TFT task (queue TFT_GPU_QUEUE): forecast a chunk; the last chunk finalises the run."""
    return services.prediction_chunk_execute(run_id=run_id, server_ids=server_ids)


@shared_task(name="forecasting.tasks.prune_runs", soft_time_limit=600, time_limit=660, expires=3600)
def prune_runs() -> int:
    return services.prediction_runs_prune()


@shared_task(
    name="forecasting.tasks.score_forecasts",
    soft_time_limit=120,
    time_limit=180,
    expires=settings.TFT_SCORE_INTERVAL_SECONDS * 0.9,
)
def score_forecasts() -> int:
    """Beat (default queue): one live-scoring pass; idempotent through the archive's band markers."""
    return scoring_services.live_scoring_pass().forecasts


@shared_task(name="forecasting.tasks.sync_models", soft_time_limit=120, time_limit=180, expires=600)
def sync_models() -> int:
    from forecasting.registry import model_versions_sync

    return len(model_versions_sync())


_TRAINING_LIMIT = settings.TFT_RETRAIN_MAX_MINUTES * 60 + 1800  # the loop's budget plus data and backtests


@shared_task(name="forecasting.tasks.retrain_model", soft_time_limit=60, time_limit=90, expires=3600)
def retrain_model() -> int | None:
    """Beat (TFT_RETRAIN_CRON): open a training run and queue it on the training queue."""
    from forecasting.training_services import training_run_request

    run = training_run_request(trigger="beat")
    return run.pk if run else None


@shared_task(name="forecasting.tasks.train_challenger", soft_time_limit=_TRAINING_LIMIT, time_limit=_TRAINING_LIMIT + 60)
def train_challenger(*, run_id: int) -> str:
    """Queue TFT_TRAINING_QUEUE: train a challenger, backtest it against the champion, decide."""
    from forecasting.retraining import training_run_execute  # torch: the training worker only

    return training_run_execute(run_id=run_id)


@shared_task(name="forecasting.tasks.compare_model", soft_time_limit=_TRAINING_LIMIT, time_limit=_TRAINING_LIMIT + 60)
def compare_model(*, run_id: int) -> str:
    """Queue TFT_TRAINING_QUEUE: backtest a chosen version against the champion (no activation)."""
    from forecasting.retraining import training_run_execute

    return training_run_execute(run_id=run_id)


# Registers the alert push tasks with the worker (autodiscovery only imports tasks.py).
from forecasting import push_tasks  # noqa: E402, F401
