"""Reading metric files for import_metrics and validate_data: contract CSV, JSON lines, NAB CSV."""

import csv
import json
from collections.abc import Iterator
from pathlib import Path

from ingest.contract import METRICS


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
