"""Writes for the ingest app: records, rollups, counters, retention.

records_ingest is the one write path for the API and the import command. A batch is one
transaction: its records and their increments (5-minute rollups, server counters, day counts)
commit together or not at all, so an acknowledged record is stored exactly once and counted once.
On PostgreSQL a batch of servers past warm-up appends its increments to ingest_pendingfold and
records_fold adds them to the rollups and counters later (readers fold first); any other batch,
and every batch on SQLite, updates them in its own transaction.
"""

import functools
import logging
import os
import random
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F

from ingest import partitions
from ingest.contract import METRICS, STATES, profile_for
from ingest.fold import (
    BUCKET_COLUMNS,
    FOLD_LOCK,
    PENDING_ARRAYS,
    PENDING_COLUMNS,
    PENDING_FOLD,
    bucket_conflict_clause,
    bucket_merge_sql,
    fold_locked,
    greatest_sql,
    records_fold,
)
from ingest.models import FeedCounter, MetricBucket
from ingest.selectors import feed_totals, silent_since
from ingest.validation import CleanRecord

logger = logging.getLogger(__name__)

_RECORD_COLUMNS = ("server_id", "timestamp", *METRICS, "state", "received_at")
_PG_TYPES = {
    "server_id": "bigint",
    "timestamp": "timestamptz",
    "received_at": "timestamptz",
    "bucket_start": "timestamptz",
    "count": "integer",
    "state": "text",
    "name": "text",
    "profile": "text",
    "first_seen": "timestamptz",
    "last_seen": "timestamptz",
    "last_received_at": "timestamptz",
    "record_count": "bigint",
}
# SQLite has at most 32,766 host parameters per statement.
_SQLITE_MAX_PARAMS = 30_000


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: int
    duplicates: int
    tick: int
    window_size: int
    servers_tracked: int
    servers_ready: int

    @property
    def warmup_complete(self) -> bool:
        return self.servers_tracked > 0 and self.servers_ready == self.servers_tracked


def _pg_type(column: str) -> str:
    return _PG_TYPES.get(column, "integer" if column.startswith("n_") else "float8")


