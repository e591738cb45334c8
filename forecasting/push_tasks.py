"""Celery tasks for alert push (forecasting.alert_push): one-liners with expiry and time limits."""

from celery import shared_task
from django.conf import settings

from forecasting import alert_push


@shared_task(
    name="forecasting.push_tasks.push_alert_notification",
    autoretry_for=(alert_push.AlertPushError,),
    retry_backoff=5,  # 5 s, 10 s, 20 s … capped below; jitter spreads a fleet-wide outage's retries
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=settings.TFT_ALERT_PUSH_MAX_ATTEMPTS,
    soft_time_limit=120,
    time_limit=150,
    expires=6 * 3600,
)
def push_alert_notification(*, notification_id: int) -> bool:
    return alert_push.alert_notification_deliver(notification_id=notification_id)


@shared_task(name="forecasting.push_tasks.push_pending_alerts", soft_time_limit=60, time_limit=90, expires=110)
def push_pending_alerts() -> int:
    return alert_push.alert_notifications_pending_push()
