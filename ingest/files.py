"""Reading metric files for import_metrics and validate_data: contract CSV, JSON lines, NAB CSV."""

import csv
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings

from ingest.contract import METRICS
from ingest.validation import parse_timestamp


class FileFormatError(ValueError):
    pass


def _number_or_text(value: str):
    try:
        return float(value)
    except ValueError:
        return value


def read_records(
    path: Path, *, server: str | None = None, metric: str | None = None, scale: float = 1.0, state: str = "healthy"
) -> Iterator[tuple[int, object]]:
    """Yield (line number, raw record dict) for every record in the file.

    CSV with the contract's columns; JSON lines (one record object per line); or the NAB layout
    `timestamp,value`, which needs --server and --metric (the value maps onto that metric, the
    other metrics are 0.0, the state is `state`).
    """
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson", ".json"}:
        with path.open(encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    yield line_no, json.loads(line)
                except json.JSONDecodeError as exc:
                    yield line_no, FileFormatError(f"not valid JSON: {exc.msg}")
        return
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or [])
        nab = columns == {"timestamp", "value"}
        if nab and not (server and metric):
            raise FileFormatError(f"{path}: NAB layout (timestamp,value) needs --server and --metric")
        if nab and metric not in METRICS:
            raise FileFormatError(f"--metric must be one of {', '.join(METRICS)}")
        for line_no, row in enumerate(reader, start=2):
            if nab:
                value = _number_or_text(row["value"])
                record = {"timestamp": row["timestamp"], "server_name": server, "state": state}
                record.update({m: 0.0 for m in METRICS})
                record[metric] = value * scale if isinstance(value, float) else value
            else:
                record = {key: (_number_or_text(val) if key in METRICS else val) for key, val in row.items()}
                if server:
                    record["server_name"] = server
            yield line_no, record


def _timestamp_or_none(raw: object) -> datetime | None:
    try:
        return parse_timestamp(raw.get("timestamp")) if isinstance(raw, dict) else None
    except ValueError:
        return None


def read_records_shifted(path: Path, *, now: datetime, **options) -> Iterator[tuple[int, object]]:
    """read_records with every timestamp moved by one offset, a whole number of steps (5 minutes),
    so that the file's newest record lands within the last step before `now`: a historical file
    (NAB's 2014 series) replayed as recent history, inside the feed's timestamp window. Reads the
    file twice (once for its newest timestamp). Timestamps that do not parse are left as they are
    (validation reports them)."""
    stamps = (_timestamp_or_none(raw) for _, raw in read_records(path, **options))
    newest = max((stamp for stamp in stamps if stamp is not None), default=None)
    if newest is None:
        yield from read_records(path, **options)
        return
    step = timedelta(minutes=settings.TFT_STEP_MINUTES)
    offset = (now - newest) // step * step
    for line_no, raw in read_records(path, **options):
        stamp = _timestamp_or_none(raw)
        if stamp is not None:
            raw = {**raw, "timestamp": (stamp + offset).isoformat()}
        yield line_no, raw
