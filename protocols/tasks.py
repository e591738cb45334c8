from celery import shared_task

from protocols.services import pending_flush


@shared_task(soft_time_limit=60, time_limit=90)
def flush_pending_records() -> None:
    """Store (or drop) incomplete records whose wait ran out when no new samples arrive to do it."""
    pending_flush()
