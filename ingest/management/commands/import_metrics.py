from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from ingest.files import FileFormatError, read_records, read_records_shifted
from ingest.services import records_ingest
from ingest.validation import timestamp_window, validate_record

CHUNK = 5000
MAX_PROBLEMS_SHOWN = 20


class Command(BaseCommand):
    help = (
        "Import metric records (contract CSV, JSON lines, or NAB timestamp,value CSV) through the same "
        "validation and idempotent ingest as POST /feed/data. Invalid records are reported and skipped."
    )

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", type=Path)
        parser.add_argument("--server", help="server_name for NAB files (or to override the file's)")
        parser.add_argument("--metric", help="contract field that a NAB file's value maps onto")
        parser.add_argument("--scale", type=float, default=1.0, help="multiply NAB values (unit conversion)")
        parser.add_argument("--state", default="healthy", help="state for NAB records")
        parser.add_argument("--no-progress", action="store_true")
        parser.add_argument(
            "--shift-to-now",
            action="store_true",
            help="move each file's timestamps by whole 5-minute steps so its newest record is now (old files "
            "such as NAB's; records older than TFT_RETENTION_DAYS are refused)",
        )

    def handle(self, *args, files, server, metric, scale, state, no_progress, shift_to_now, **options):
        totals = {"accepted": 0, "duplicates": 0, "rejected": 0}
        shown = 0
        for path in files:
            if not path.exists():
                raise CommandError(f"{path}: no such file")
            now = datetime.now(UTC)
            window = timestamp_window(now=now)
            reader = partial(read_records_shifted, now=now) if shift_to_now else read_records
            chunk = []
            try:
                rows = reader(path, server=server, metric=metric, scale=scale, state=state)
                for line_no, raw in tqdm(rows, desc=path.name, unit=" rec", disable=no_progress, mininterval=1):
                    if isinstance(raw, FileFormatError):
                        problems = [str(raw)]
                        record = None
                    else:
                        record, found = validate_record(raw, line_no, window=window)
                        problems = [f"{p.field}: {p.message}" for p in found]
                    if record is None:
                        totals["rejected"] += 1
                        if shown < MAX_PROBLEMS_SHOWN:
                            self.stderr.write(f"{path}:{line_no}: {'; '.join(problems)}")
                            shown += 1
                        continue
                    chunk.append(record)
                    if len(chunk) >= CHUNK:
                        self._flush(chunk, totals)
                        chunk = []
            except FileFormatError as exc:
                raise CommandError(str(exc)) from exc
            self._flush(chunk, totals)
        if totals["rejected"] > shown:
            self.stderr.write(f"… {totals['rejected'] - shown} more rejected records not shown")
        self.stdout.write(
            f"accepted {totals['accepted']}, duplicates {totals['duplicates']}, rejected {totals['rejected']}"
        )
        if totals["rejected"]:
            raise CommandError(f"{totals['rejected']} records were rejected (see above); the valid ones were stored")

    @staticmethod
    def _flush(chunk, totals):
        if not chunk:
            return
        result = records_ingest(records=chunk)
        totals["accepted"] += result.accepted
        totals["duplicates"] += result.duplicates
