from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.management.base import BaseCommand

from ingest.services import records_prune


class Command(BaseCommand):
    help = "Delete raw records older than TFT_RETENTION_DAYS (rollups are kept for model context)."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=None, help="override TFT_RETENTION_DAYS")

    def handle(self, *args, days, **options):
        cutoff = datetime.now(UTC) - timedelta(days=days if days is not None else settings.TFT_RETENTION_DAYS)
        deleted = records_prune(older_than=cutoff)
        self.stdout.write(f"deleted {deleted} raw records older than {cutoff.isoformat()}")