def _insert(
    table: str, columns: tuple[str, ...], rows: list[tuple], *, tail: str = "", returning: str = ""
) -> list[tuple]:
    """INSERT many rows in one statement (chunked only where SQLite's parameter limit forces it).

    Postgres gets one array per column through unnest(), which keeps the statement text constant
    and the round trips at one per table.
    """
    if not rows:
        return []
    column_list = ", ".join(columns)
    suffix = f" {tail}" + (f" RETURNING {returning}" if returning else "")
    out: list[tuple] = []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            arrays = ", ".join(f"%s::{_pg_type(c)}[]" for c in columns)
            sql = f"INSERT INTO {table} ({column_list}) SELECT * FROM unnest({arrays}){suffix}"
            cursor.execute(sql, _pg_arrays(rows))
            if returning:
                out.extend(cursor.fetchall())
            return out
        adapt = connection.ops.adapt_datetimefield_value
        per_row = len(columns)
        chunk = max(1, _SQLITE_MAX_PARAMS // per_row)
        placeholder = "(" + ", ".join(["%s"] * per_row) + ")"
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            params = [adapt(v) if isinstance(v, datetime) else v for row in part for v in row]
            # "SELECT … WHERE true" keeps SQLite from reading ON CONFLICT as part of a join.
            sql = (
                f"INSERT INTO {table} ({column_list}) SELECT * FROM (VALUES {', '.join([placeholder] * len(part))}) "
                f"WHERE true{suffix}"
            )
            cursor.execute(sql, params)
            if returning:
                out.extend(cursor.fetchall())
    return out


def _pg_array(values) -> str:
    """A Postgres array literal. psycopg adapts a Python list element by element (µs each); one
    joined string per column is several times faster. Text elements are double-quoted so a
    server literally named NULL stays a name; validated names and states contain no quote or
    backslash, so no escaping is needed."""
    first = values[0]
    if isinstance(first, str):
        return "{" + ",".join(f'"{v}"' for v in values) + "}"
    if isinstance(first, datetime):
        # A batch carries few distinct timestamps (one in the guide's N servers × 1 timestamp).
        text = {v: v.isoformat() for v in set(values)}
        return "{" + ",".join(map(text.__getitem__, values)) + "}"
    return "{" + ",".join(map(str, values)) + "}"


def _pg_arrays(rows: list[tuple]) -> list[str]:
    return [_pg_array(col) for col in zip(*rows, strict=True)]


def _upsert_servers(records: list[CleanRecord], *, received_at: datetime) -> dict[str, int]:
    """Create unseen servers and lock every server of the batch, in name order.

    Locking in one global order is what keeps concurrent overlapping batches from deadlocking.
    """
    spans: dict[str, list[datetime]] = {}
    for record in records:
        span = spans.get(record.server_name)
        if span is None:
            spans[record.server_name] = [record.timestamp, record.timestamp]
        elif record.timestamp < span[0]:
            span[0] = record.timestamp
        elif record.timestamp > span[1]:
            span[1] = record.timestamp
    rows = [(name, profile_for(name), span[0], span[1], received_at, 0) for name, span in sorted(spans.items())]
    table = "ingest_server"
    returned = _insert(
        table,
        ("name", "profile", "first_seen", "last_seen", "last_received_at", "record_count"),
        rows,
        tail=f"ON CONFLICT (name) DO UPDATE SET last_received_at = {greatest_sql(f'{table}.last_received_at', 'excluded.last_received_at')}",
        returning="id, name",
    )
    return {name: server_id for server_id, name in returned}


def _rollups(inserted: list[tuple], step_minutes: int) -> list[tuple]:
    """Aggregate freshly inserted records into bucket increments (count, sums, maxima, states)."""
    step = step_minutes * 60
    state_pos = {state: i for i, state in enumerate(STATES)}
    buckets: dict[tuple[int, int], list] = {}
    n_metrics = len(METRICS)
    for server_id, timestamp, *values, state in inserted:
        epoch = int(timestamp.timestamp())
        key = (server_id, epoch - epoch % step)
        acc = buckets.get(key)
        if acc is None:
            acc = buckets[key] = [0, [0.0] * n_metrics, [float("-inf")] * n_metrics, [0] * len(STATES)]
        acc[0] += 1
        sums, maxima = acc[1], acc[2]
        for i, value in enumerate(values):
            sums[i] += value
            if value > maxima[i]:
                maxima[i] = value
        acc[3][state_pos[state]] += 1
    rows = []
    for (server_id, start), (count, sums, maxima, states) in sorted(buckets.items()):
        metric_cols = [v for pair in zip(sums, maxima, strict=True) for v in pair]
        rows.append((server_id, datetime.fromtimestamp(start, tz=UTC), count, *metric_cols, *states))
    return rows


def _upsert_buckets(rows: list[tuple]) -> None:
    _insert("ingest_metricbucket", BUCKET_COLUMNS, rows, tail=bucket_conflict_clause())


def _update_servers(inserted: list[tuple]) -> None:
    per_server: dict[int, list] = {}
    for server_id, timestamp, *_ in inserted:
        span = per_server.get(server_id)
        if span is None:
            per_server[server_id] = [1, timestamp, timestamp]
        else:
            span[0] += 1
            if timestamp < span[1]:
                span[1] = timestamp
            if timestamp > span[2]:
                span[2] = timestamp
    if not per_server:
        return
    table = "ingest_server"
    rows = [(sid, n, lo, hi) for sid, (n, lo, hi) in sorted(per_server.items())]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"UPDATE {table} AS s SET record_count = s.record_count + v.n, "
                f"first_seen = LEAST(s.first_seen, v.lo), last_seen = GREATEST(s.last_seen, v.hi) "
                f"FROM unnest(%s::bigint[], %s::bigint[], %s::timestamptz[], %s::timestamptz[]) AS v(id, n, lo, hi) "
                f"WHERE s.id = v.id",
                [list(col) for col in zip(*rows, strict=True)],
            )
        else:
            cursor.executemany(
                f"UPDATE {table} SET record_count = record_count + %s, first_seen = MIN(first_seen, %s), "
                f"last_seen = MAX(last_seen, %s) WHERE id = %s",
                [(n, _db_datetime(lo), _db_datetime(hi), sid) for sid, n, lo, hi in rows],
            )


