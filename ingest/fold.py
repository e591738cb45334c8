"""The fold: increments that batches of settled servers left in ingest_pendingfold, added to the
5-minute rollups, the server counters and the day counts (issue 25; docs/ingest-guide-shape.md,
round 4). ingest.services writes the pending rows; readers call records_fold before they read.

A module of its own so that selectors can fold first without importing the services (which
import the selectors).
"""

import logging
import time
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction

from ingest import partitions
from ingest.contract import METRICS, STATES

logger = logging.getLogger(__name__)

BUCKET_COLUMNS = (
    "server_id",
    "bucket_start",
    "count",
    *(f"{m}_{agg}" for m in METRICS for agg in ("sum", "max")),
    *(f"n_{s}" for s in STATES),
)
# The fold's advisory lock: records_fold, the prune and the legacy move hold it exclusively, a batch
# that updates rollups and counters itself holds it shared (its server rows are locked in name order,
# a fold's are not: the two must not interleave). Batches that append to ingest_pendingfold take none.
FOLD_LOCK = 0x7466_7466_6F6C_64  # "tftfold"
PENDING_FOLD = "ingest_pendingfold"
PENDING_ARRAYS = (
    "server_ids",
    "bucket_starts",
    "firsts",
    "lasts",
    "counts",
    *(f"{m}_{agg}s" for m in METRICS for agg in ("sum", "max")),
    *(f"n_{s}s" for s in STATES),
)
# The same, as the columns of one (server, bucket) increment.
PENDING_COLUMNS = ("server_id", "bucket_start", "first", "last", *BUCKET_COLUMNS[2:])


def greatest_sql(a: str, b: str) -> str:
    return f"GREATEST({a}, {b})" if connection.vendor == "postgresql" else f"MAX({a}, {b})"


def bucket_conflict_clause() -> str:
    """Merge a bucket increment into a stored bucket: counts and sums add up, maxima take the larger."""
    table = "ingest_metricbucket"
    updates = [f"count = {table}.count + excluded.count"]
    for metric in METRICS:
        updates.append(f"{metric}_sum = {table}.{metric}_sum + excluded.{metric}_sum")
        updates.append(f"{metric}_max = {greatest_sql(f'{table}.{metric}_max', f'excluded.{metric}_max')}")
    updates.extend(f"n_{s} = {table}.n_{s} + excluded.n_{s}" for s in STATES)
    return f"ON CONFLICT (server_id, bucket_start) DO UPDATE SET {', '.join(updates)}"


def bucket_merge_sql() -> str:
    """CTEs that add rollup increments (CTE ``agg``, one row per server and bucket, named as the
    rollup columns) to the rollups: an UPDATE of the rollups that exist, an INSERT of the others. A
    plain UPDATE writes one new row version per bucket where INSERT … ON CONFLICT DO UPDATE first
    locks the row (a WAL record of its own) and then updates it: 6.0 against 8.9 ms per 1,000 rows
    (docs/ingest-guide-shape.md). No race: a batch holds its server rows (locked first,
    _pg_upsert_servers) and the fold lock shared, a fold holds that lock exclusively."""
    table = "ingest_metricbucket"
    merged = ["count = b.count + a.count"]
    for metric in METRICS:
        merged.append(f"{metric}_sum = b.{metric}_sum + a.{metric}_sum")
        merged.append(f"{metric}_max = GREATEST(b.{metric}_max, a.{metric}_max)")
    merged.extend(f"n_{s} = b.n_{s} + a.n_{s}" for s in STATES)
    columns = ", ".join(BUCKET_COLUMNS)
    return (
        f"bucket_upd AS (UPDATE {table} AS b SET {', '.join(merged)} FROM agg AS a "
        f"WHERE b.server_id = a.server_id AND b.bucket_start = a.bucket_start RETURNING b.server_id, b.bucket_start), "
        # The comparison of counts is a one-time filter: the anti-join (two sorts) runs only when
        # some bucket is new, which in the guide's shape is one batch in 60 (5 s batches, 5-minute buckets).
        # The server must still exist: a fold may apply increments of a server deleted since.
        f"bucket_new AS (INSERT INTO {table} ({columns}) SELECT {columns} FROM agg AS a "
        f"WHERE (SELECT count(*) FROM bucket_upd) < (SELECT count(*) FROM agg) AND NOT EXISTS ("
        f"SELECT 1 FROM bucket_upd AS u WHERE u.server_id = a.server_id AND u.bucket_start = a.bucket_start) "
        f"AND EXISTS (SELECT 1 FROM ingest_server AS s WHERE s.id = a.server_id) "
        f"ORDER BY 1, 2 {bucket_conflict_clause()} RETURNING 1)"
    )


