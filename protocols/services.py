"""Writes for the protocols app: samples → contract records → ingest's one write path.

samples_store is atomic like POST /feed/data: the request's complete records, the pieces of
incomplete ones (PendingRecord) and any records that this request completes or whose wait ran out
commit together or not at all. records_ingest ignores a (server, timestamp) already stored, so a
sender's retry stores nothing twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction

from ingest.contract import METRICS
from ingest.services import records_ingest
from ingest.validation import BatchRejectedError, CleanRecord, validate_records
from protocols.mapping import STATE_FIELD, Key, Partials, partials_validate, record_dict
from protocols.metrics import records_count
from protocols.selectors import last_known_values

logger = logging.getLogger(__name__)

_TABLE = "protocols_pendingrecord"
_FIELDS = (*METRICS, STATE_FIELD)
_CHUNK = 500  # rows per statement: 8 parameters each, far below SQLite's limit
EXPIRED_PER_PASS = 10_000


@dataclass(frozen=True, slots=True)
class StoreResult:
    stored: int
    duplicates: int
    pending: int  # incomplete records now waiting
    filled: int
    dropped: int


def samples_validate(*, partials: Partials) -> dict[Key, CleanRecord]:
    """The complete records, clean; 400 naming every record a sample breaks the contract for, 413
    for more records in one request than the JSON feed takes (TFT_MAX_BATCH_RECORDS)."""
    limit = settings.TFT_MAX_BATCH_RECORDS
    if len(partials.records) > limit:
        raise BatchRejectedError(
            413,
            "batch_too_large",
            f"the samples make {len(partials.records)} records; the limit is {limit} a request (TFT_MAX_BATCH_RECORDS):"
            " send fewer samples a request (Prometheus: queue_config.max_samples_per_send)",
        )
    problems, complete = partials_validate(partials)
    if problems:
        raise BatchRejectedError(
            400,
            "invalid_samples",
            f"{len(problems)} problems with the samples break the data contract; nothing was stored",
            problems[:100],
        )
    return complete


def _pending_merge(partial: dict[Key, dict], *, now: datetime) -> list[tuple[Key, dict]]:
    """Add the pieces to the waiting records; returns the records this completed (and removes them).

    One upsert per chunk, in key order, so concurrent requests lock pending rows in one order.
    """
    completed: list[tuple[Key, dict]] = []
    done_ids: list[int] = []
    keys = sorted(partial)
    updates = ", ".join(f"{f} = COALESCE(excluded.{f}, {_TABLE}.{f})" for f in _FIELDS)
    with connection.cursor() as cursor:
        for start in range(0, len(keys), _CHUNK):
            part = keys[start : start + _CHUNK]
            params: list = []
            for key in part:
                values = partial[key]
                params += [key[0], key[1], *(values.get(f) for f in _FIELDS), now]
            placeholder = "(" + ", ".join(["%s"] * (len(_FIELDS) + 3)) + ")"
            cursor.execute(
                f"INSERT INTO {_TABLE} (server_name, ts_ms, {', '.join(_FIELDS)}, created_at) "
                f"VALUES {', '.join([placeholder] * len(part))} "
                f"ON CONFLICT (server_name, ts_ms) DO UPDATE SET {updates} "
                f"RETURNING id, server_name, ts_ms, {', '.join(_FIELDS)}",
                params,
            )
            for row_id, server, ts_ms, *values in cursor.fetchall():
                merged = {f: v for f, v in zip(_FIELDS, values, strict=True) if v is not None}
                if all(m in merged for m in METRICS):
                    completed.append(((server, ts_ms), merged))
                    done_ids.append(row_id)
        _delete(cursor, done_ids)
    return completed


def _delete(cursor, ids: list[int]) -> None:
    for start in range(0, len(ids), _CHUNK):
        part = ids[start : start + _CHUNK]
        cursor.execute(f"DELETE FROM {_TABLE} WHERE id IN ({', '.join(['%s'] * len(part))})", part)


def _pending_take_expired(*, now: datetime) -> list[tuple[Key, dict]]:
    """Remove and return the records whose wait has run out (another transaction's are skipped)."""
    cutoff = now - timedelta(seconds=settings.TFT_PROTOCOL_WAIT_SECONDS)
    lock = " FOR UPDATE SKIP LOCKED" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {_TABLE} WHERE id IN (SELECT id FROM {_TABLE} WHERE created_at < %s "
            f"ORDER BY id LIMIT {EXPIRED_PER_PASS}{lock}) RETURNING server_name, ts_ms, {', '.join(_FIELDS)}",
            [cutoff],
        )
        rows = cursor.fetchall()
    out = []
    for server, ts_ms, *values in sorted(rows, key=lambda r: (r[0], r[1])):
        out.append(((server, ts_ms), {f: v for f, v in zip(_FIELDS, values, strict=True) if v is not None}))
    return out


def _fill(expired: list[tuple[Key, dict]]) -> tuple[list[dict], int]:
    """Expired records completed from each server's last known values; returns (records, dropped)."""
    if settings.TFT_PROTOCOL_INCOMPLETE == "drop":
        return [], len(expired)
    records, dropped = [], 0
    for key, values in expired:
        known = last_known_values(server_name=key[0], before=datetime.fromtimestamp(key[1] / 1000, tz=UTC))
        if known is None:
            dropped += 1
            continue
        merged = {**known, **values}
        if STATE_FIELD not in values:  # the default, not the last record's state, as for a complete record
            merged.pop(STATE_FIELD)
        records.append(record_dict(key, merged))
    return records, dropped


def samples_store(*, partials: Partials, now: datetime | None = None) -> StoreResult:
    """Store what the samples make up; raises BatchRejectedError (400) before storing anything."""
    complete = samples_validate(partials=partials)
    now = now or datetime.now(UTC)
    _, partial = partials.complete()
    with transaction.atomic():
        completed = _pending_merge(partial, now=now) if partial else []
        expired = _pending_take_expired(now=now)
        filled, dropped = _fill(expired)
        merged, problems = validate_records([record_dict(k, v) for k, v in completed] + filled)
        if problems:  # the pieces passed one by one; a merged record cannot break the rules
            raise BatchRejectedError(400, "invalid_samples", "merged records break the data contract", problems[:100])
        clean = list(complete.values()) + merged
        result = records_ingest(records=clean) if clean else None
    stored = result.accepted if result else 0
    duplicates = result.duplicates if result else 0
    pending = len(partial) - len(completed)
    records_count(stored=stored, duplicate=duplicates, pending=pending, filled=len(filled), dropped=dropped)
    if dropped:
        logger.warning("incomplete records dropped after the wait", extra={"dropped": dropped})
    return StoreResult(stored=stored, duplicates=duplicates, pending=pending, filled=len(filled), dropped=dropped)


def pending_flush(*, now: datetime | None = None) -> StoreResult:
    """Store or drop the records whose wait ran out (the beat task, for when no sample arrives)."""
    return samples_store(partials=Partials(), now=now)
