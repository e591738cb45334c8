from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ingest.files import FileFormatError, read_records
from ingest.validation import validate_record


class Command(BaseCommand):
    help = "Check metric files against the data contract without storing anything; prints every problem."

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", type=Path)
        parser.add_argument("--server")
        parser.add_argument("--metric")
        parser.add_argument("--scale", type=float, default=1.0)

    def handle(self, *args, files, server, metric, scale, **options):
        checked = bad = 0
        latest = datetime.now(UTC) + timedelta(seconds=settings.TFT_MAX_FUTURE_SECONDS)
        for path in files:
            if not path.exists():
                raise CommandError(f"{path}: no such file")
            try:
                for line_no, raw in read_records(path, server=server, metric=metric, scale=scale):
                    checked += 1
                    if isinstance(raw, FileFormatError):
                        self.stdout.write(f"{path}:{line_no}: {raw}")
                        bad += 1
                        continue
                    _, problems = validate_record(raw, line_no, latest_allowed=latest)
                    if problems:
                        bad += 1
                        for p in problems:
                            self.stdout.write(f"{path}:{line_no}: {p.field}: {p.message}")
            except FileFormatError as exc:
                raise CommandError(str(exc)) from exc
        self.stdout.write(f"checked {checked} records: {checked - bad} valid, {bad} invalid")
        if bad:
            raise CommandError(f"{bad} records break the data contract")
