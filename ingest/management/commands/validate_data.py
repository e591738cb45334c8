from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from ingest.files import FileFormatError, read_records, read_records_shifted
from ingest.validation import timestamp_window, validate_record


class Command(BaseCommand):
    help = "Check metric files against the data contract without storing anything; prints every problem."

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", type=Path)
        parser.add_argument("--server")
        parser.add_argument("--metric")
        parser.add_argument("--scale", type=float, default=1.0)
        parser.add_argument(
            "--shift-to-now",
            action="store_true",
            help="move each file's timestamps by whole 5-minute steps so its newest record is now (old files "
            "such as NAB's; records older than TFT_RETENTION_DAYS are refused)",
        )

    def handle(self, *args, files, server, metric, scale, shift_to_now, **options):
        checked = bad = 0
        now = datetime.now(UTC)
        window = timestamp_window(now=now)
        reader = partial(read_records_shifted, now=now) if shift_to_now else read_records
        for path in files:
            if not path.exists():
                raise CommandError(f"{path}: no such file")
            try:
                for line_no, raw in reader(path, server=server, metric=metric, scale=scale):
                    checked += 1
                    if isinstance(raw, FileFormatError):
                        self.stdout.write(f"{path}:{line_no}: {raw}")
                        bad += 1
                        continue
                    _, problems = validate_record(raw, line_no, window=window)
                    if problems:
                        bad += 1
                        for p in problems:
                            self.stdout.write(f"{path}:{line_no}: {p.field}: {p.message}")
            except FileFormatError as exc:
                raise CommandError(str(exc)) from exc
        self.stdout.write(f"checked {checked} records: {checked - bad} valid, {bad} invalid")
        if bad:
            raise CommandError(f"{bad} records break the data contract")
