"""Fast validation of contract records.

A DRF serializer per record costs tens of microseconds; a batch of 1,000 would spend more time
validating than storing. This is a plain loop with the same rules and messages, and it reports
*every* problem as {index, field, message} so a feeder can fix a batch in one go.
"""

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings

from access.errors import ApiError
from ingest.contract import (
    METRICS,
    PERCENT_METRICS,
    RECORD_FIELDS,
    SERVER_NAME_MAX_LENGTH,
    SERVER_NAME_RE,
    STATES,
    VALID_STATES,
)

# The largest value we store per metric. The 5-minute rollups add values up, and one server's
# bucket can hold up to 3 × 10^8 records (distinct microsecond timestamps in 300 s), so a value
# near the float64 maximum (1.8e308) overflows the bucket's sum: PostgreSQL refuses the batch
# (500), SQLite stores inf. These maxima are far above anything a real server reports (1 TB/s of
# disk I/O, a latency of one day) and keep the worst-case sum (3e8 × 8.64e7 = 2.6e16) and every
# mean finite in float64 and in the model's float32 (3.4e38).
METRIC_MAXIMA: dict[str, float] = {
    "cpu_pct": 100.0,
    "mem_pct": 100.0,
    "disk_io_mb_s": 1_000_000.0,
    "latency_ms": 86_400_000.0,
}
MAX_TIMESTAMP_LENGTH = 40
_STATE_SET = frozenset(STATES)
_FIELD_SET = frozenset(RECORD_FIELDS)
# The feed response names at most this many distinct ignored fields, each cut to this length: an
# SRE needs to see "feeder X sends host_id", not a copy of a hostile body.
MAX_IGNORED_NAMES = 20
MAX_IGNORED_NAME_LENGTH = 64
_VALID_STATES_TEXT = ", ".join(VALID_STATES)
# datetime.fromisoformat accepts a few shapes ISO 8601 does not mean for a time of day (a bare
# date); we require a date and a time.
_TIMESTAMP_SHAPE = re.compile(r"\d{4}-?\d{2}-?\d{2}[T ]\d{2}")


@dataclass(slots=True, frozen=True)
class CleanRecord:
    server_name: str
    timestamp: datetime  # aware, UTC
    cpu_pct: float
    mem_pct: float
    disk_io_mb_s: float
    latency_ms: float
    state: str


@dataclass(slots=True, frozen=True)
class Problem:
    index: int | None
    field: str
    message: str

    def as_dict(self) -> dict:
        return {"index": self.index, "field": self.field, "message": self.message}


@dataclass(slots=True, frozen=True)
class TimestampWindow:
    """The instants a record may carry, both ends included."""

    earliest: datetime
    latest: datetime


def timestamp_window(*, now: datetime | None = None) -> TimestampWindow:
    """Back to the raw-record retention (TFT_RETENTION_DAYS): an older record would be dropped by
    the next prune, and its day's partition would be created only to be dropped. Ahead by
    TFT_MAX_FUTURE_SECONDS (5 minutes) of clock skew. The window also bounds the partitions one
    batch can create on PostgreSQL to the days retention manages."""
    now = now or datetime.now(UTC)
    return TimestampWindow(
        earliest=now - timedelta(days=settings.TFT_RETENTION_DAYS),
        latest=now + timedelta(seconds=settings.TFT_MAX_FUTURE_SECONDS),
    )


def _iso(moment: datetime) -> str:
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_timestamp(value: object) -> datetime:
    """ISO 8601 with or without Z, offset or fraction; naive means UTC. Raises ValueError."""
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 string")
    if len(value) > MAX_TIMESTAMP_LENGTH or not _TIMESTAMP_SHAPE.match(value):
        raise ValueError("must be an ISO 8601 date and time, e.g. 2025-10-13T16:00:00Z")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("must be an ISO 8601 date and time, e.g. 2025-10-13T16:00:00Z") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is an instant before year 1
        raise ValueError("is outside the range of dates (years 1 to 9999 in UTC)") from None


def _number(value: object) -> float:
    # bool is an int in Python but never a metric; strings are not silently coerced.
    if type(value) is float:
        number = value
    elif type(value) is int:
        try:
            number = float(value)
        except OverflowError:
            raise ValueError("must be a finite number") from None
    else:
        raise ValueError("must be a number")
    if not math.isfinite(number):
        raise ValueError("must be a finite number")
    return number


def _server_name_problem(name: object) -> str | None:
    if not isinstance(name, str):
        return "must be a string"
    if not 1 <= len(name) <= SERVER_NAME_MAX_LENGTH:
        return f"must be 1 to {SERVER_NAME_MAX_LENGTH} characters"
    if not SERVER_NAME_RE.match(name):
        return "may contain only letters, digits and . _ : @ - (starting with a letter or digit)"
    return None


def _timestamp(value: object, window: TimestampWindow) -> datetime:
    """The parsed timestamp; raises ValueError with the record's problem."""
    timestamp = parse_timestamp(value)
    if timestamp > window.latest:
        seconds = settings.TFT_MAX_FUTURE_SECONDS
        raise ValueError(f"is more than {seconds} seconds in the future (latest accepted: {_iso(window.latest)})")
    if timestamp < window.earliest:
        raise ValueError(
            f"is older than the retention window of {settings.TFT_RETENTION_DAYS} days "
            f"(TFT_RETENTION_DAYS; earliest accepted: {_iso(window.earliest)})"
        )
    return timestamp