def _bump_counter(*, accepted: int) -> None:
    # Last statement of the transaction, so the slot's row lock is held as briefly as possible.
    slot = (os.getpid() + random.randrange(FeedCounter.SLOTS)) % FeedCounter.SLOTS
    updated = FeedCounter.objects.filter(slot=slot).update(batches=F("batches") + 1, records=F("records") + accepted)
    if not updated:
        # The slot rows come from a migration; a table flush (a test's, an operator's) removes them. Two
        # feeders can find the same slot missing at once, so recreate it with an upsert, not a plain insert.
        table = FeedCounter._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (slot, batches, records) VALUES (%s, 1, %s) ON CONFLICT (slot) DO UPDATE "
                f"SET batches = {table}.batches + 1, records = {table}.records + excluded.records",
                [slot, accepted],
            )


def records_ingest(*, records: list[CleanRecord], received_at: datetime | None = None) -> IngestResult:
    """Store a validated batch atomically and idempotently; returns what the feed API reports.

    Records whose server+timestamp is already stored (a client retry, an overlapping backfill)
    are counted as duplicates and change nothing.
    """
    received_at = received_at or datetime.now(UTC)
    unique: dict[tuple[str, datetime], CleanRecord] = {}
    for record in records:
        unique.setdefault((record.server_name, record.timestamp), record)
    batch = list(unique.values())
    if batch and connection.vendor == "postgresql":
        record_partitions_ensure(days={r.timestamp.date() for r in batch})  # timestamps are UTC

    deferred = False
    with transaction.atomic():
        if connection.vendor == "postgresql":
            accepted, deferred = _pg_store_batch(batch, received_at=received_at)
        else:
            accepted = _store_batch(batch, received_at=received_at)
        _bump_counter(accepted=accepted)
    if deferred:
        _fold_when_due()

    totals, tracked, ready = feed_totals(settled=deferred)
    return IngestResult(
        accepted=accepted,
        duplicates=len(records) - accepted,
        tick=totals.batches,
        window_size=totals.records,
        servers_tracked=tracked,
        servers_ready=ready,
    )


def _record_rows(batch: list[CleanRecord], server_ids: dict[str, int], *, received_at: datetime) -> list[tuple]:
    """The batch as record rows, sorted by (server id, timestamp)."""
    return sorted(
        (
            server_ids[r.server_name],
            r.timestamp,
            r.cpu_pct,
            r.mem_pct,
            r.disk_io_mb_s,
            r.latency_ms,
            r.state,
            received_at,
        )
        for r in batch
    )


def _store_batch(batch: list[CleanRecord], *, received_at: datetime) -> int:
    """Portable path (SQLite): upsert the servers, insert the records, read back what was new and
    aggregate it in Python. (No day counts: SQLite's records are not partitioned and its prune
    deletes rows.)"""
    server_ids = _upsert_servers(batch, received_at=received_at)
    rows = _record_rows(batch, server_ids, received_at=received_at)
    if not rows:
        return 0
    inserted = _insert(
        "ingest_metricrecord",
        _RECORD_COLUMNS,
        rows,
        tail="ON CONFLICT (server_id, timestamp) DO NOTHING",
        returning="server_id, timestamp, " + ", ".join(METRICS) + ", state",
    )
    inserted = [_as_aware(row) for row in inserted]
    _upsert_buckets(_rollups(inserted, settings.TFT_STEP_MINUTES))
    _update_servers(inserted)
    return len(inserted)


def _pg_bucket_aggregates() -> str:
    """Select-list of the rollup increments of a CTE of records (``ins``), named as the rollup columns."""
    aggregates = ["count(*)::int"]
    for metric in METRICS:
        aggregates += [f"sum({metric})", f"max({metric})"]
    aggregates += [f"(count(*) FILTER (WHERE state = '{state}'))::int" for state in STATES]
    return ", ".join(f"{a} AS {c}" for a, c in zip(aggregates, BUCKET_COLUMNS[2:], strict=True))


def _pg_bucket_sql() -> str:
    """CTEs that add the new records (CTE ``ins``) to their 5-minute rollups (see bucket_merge_sql)."""
    return (
        f"agg AS (SELECT server_id, date_bin(%s::interval, timestamp, 'epoch'::timestamptz) AS bucket_start, "
        f"{_pg_bucket_aggregates()} FROM ins GROUP BY 1, 2), {bucket_merge_sql()}"
    )


# The profile only matters for a server's first batch, but which servers are new is known only
# after the upsert; the name -> profile rule is pure, so it is computed once per name per process.
_profile_of = functools.lru_cache(maxsize=100_000)(profile_for)