def fold_sql() -> str:
    """One fold step: deletes up to %s of the oldest pending rows and adds them, summed per
    (server, bucket), to the rollups, per server to the counts and seen times, per (day, server)
    to the day counts — in the statement that deletes them, so a row is applied exactly once."""
    sums = ["min(first) AS first", "max(last) AS last", "sum(count)::int AS count"]
    for metric in METRICS:
        sums += [f"sum({metric}_sum) AS {metric}_sum", f"max({metric}_max) AS {metric}_max"]
    sums += [f"sum(n_{s})::int AS n_{s}" for s in STATES]
    return (
        f"WITH taken AS (DELETE FROM {PENDING_FOLD} WHERE id IN ("
        f"SELECT id FROM {PENDING_FOLD} ORDER BY id LIMIT %s) RETURNING *), "
        # unnest() in the select list runs the arrays in lockstep without copying each into a
        # tuplestore first, as unnest(a, b, …) in FROM does: 2.3 times faster on 24 arrays.
        f"u AS (SELECT {', '.join(f'unnest(t.{a}) AS {c}' for a, c in zip(PENDING_ARRAYS, PENDING_COLUMNS, strict=True))} "
        "FROM taken AS t), "
        f"summed AS (SELECT server_id, bucket_start, {', '.join(sums)} FROM u GROUP BY 1, 2), "
        # A server deleted since its batch was stored takes its increments with it.
        "agg AS (SELECT * FROM summed AS a WHERE EXISTS (SELECT 1 FROM ingest_server AS s WHERE s.id = a.server_id)), "
        f"{bucket_merge_sql()}, "
        "per_server AS (SELECT server_id, sum(count) AS n, min(first) AS lo, max(last) AS hi FROM agg GROUP BY 1), "
        "seen AS (SELECT x.id, max(t.received_at) AS at FROM taken AS t, unnest(t.seen_ids) AS x(id) GROUP BY 1), "
        # LEAST and GREATEST ignore NULLs: a server whose records were all duplicates moves only its arrival time.
        "server_upd AS (UPDATE ingest_server AS s SET record_count = s.record_count + COALESCE(v.n, 0), "
        "first_seen = LEAST(s.first_seen, v.lo), last_seen = GREATEST(s.last_seen, v.hi), "
        "last_received_at = GREATEST(s.last_received_at, seen.at) "
        "FROM seen LEFT JOIN per_server AS v ON v.server_id = seen.id WHERE s.id = seen.id RETURNING 1), "
        f"{partitions.day_counts_add_sql('agg', at='bucket_start', records='sum(count)')} "
        "SELECT (SELECT count(*) FROM taken), (SELECT COALESCE(sum(count), 0) FROM agg), "
        "(SELECT count(*) FROM server_upd), (SELECT count(*) FROM day_new)"
    )


_FOLD_CHUNK = 200  # pending batches per fold statement: 200,000 increments in the guide's shape


def fold_locked(cursor) -> tuple[int, int]:
    """Fold every pending row visible now; the caller holds FOLD_LOCK exclusively. (batches, records)."""
    batches = records = 0
    while True:
        cursor.execute(fold_sql(), [_FOLD_CHUNK])
        n, added, *_ = cursor.fetchone()
        batches, records = batches + n, records + int(added)
        if n < _FOLD_CHUNK:
            return batches, records


def records_fold(*, wait: bool = True, pending_for: float | None = None) -> int:
    """Apply the increments settled batches left in ingest_pendingfold; returns the batches folded.

    wait=True (readers, the beat): waits for a fold in progress, then folds what is left, so what
    the caller reads next includes every batch committed before the call. wait=False (the feed,
    after its commit): folds only if no fold is running and, with ``pending_for`` (seconds), only
    once the oldest pending batch has waited that long — under a steady feed a fold then takes many
    batches at once, one row update per server and bucket for all of them.

    Safe to run twice or concurrently: the rows are deleted by the statement that applies them,
    under an exclusive advisory lock. A process that dies before its commit applied nothing and
    deleted nothing. SQLite: nothing is ever pending (every batch folds itself).
    """
    if connection.vendor != "postgresql":
        return 0
    if wait:
        # Readers call this before every read: when nothing is pending it costs one query, no transaction.
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {PENDING_FOLD})")
            if not cursor.fetchone()[0]:
                return 0
    with transaction.atomic(), connection.cursor() as cursor:
        if wait:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [FOLD_LOCK])
        else:
            since = datetime.now(UTC) - timedelta(seconds=pending_for or 0.0)
            cursor.execute(
                f"SELECT CASE WHEN EXISTS (SELECT 1 FROM {PENDING_FOLD} WHERE received_at <= %s) "
                "THEN pg_try_advisory_xact_lock(%s) ELSE false END",
                [since, FOLD_LOCK],
            )
            if not cursor.fetchone()[0]:
                return 0
        started = time.perf_counter()
        batches, records = fold_locked(cursor)
    if batches:
        logger.debug(
            "folded pending increments",
            extra={"batches": batches, "records": records, "fold_s": round(time.perf_counter() - started, 4)},
        )
    return batches


def records_fold_due() -> int:
    """The beat's fold: what a quiet feed left, once the oldest pending row is older than
    TFT_INGEST_FOLD_AFTER_SECONDS (a younger row waits, so the beat does not shorten the period
    over which a fold sums a server's batches); skipped while a fold runs."""
    return records_fold(wait=False, pending_for=settings.TFT_INGEST_FOLD_AFTER_SECONDS)
