from celery import shared_task

from ingest.fold import records_fold_due
from ingest.services import record_partitions_maintain, records_prune


@shared_task(name="ingest.tasks.prune_records", soft_time_limit=1800, time_limit=1900, expires=3600)
def prune_records() -> int:
    return records_prune()


@shared_task(name="ingest.tasks.maintain_record_partitions", soft_time_limit=600, time_limit=660, expires=3000)
def maintain_record_partitions() -> dict[str, int]:
    return record_partitions_maintain()


@shared_task(name="ingest.tasks.fold_pending_records", soft_time_limit=60, time_limit=90, expires=9)
def fold_pending_records() -> int:
    return records_fold_due()