def _pg_timestamps(batch: list[CleanRecord]) -> tuple[str, dict[datetime, int]]:
    """The batch's distinct timestamps as one array literal, and each one's (1-based) position in it.

    Statements take the positions (int arrays) and look the timestamps up in that array: Postgres
    parses a timestamptz about five times slower than an int, and a batch carries few distinct
    timestamps (one in the guide's N servers × 1 timestamp, where every server's first and last
    seen would otherwise repeat it twice more). Sorted, so a smaller position is an earlier time.
    """
    times = sorted({r.timestamp for r in batch})
    return "{" + ",".join(t.isoformat() for t in times) + "}", {t: i for i, t in enumerate(times, 1)}


def _int_array(values) -> str:
    return "{" + ",".join(map(str, values)) + "}"


def _server_spans(batch: list[CleanRecord], position: dict[datetime, int]) -> dict[str, list[int]]:
    """Per server name: [first timestamp position, last timestamp position, records]."""
    spans: dict[str, list[int]] = {}
    for record in batch:
        at = position[record.timestamp]
        span = spans.get(record.server_name)
        if span is None:
            spans[record.server_name] = [at, at, 1]
        else:
            span[2] += 1
            if at < span[0]:
                span[0] = at
            elif at > span[1]:
                span[1] = at
    return spans


_SERVERS_SQL = (
    "INSERT INTO ingest_server AS s (name, profile, first_seen, last_seen, record_count, last_received_at) "
    "SELECT v.name, v.profile, (%s::timestamptz[])[v.lo], (%s::timestamptz[])[v.hi], v.n, %s::timestamptz "
    "FROM unnest(%s::text[], %s::text[], %s::int[], %s::int[], %s::bigint[]) AS v(name, profile, lo, hi, n) "
    "ON CONFLICT (name) DO UPDATE SET record_count = s.record_count + excluded.record_count, "
    "first_seen = LEAST(s.first_seen, excluded.first_seen), last_seen = GREATEST(s.last_seen, excluded.last_seen), "
    "last_received_at = GREATEST(s.last_received_at, excluded.last_received_at) "
    "RETURNING s.id, s.name"
)


def _pg_upsert_servers(
    batch: list[CleanRecord], *, received_at: datetime, times: str, position: dict[datetime, int]
) -> dict[str, int]:
    """Create unseen servers and lock every server of the batch, in name order, adding the batch to
    their counts and seen times in the same row update.

    Locking in one global order is what keeps concurrent overlapping batches from deadlocking.
    The count assumes every record is new; the record statement takes back the duplicates. One
    update per server row (not an upsert and a later update) is what lets it stay a HOT update
    in the free space the table's fillfactor leaves (migration 0007): in the guide's shape, a
    batch of N servers × 1 timestamp, every record touches its own server row.

    A statement of its own, before the record statement: a batch that waits here for a
    concurrent batch of the same servers then writes its rollups and day counts under a snapshot
    that sees that batch's. Folded into the record statement as a CTE (d2f50e1), the guide's shape
    cost more Postgres CPU per request than on main in the same run (80.0 against 74.6 ms,
    bench/results/ingest_shapes_run3_one_statement.json); the likely cause, not measured apart:
    its snapshot predates the wait, so each rollup and day-count row the other batch changed is
    re-checked one by one (EvalPlanQual).
    """
    spans = _server_spans(batch, position)
    names = sorted(spans)
    ordered = [spans[n] for n in names]
    params = [
        times,
        times,
        received_at,
        _pg_array(names),
        _pg_array([_profile_of(n) for n in names]),
        _int_array([span[0] for span in ordered]),
        _int_array([span[1] for span in ordered]),
        _int_array([span[2] for span in ordered]),
    ]
    with connection.cursor() as cursor:
        cursor.execute(_SERVERS_SQL, params)
        return {name: server_id for server_id, name in cursor.fetchall()}


def _pg_insert_ctes() -> str:
    """The first two CTEs of both record statements (``src``: the batch's arrays as rows, timestamps
    being positions in the batch's array, ``_pg_timestamps``; ``ins``: the records that were new),
    each followed by a comma. Parameters: the timestamps, server ids, positions, one array per
    metric, the states, then received_at."""
    columns = ", ".join(_RECORD_COLUMNS)
    metrics = ", ".join(METRICS)
    metric_arrays = ", ".join("%s::float8[]" for _ in METRICS)
    return (
        f'WITH src AS (SELECT r.server_id, (%s::timestamptz[])[r.at] AS "timestamp", {metrics}, r.state '
        f"FROM unnest(%s::bigint[], %s::int[], {metric_arrays}, %s::text[]) AS r(server_id, at, {metrics}, state)), "
        # received_at is the same for the whole batch: one scalar parameter, not an array of copies.
        f"ins AS (INSERT INTO ingest_metricrecord ({columns}) SELECT src.*, %s::timestamptz FROM src "
        f"ON CONFLICT (server_id, timestamp) DO NOTHING RETURNING server_id, timestamp, {metrics}, state), "
    )


