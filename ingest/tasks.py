from celery import shared_task

from ingest.services import records_prune


@shared_task(name="ingest.tasks.prune_records", soft_time_limit=1800, time_limit=1900, expires=3600)
def prune_records() -> int:
    return records_prune()