def _timestamp_once(value: object, window: TimestampWindow, parsed: dict[str, datetime] | None) -> datetime:
    """_timestamp, looked up in ``parsed`` first and remembered there when valid."""
    if parsed is None or type(value) is not str:
        return _timestamp(value, window)
    timestamp = parsed.get(value)
    if timestamp is None:
        timestamp = parsed[value] = _timestamp(value, window)
    return timestamp


def _metric(metric: str, value: object) -> float:
    """The metric's value; raises ValueError with the record's problem."""
    number = _number(value)
    if number < 0:
        raise ValueError("must be ≥ 0")
    maximum = METRIC_MAXIMA[metric]
    if number > maximum:
        raise ValueError(
            f"must be between 0 and {maximum:.0f}" if metric in PERCENT_METRICS else f"must be at most {maximum:.0f}"
        )
    return number


def validate_record(
    raw: object, index: int, *, window: TimestampWindow, parsed: dict[str, datetime] | None = None
) -> tuple[CleanRecord | None, list[Problem]]:
    """One record's CleanRecord, or every problem it has. ``parsed`` (timestamp text -> parsed
    instant, valid ones only) is shared by the records of one batch: the guide's batch of N
    servers carries one timestamp text N times, a backfill a few dozen."""
    if not isinstance(raw, dict):
        return None, [Problem(index, "record", "must be a JSON object with the contract's 7 fields")]
    missing = [name for name in RECORD_FIELDS if name not in raw]
    problems = [Problem(index, name, "is required") for name in missing]
    name = raw.get("server_name")
    if "server_name" not in missing and (message := _server_name_problem(name)):
        problems.append(Problem(index, "server_name", message))
    timestamp = None
    if "timestamp" not in missing:
        try:
            timestamp = _timestamp_once(raw["timestamp"], window, parsed)
        except ValueError as exc:
            problems.append(Problem(index, "timestamp", str(exc)))
    values: dict[str, float] = {}
    for metric in METRICS:
        if metric not in missing:
            try:
                values[metric] = _metric(metric, raw[metric])
            except ValueError as exc:
                problems.append(Problem(index, metric, str(exc)))
    state = raw.get("state")
    if "state" not in missing and (not isinstance(state, str) or state not in _STATE_SET):
        problems.append(Problem(index, "state", f"must be one of: {_VALID_STATES_TEXT}"))
    if problems:
        return None, problems
    return CleanRecord(server_name=name, timestamp=timestamp, state=state, **values), problems


@dataclass(slots=True, frozen=True)
class IgnoredFields:
    count: int  # field values ignored: a field on 3 records counts 3
    names: tuple[str, ...]  # distinct names, sorted, at most MAX_IGNORED_NAMES

    def as_dict(self) -> dict:
        return {"count": self.count, "names": list(self.names)}


def ignored_fields(records: list[dict]) -> IgnoredFields:
    """Fields beyond the contract's 7 in valid records. They are accepted (a newer feeder must not be
    refused) and not stored, and the feed response reports them so a typo'd field is noticed."""
    count = 0
    names: set[str] = set()
    for raw in records:
        extra = raw.keys() - _FIELD_SET
        if extra:
            count += len(extra)
            names.update(extra)
    shown = sorted(name[:MAX_IGNORED_NAME_LENGTH] for name in names)
    return IgnoredFields(count=count, names=tuple(dict.fromkeys(shown))[:MAX_IGNORED_NAMES])


def validate_records(records: list, *, now: datetime | None = None) -> tuple[list[CleanRecord], list[Problem]]:
    """Validate every record; returns the clean ones and every problem found."""
    window = timestamp_window(now=now)
    clean: list[CleanRecord] = []
    problems: list[Problem] = []
    parsed: dict[str, datetime] = {}
    for index, raw in enumerate(records):
        record, found = validate_record(raw, index, window=window, parsed=parsed)
        if found:
            problems.extend(found)
        else:
            clean.append(record)
    return clean, problems


class BatchRejectedError(ApiError):
    """The request body as a whole, or some of its records, break the contract (a 4xx whose body
    names each record index and field: see access.errors.ApiError)."""


def validate_feed_body(data: object, *, max_records: int, now: datetime | None = None) -> list[CleanRecord]:
    """The whole POST /feed/data body: the envelope, then every record. Raises BatchRejectedError."""
    if not isinstance(data, dict):
        raise BatchRejectedError(
            400,
            "invalid_body",
            'the body must be a JSON object: {"records": [...]}',
            [Problem(None, "records", "is required")],
        )
    records = data.get("records")
    if records is None:
        raise BatchRejectedError(
            400, "invalid_body", '"records" is required', [Problem(None, "records", "is required")]
        )
    if not isinstance(records, list):
        raise BatchRejectedError(
            400, "invalid_body", '"records" must be a list of records', [Problem(None, "records", "must be a list")]
        )
    if not records:
        raise BatchRejectedError(
            400, "empty_batch", '"records" is empty', [Problem(None, "records", "must contain at least one record")]
        )
    if len(records) > max_records:
        raise BatchRejectedError(
            413,
            "batch_too_large",
            f"{len(records)} records in one batch; the limit is {max_records} (TFT_MAX_BATCH_RECORDS)",
            [Problem(None, "records", f"must contain at most {max_records} records")],
        )
    clean, problems = validate_records(records, now=now)
    if problems:
        bad = len({p.index for p in problems})
        raise BatchRejectedError(
            400,
            "invalid_records",
            f"{bad} of {len(records)} records break the data contract; nothing was stored",
            problems,
        )
    return clean