def _pg_records_sql() -> str:
    """The record statement: inserts the records, rolls up only the rows that were new into the
    5-minute buckets and the day counts, and takes the duplicates back off their servers' counts
    — no rows travel back. Timestamps are positions in the batch's array (``_pg_timestamps``)."""
    return (
        f"{_pg_insert_ctes()}"
        f"{_pg_bucket_sql()}, "
        f"{partitions.day_counts_add_sql('ins')}, "
        # Records already stored (a retry, an overlapping backfill) come off the counts the server
        # upsert added; the join runs only when the batch had any (a one-time filter).
        "dups AS (UPDATE ingest_server AS s SET record_count = s.record_count - d.n "
        'FROM (SELECT server_id, count(*) AS n FROM (SELECT server_id, "timestamp" FROM src '
        'EXCEPT ALL SELECT server_id, "timestamp" FROM ins) AS x GROUP BY 1) AS d '
        "WHERE s.id = d.server_id AND (SELECT count(*) FROM ins) < %s RETURNING 1) "
        # Every data-modifying CTE runs to completion whether read or not; reading them costs nothing.
        "SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM dups)"
    )


def _pg_store_batch(batch: list[CleanRecord], *, received_at: datetime) -> tuple[int, bool]:
    """Postgres. Returns (records stored, whether their increments were left to the fold).

    A batch whose servers all exist, are past warm-up and are feeding (``_pg_settled_servers``)
    stores its records and appends its rollup and counter increments to ingest_pendingfold: one
    row, whatever its number of servers (``_pg_deferred_sql``); records_fold applies them later.
    Such a batch cannot change what the feed response and the warm-up report (every one of its
    servers is counted tracked and ready already), so leaving its counts to the fold hides nothing
    there. Any other batch (a new server, one still warming up or silent) updates the servers, the
    rollups and the day counts in its own transaction, in two statements: the first upserts and
    locks the servers (_pg_upsert_servers), the second stores the records with their rollups and
    day counts (_pg_records_sql); it holds the fold lock shared, so no fold updates the same rows
    in another order.

    Every per-row update (server, bucket, day count) changes no indexed column, so with free space
    on the page (fillfactor, migration 0007) it is a HOT update: no index is touched.
    """
    if not batch:
        return 0, False
    times, position = _pg_timestamps(batch)
    names = sorted({r.server_name for r in batch})
    settled_ids = _pg_settled_ids(names)
    deferred = settled_ids is not None
    if deferred:
        server_ids = dict(zip(names, map(int, settled_ids[1:-1].split(",")), strict=True))
    else:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock_shared(%s)", [FOLD_LOCK])
        server_ids = _pg_upsert_servers(batch, received_at=received_at, times=times, position=position)
    # Sorted by (server id, timestamp): the order of the unique index the records go into.
    rows = sorted(
        (server_ids[r.server_name], position[r.timestamp], r.cpu_pct, r.mem_pct, r.disk_io_mb_s, r.latency_ms, r.state)
        for r in batch
    )
    step = f"{settings.TFT_STEP_MINUTES} minutes"
    with connection.cursor() as cursor:
        if deferred:
            cursor.execute(_pg_deferred_sql(), [times, *_pg_arrays(rows), received_at, step, received_at, settled_ids])
        else:
            cursor.execute(_pg_records_sql(), [times, *_pg_arrays(rows), received_at, step, len(rows)])
        accepted, _ = cursor.fetchone()
    return accepted, deferred


# A settled server's last_received_at, as folded, may lag by the fold's bound; a server this close
# to being counted silent takes the path that updates it in the batch's own transaction.
_SILENT_MARGIN = timedelta(minutes=5)


