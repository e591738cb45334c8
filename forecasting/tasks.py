"""Celery tasks: one-liners over services. They take ids, carry expiry and time limits, and are
safe to run twice (the run's unique 'running' constraint, the unique run+server forecasts, the
outbox's compare-and-swap).

Importing this module loads no torch: the tasks that need the network (the `gpu` queue's chunk, the
training queue's runs) import their service inside the task, so a default-queue worker (beat's
runs, scoring, push, prune) never loads it. Services enqueue by task name (`send_task`), never by
importing this module; the names are the ones queued messages and beat schedules carry, so they
stay as they are when code moves (the alert push tasks keep their `forecasting.push_tasks.` names)."""

from celery import shared_task
from django.conf import settings

from forecasting import registry
from forecasting.alerts import push as alert_push
from forecasting.lifecycle import services as training_services
from forecasting.runs import services
from forecasting.scoring import services as scoring_services

_INTERVAL = settings.TFT_PREDICTION_INTERVAL_SECONDS


@shared_task(name="forecasting.tasks.predict_fleet", soft_time_limit=60, time_limit=90, expires=_INTERVAL * 0.9)
def predict_fleet() -> int | None:
    """Beat: start a run; its chunks go to the `gpu` queue on commit."""
    return services.prediction_run_schedule()


@shared_task(
    name=services.CHUNK_TASK,
    soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.CELERY_TASK_TIME_LIMIT,
)
def predict_fleet_chunk(*, run_id: int, server_ids: list[int]) -> bool:
    """The TFT task (queue TFT_GPU_QUEUE): forecast a chunk; the last chunk finalises the run."""
    from forecasting.runs.chunks import prediction_chunk_execute  # torch: the gpu queue's worker only

    return prediction_chunk_execute(run_id=run_id, server_ids=server_ids)


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
    return len(registry.model_versions_sync())


_TRAINING_LIMIT = settings.TFT_RETRAIN_MAX_MINUTES * 60 + 1800  # the loop's budget plus data and backtests


@shared_task(name="forecasting.tasks.retrain_model", soft_time_limit=60, time_limit=90, expires=3600)
def retrain_model() -> int | None:
    """Beat (TFT_RETRAIN_CRON): open a training run and queue it on the training queue."""
    run = training_services.training_run_request(trigger="beat")
    return run.pk if run else None


@shared_task(name="forecasting.tasks.train_challenger", soft_time_limit=_TRAINING_LIMIT, time_limit=_TRAINING_LIMIT + 60)
def train_challenger(*, run_id: int) -> str:
    """Queue TFT_TRAINING_QUEUE: train a challenger, backtest it against the champion, decide."""
    from forecasting.lifecycle.retraining import training_run_execute  # torch: the training worker only

    return training_run_execute(run_id=run_id)


@shared_task(name="forecasting.tasks.compare_model", soft_time_limit=_TRAINING_LIMIT, time_limit=_TRAINING_LIMIT + 60)
def compare_model(*, run_id: int) -> str:
    """Queue TFT_TRAINING_QUEUE: backtest a chosen version against the champion (no activation)."""
    from forecasting.lifecycle.retraining import training_run_execute  # torch: the training worker only

    return training_run_execute(run_id=run_id)


@shared_task(
    name=alert_push.PUSH_TASK,
    autoretry_for=(alert_push.AlertPushError,),
    retry_backoff=5,  # 5 s, 10 s, 20 s … capped below; jitter spreads a fleet-wide outage's retries
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=settings.TFT_ALERT_PUSH_MAX_ATTEMPTS,
    soft_time_limit=120,
    time_limit=150,
    expires=alert_push.PUSH_EXPIRES_SECONDS,
)
def push_alert_notification(*, notification_id: int) -> bool:
    return alert_push.alert_notification_deliver(notification_id=notification_id)


@shared_task(name="forecasting.push_tasks.push_pending_alerts", soft_time_limit=60, time_limit=90, expires=110)
def push_pending_alerts() -> int:
    return alert_push.alert_notifications_pending_push()
