from django.core.management.base import BaseCommand
from django.db import connection

from ingest.services import legacy_records_move


class Command(BaseCommand):
    help = (
        "Move raw records of a database upgraded by migration 0004 from ingest_metricrecord_legacy into "
        "the day-partitioned table, in batches (one transaction each) while the feed runs. Resumable: "
        "run it again after an interruption and it continues where it stopped."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=50_000, help="records per transaction")
        parser.add_argument("--max-batches", type=int, default=None, help="stop after this many batches")

    def handle(self, *args, batch_size, max_batches, **options):
        if connection.vendor != "postgresql":
            self.stdout.write("nothing to do: SQLite keeps one plain table")
            return

        def progress(moved: int, remaining: int) -> None:
            self.stdout.write(f"moved {moved} records, about {remaining} left")

        result = legacy_records_move(batch_size=batch_size, max_batches=max_batches, on_batch=progress)
        state = "done, legacy table dropped" if result["done"] else "stopped; run it again to continue"
        self.stdout.write(
            f"moved {result['moved']} records in {result['batches']} batches "
            f"({result['duplicates']} already re-sent after the upgrade, counted once): {state}"
        )