def _pg_settled_ids(names: list[str]) -> str | None:
    """The ids of ``names``, in their order, as an array literal, if every one of them exists, is past
    warm-up and is feeding; None otherwise. One read, no lock, one row back (not one per server)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), array_agg(s.id ORDER BY v.i)::text FROM unnest(%s::text[]) WITH ORDINALITY AS v(name, i) "
            "JOIN ingest_server AS s ON s.name = v.name WHERE s.record_count >= %s AND s.last_received_at >= %s",
            [_pg_array(names), settings.TFT_WARMUP_RECORDS, silent_since() + _SILENT_MARGIN],
        )
        count, ids = cursor.fetchone()
    return ids if count == len(names) else None


def _pg_deferred_sql() -> str:
    """The record statement of a settled batch: inserts the records and appends the rollup
    increments of the rows that were new, per (server, bucket) with their first and last
    timestamps, as one row of parallel arrays to ingest_pendingfold. No server, rollup or day-count
    row is touched, and a duplicate is simply not counted."""
    return (
        f"{_pg_insert_ctes()}"
        f"agg AS (SELECT server_id, date_bin(%s::interval, timestamp, 'epoch'::timestamptz) AS bucket_start, "
        f'min("timestamp") AS first, max("timestamp") AS last, {_pg_bucket_aggregates()} FROM ins GROUP BY 1, 2), '
        # One row even when every record was a duplicate: the servers' last_received_at still moves.
        f"pending AS (INSERT INTO {PENDING_FOLD} (received_at, seen_ids, {', '.join(PENDING_ARRAYS)}) "
        f"SELECT %s::timestamptz, %s::bigint[], "
        f"{', '.join(f'array_agg({c})' for c in PENDING_COLUMNS)} FROM agg RETURNING 1) "
        "SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM pending)"
    )


# When this process next looks for pending rows old enough to fold (time.monotonic()).
_next_fold_check = 0.0


def _fold_when_due() -> None:
    """After a settled batch's commit, outside its transaction (the batch is acknowledged whether or
    not this fold runs; the beat and the next batches fold what it leaves): fold once the oldest
    pending row has waited TFT_INGEST_FOLD_AFTER_SECONDS. A process looks at most four times per
    period — the look is a query, and under a steady feed some process looks often enough."""
    global _next_fold_check
    after = settings.TFT_INGEST_FOLD_AFTER_SECONDS
    now = time.monotonic()
    if now < _next_fold_check:
        return
    _next_fold_check = now + after / 4
    records_fold(wait=False, pending_for=after)


def _as_aware(row: tuple) -> tuple:
    timestamp = row[1]
    if isinstance(timestamp, str):
        timestamp = datetime.fromisoformat(timestamp)
    if timestamp.tzinfo is None:
        timestamp = timestamp.replace(tzinfo=UTC)
    return (row[0], timestamp, *row[2:])


def records_prune(*, older_than: datetime | None = None, chunk_size: int = 20_000) -> int:
    """Remove raw records older than the retention period, and rollups past their own retention.

    PostgreSQL (partitioned): whole days whose end is at or before the cutoff are detached and
    dropped, so a record goes at most a day later than the cutoff and nothing is vacuumed; the
    few rows in the DEFAULT partition (and a legacy table not yet moved) are deleted as on SQLite.
    SQLite: DELETE in chunks (each its own transaction) so it never holds long locks against the
    feed. Either way per-server and global record counts stay exact.
    """
    cutoff = older_than or datetime.now(UTC) - timedelta(days=settings.TFT_RETENTION_DAYS)
    if _records_partitioned():
        deleted_total = _prune_partitions(cutoff=cutoff)
        deleted_total += _prune_table(table=partitions.DEFAULT, cutoff=cutoff, chunk_size=chunk_size)
        if _legacy_exists():
            deleted_total += _prune_table(table=partitions.LEGACY, cutoff=cutoff, chunk_size=chunk_size)
    else:
        deleted_total = _prune_table(table="ingest_metricrecord", cutoff=cutoff, chunk_size=chunk_size)
    bucket_cutoff = datetime.now(UTC) - timedelta(days=settings.TFT_ROLLUP_RETENTION_DAYS)
    buckets_deleted, _ = MetricBucket.objects.filter(bucket_start__lt=min(bucket_cutoff, cutoff)).delete()
    logger.info(
        "pruned raw records",
        extra={"records_deleted": deleted_total, "buckets_deleted": buckets_deleted, "cutoff": cutoff.isoformat()},
    )
    return deleted_total


def _fold_first() -> None:
    """In the caller's transaction: take the fold lock exclusively until it ends, and fold what is
    pending. Counts taken off (prune) or recounted (legacy move) then include every stored record,
    and no fold or unsettled batch updates the same rows meanwhile. No-op on SQLite."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [FOLD_LOCK])
        fold_locked(cursor)


def _prune_table(*, table: str, cutoff: datetime, chunk_size: int) -> int:
    deleted_total = 0
    while True:
        with transaction.atomic():
            _fold_first()
            with connection.cursor() as cursor:
                cursor.execute(
                    f"DELETE FROM {table} WHERE id IN ("
                    f"SELECT id FROM {table} WHERE timestamp < %s LIMIT %s) RETURNING server_id, timestamp",
                    [_db_datetime(cutoff), chunk_size],
                )
                deleted = cursor.fetchall()
            if not deleted:
                break
            per_server: dict[int, int] = defaultdict(int)
            per_day: dict[date, dict[int, int]] = defaultdict(lambda: defaultdict(int))
            for server_id, timestamp in deleted:
                per_server[server_id] += 1
                per_day[_as_aware((server_id, timestamp))[1].astimezone(UTC).date()][server_id] += 1
            with connection.cursor() as cursor:
                cursor.executemany(
                    "UPDATE ingest_server SET record_count = record_count - %s WHERE id = %s",
                    sorted((n, sid) for sid, n in per_server.items()),
                )
                if table == partitions.DEFAULT:  # its rows are in the day counts (the legacy table's are not)
                    for day, counts in sorted(per_day.items()):
                        partitions.day_counts_subtract(cursor, day, sorted(counts.items()))
            FeedCounter.objects.filter(slot=0).update(records=F("records") - len(deleted))
            deleted_total += len(deleted)
    return deleted_total


# Days this process has seen committed with a partition: ingest checks the catalogue only for a
# day it has not seen. A stale entry (another process dropped the day) is harmless: the rows go
# to the DEFAULT partition and record_partitions_maintain moves them.
_partition_days: set[date] = set()


def _records_partitioned() -> bool:
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        return partitions.is_partitioned(cursor)


def _legacy_exists() -> bool:
    with connection.cursor() as cursor:
        return partitions.table_exists(cursor, partitions.LEGACY)


def record_partitions_ensure(*, days: set[date]) -> None:
    """Make sure each day has its partition before a batch is stored (a backfill of old days).

    Runs before the feed transaction locks any server row. A day whose partition cannot be
    created (its strays wait in the DEFAULT partition, or a concurrent creator won) is left to
    the DEFAULT partition: an insert never fails for want of a partition.
    """
    missing = days - _partition_days
    if not missing or connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        if not partitions.is_partitioned(cursor):
            return
        existing = set(partitions.attached_days(cursor))
    for day in sorted(missing - existing):
        _create_partition_or_leave_to_default(day)
    # Learnt only on commit: a partition created inside a transaction that rolls back is gone.
    transaction.on_commit(lambda: _partition_days.update(missing))


def _create_partition_or_leave_to_default(day: date) -> bool:
    try:
        with transaction.atomic(), connection.cursor() as cursor:  # a savepoint when nested
            return partitions.create_partition(cursor, day)
    except DatabaseError:
        logger.warning(
            "could not create a record partition; its records go to the DEFAULT partition until maintenance",
            extra={"partition": partitions.partition_name(day)},
            exc_info=True,
        )
        return False


def record_partitions_maintain(*, now: datetime | None = None, days_ahead: int = 3) -> dict[str, int]:
    """Create the partitions of yesterday … today + days_ahead, and move any rows that landed in
    the DEFAULT partition into partitions of their own (moved, so counts do not change)."""
    if not _records_partitioned():
        return {"created": 0, "moved": 0}
    today = partitions.day_of(now or datetime.now(UTC))
    with connection.cursor() as cursor:
        stray_days = partitions.default_days(cursor)
    moved = 0
    for day in stray_days:
        with transaction.atomic(), connection.cursor() as cursor:
            moved += partitions.move_default_rows(cursor, day)
    created = 0
    for offset in range(-1, days_ahead + 1):
        created += _create_partition_or_leave_to_default(today + timedelta(days=offset))
    logger.info("record partitions maintained", extra={"partitions_created": created, "records_moved": moved})
    return {"created": created, "moved": moved}


def _prune_partitions(*, cutoff: datetime) -> int:
    with connection.cursor() as cursor:
        leftovers = partitions.detached_tables(cursor)
        expired = [day for day in partitions.attached_days(cursor) if partitions.day_bounds(day)[1] <= cutoff]
    # A prune that stopped between detach and drop left these; finish them first.
    deleted = sum(_drop_detached(name=name, day=day) for name, day in leftovers)
    for day in expired:
        started = time.perf_counter()
        with transaction.atomic(), connection.cursor() as cursor:
            # Waits for in-flight feed transactions; fails rather than queue the feed behind it forever.
            cursor.execute("SET LOCAL lock_timeout = '10s'")
            name = partitions.detach_partition(cursor, day)
        _partition_days.discard(day)
        deleted += _drop_detached(name=name, day=day, detach_s=time.perf_counter() - started)
    return deleted


def _drop_detached(*, name: str, day: date, detach_s: float | None = None) -> int:
    """Take a detached day's records off the counts and drop its table, in one transaction.

    The per-server counts come from the day counts (partitions.detached_counts), not from a
    scan of the day's rows. Server rows are locked in name order, the order ingest locks them,
    and before the day counts, as ingest does.
    """
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        _fold_first()  # the day counts must hold every record of the day before they are subtracted
        counts = partitions.detached_counts(cursor, day)
        counted = time.perf_counter()
        if counts:
            ids, ns = zip(*counts, strict=True)
            cursor.execute("SELECT id FROM ingest_server WHERE id = ANY(%s) ORDER BY name FOR UPDATE", [list(ids)])
            cursor.execute(
                "UPDATE ingest_server AS s SET record_count = s.record_count - v.n "
                "FROM unnest(%s::bigint[], %s::bigint[]) AS v(id, n) WHERE s.id = v.id",
                [list(ids), list(ns)],
            )
        partitions.day_counts_subtract(cursor, day, counts)
        total = sum(n for _, n in counts)
        FeedCounter.objects.filter(slot=0).update(records=F("records") - total)
        # Deferred FK checks of rows written earlier in an enclosing transaction would block the DROP.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"DROP TABLE {name}")
        partitions.mark_dropped(cursor, day)
    # The phases: detach (the only ACCESS EXCLUSIVE moment), count (blocks nobody), apply (server
    # rows locked: the feed of those servers waits).
    timings = {"detach_s": detach_s, "count_s": counted - started, "apply_s": time.perf_counter() - counted}
    logger.info("dropped record partition", extra={"partition": name, "records": total, **timings})
    return total


def legacy_records_move(*, batch_size: int = 50_000, max_batches: int | None = None, on_batch=None) -> dict[str, int]:
    """Move the rows of ingest_metricrecord_legacy (a big plain table left by migration 0004) into
    the partitioned table, lowest ids first, one transaction per batch: an interrupted move loses
    nothing and the next call continues where it stopped. Drops the legacy table once empty.

    ``on_batch(moved_so_far, remaining_estimate)`` is called after each batch (progress).
    """
    moved = duplicates = batches = 0
    if not _records_partitioned() or not _legacy_exists():
        return {"moved": 0, "duplicates": 0, "batches": 0, "done": True}
    record_partitions_maintain()  # strays out of DEFAULT, or attaching their day would fail
    while max_batches is None or batches < max_batches:
        with transaction.atomic(), connection.cursor() as cursor:
            _fold_first()  # it updates rollups, server counts and day counts, as a fold does
            span = partitions.legacy_next_days(cursor, batch_size=batch_size)
            if span is None:
                break
            partitions.ensure_days(cursor, *span)
            n, dup = partitions.move_legacy_batch(cursor, batch_size=batch_size)
            cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)", [partitions.LEGACY])
            remaining = max(0, cursor.fetchone()[0])
        moved, duplicates, batches = moved + n, duplicates + dup, batches + 1
        if on_batch:
            on_batch(moved, remaining)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SELECT NOT EXISTS (SELECT 1 FROM {partitions.LEGACY})")
        done = cursor.fetchone()[0]
        if done:
            cursor.execute(f"DROP TABLE {partitions.LEGACY}")
    logger.info("moved legacy records", extra={"records_moved": moved, "duplicates": duplicates, "done": done})
    return {"moved": moved, "duplicates": duplicates, "batches": batches, "done": done}


def _db_datetime(value: datetime):
    if connection.vendor == "postgresql":
        return value
    return connection.ops.adapt_datetimefield_value(value)
