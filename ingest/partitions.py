"""Day partitions of the raw records table on PostgreSQL (SQLite keeps one plain table).

Layout: ``ingest_metricrecord`` is partitioned by RANGE (timestamp), one partition per UTC day
named ``ingest_metricrecord_pYYYYMMDD``, plus a DEFAULT partition that catches a record whose day
has no partition yet (a process whose cache missed a partition another one dropped), so an insert
never fails for want of a partition. Ingest creates the partition of an unseen day itself (a
backfill), a beat task creates them ahead and moves strays out of the DEFAULT partition, and
retention detaches and drops whole days.

Partitions are created with CREATE TABLE … LIKE + ATTACH PARTITION rather than CREATE TABLE …
PARTITION OF: ATTACH takes SHARE UPDATE EXCLUSIVE on the parent, which does not conflict with
concurrent inserts, whereas PARTITION OF takes ACCESS EXCLUSIVE and could deadlock against feed
transactions that already hold server row locks.

Everything here takes a DB-API cursor and is plain SQL, so migrations can use it too.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, date, datetime, time, timedelta

from ingest.contract import STATES as _STATES

logger = logging.getLogger(__name__)

PARENT = "ingest_metricrecord"
DEFAULT = f"{PARENT}_default"
LEGACY = f"{PARENT}_legacy"
SEQUENCE = f"{PARENT}_id_seq"
DETACHED_SUFFIX = "_gone"
# Days already dropped once: their rollups still count the dropped rows, so day_counts_rebuild
# counts such a day (re-created by a late backfill) from its rows, not from its rollups.
DROPPED_DAYS = f"{PARENT}_dropped_days"
# Rows per (UTC day, server) in the partitioned table (DEFAULT partition included, legacy table
# not), kept by every statement that inserts or deletes its rows, in the same transaction. The
# prune takes a day's per-server counts from here (10,000 rows at 10,000 servers) instead of
# summing the day's millions of rollup rows (~1 s, bench/results/storage_prune.json). `records` is
# in no index, so the ingest's increments are HOT updates.
DAY_COUNTS = f"{PARENT}_day_counts"
CREATE_DAY_COUNTS = (
    f"CREATE TABLE IF NOT EXISTS {DAY_COUNTS} (day date NOT NULL, server_id bigint NOT NULL, "
    "records bigint NOT NULL, PRIMARY KEY (day, server_id))"
)
_NAME = re.compile(rf"^{PARENT}_p(\d{{8}})$")
_DETACHED = re.compile(rf"^{PARENT}_p(\d{{8}}){DETACHED_SUFFIX}$")

# The columns in the order Django created them (0001_initial); LIKE and INSERT … SELECT * rely on it.
COLUMNS = ("id", "timestamp", "cpu_pct", "mem_pct", "disk_io_mb_s", "latency_ms", "state", "received_at", "server_id")

_CREATE_PARENT = f"""
CREATE TABLE {PARENT} (
    id bigint NOT NULL DEFAULT nextval('{SEQUENCE}'),
    "timestamp" timestamptz NOT NULL,
    cpu_pct double precision NOT NULL,
    mem_pct double precision NOT NULL,
    disk_io_mb_s double precision NOT NULL,
    latency_ms double precision NOT NULL,
    state varchar(16) NOT NULL,
    received_at timestamptz NOT NULL,
    server_id bigint NOT NULL
        CONSTRAINT {PARENT}_server_id_fk_ingest_server_id REFERENCES ingest_server (id) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT {PARENT}_pkey PRIMARY KEY (id, "timestamp"),
    CONSTRAINT uniq_record_server_ts UNIQUE (server_id, "timestamp")
) PARTITION BY RANGE ("timestamp")
"""


def day_of(timestamp: datetime) -> date:
    return timestamp.astimezone(UTC).date()


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), tzinfo=UTC)
    return start, start + timedelta(days=1)


def partition_name(day: date) -> str:
    # Explicit padding: glibc's %Y writes year 999 as "999", a 7-digit name that _NAME (and so
    # attached_days and the retention prune) would never match. The feed's timestamp window keeps
    # such days out; this keeps the name right whoever creates the partition.
    return f"{PARENT}_p{day.year:04d}{day.month:02d}{day.day:02d}"


def is_partitioned(cursor) -> bool:
    cursor.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [PARENT])
    row = cursor.fetchone()
    return bool(row) and row[0] == "p"


def table_exists(cursor, name: str) -> bool:
    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
    return cursor.fetchone()[0]


def _children(cursor) -> list[str]:
    cursor.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass(%s) ORDER BY c.relname",
        [PARENT],
    )
    return [name for (name,) in cursor.fetchall()]


def attached_days(cursor) -> list[date]:
    """Days that have an attached partition, oldest first."""
    days = []
    for name in _children(cursor):
        match = _NAME.match(name)
        if match:
            days.append(datetime.strptime(match.group(1), "%Y%m%d").replace(tzinfo=UTC).date())
    return days


def detached_tables(cursor) -> list[tuple[str, date]]:
    """Partitions detached by a prune that did not get to drop them (it stopped in between)."""
    cursor.execute(
        "SELECT relname FROM pg_class WHERE relkind = 'r' AND relname LIKE %s", [f"{PARENT}_p%{DETACHED_SUFFIX}"]
    )
    found = []
    for (name,) in cursor.fetchall():
        match = _DETACHED.match(name)
        if match:
            found.append((name, datetime.strptime(match.group(1), "%Y%m%d").replace(tzinfo=UTC).date()))
    return sorted(found, key=lambda item: item[1])


def create_parent(cursor, *, first_id: int = 1) -> None:
    """The partitioned table, its timestamp index and its DEFAULT partition (new, empty)."""
    cursor.execute(f"CREATE SEQUENCE {SEQUENCE} START WITH {max(1, first_id)}")
    cursor.execute(_CREATE_PARENT)
    cursor.execute(f"ALTER SEQUENCE {SEQUENCE} OWNED BY {PARENT}.id")
    # A b-tree, not BRIN: the admin's "newest first" page and its date hierarchy need ordered
    # scans and min/max, which BRIN cannot serve; retention no longer needs any index (it drops
    # whole partitions). bench/storage.py measures the ingest cost of both.
    cursor.execute(f'CREATE INDEX record_ts_idx ON {PARENT} ("timestamp")')
    cursor.execute(f"CREATE TABLE {DEFAULT} PARTITION OF {PARENT} DEFAULT")
    cursor.execute(f"CREATE TABLE IF NOT EXISTS {DROPPED_DAYS} (day date PRIMARY KEY)")
    cursor.execute(CREATE_DAY_COUNTS)


def day_counts_upsert_sql(source: str) -> str:
    """The CTE body that adds the rows of ``source`` (a CTE with server_id and "timestamp") to the
    day counts; ordered like the server rows ingest locks, so concurrent batches cannot deadlock."""
    return (
        f"INSERT INTO {DAY_COUNTS} AS d (day, server_id, records) "
        f"SELECT (\"timestamp\" AT TIME ZONE 'UTC')::date, server_id, count(*) FROM {source} GROUP BY 1, 2 ORDER BY 2, 1 "
        "ON CONFLICT (day, server_id) DO UPDATE SET records = d.records + excluded.records RETURNING 1"
    )


def day_counts_add_sql(source: str, *, at: str = '"timestamp"', records: str = "count(*)") -> str:
    """CTEs (``day_agg``, ``day_upd``, ``day_new``) that add the rows of ``source`` (a CTE with
    server_id and "timestamp") to the day counts: an UPDATE of the counts that exist and an INSERT
    of the others, as the ingest statement does for the rollups (a plain UPDATE is cheaper than
    ON CONFLICT DO UPDATE, which locks each row before updating it). The caller holds the rows of
    the servers concerned (or the fold lock), so no concurrent writer adds the same (day, server)
    in between. ``at``/``records``: a source of rollup increments gives bucket_start and
    sum(count) (a bucket never straddles midnight)."""
    return (
        f"day_agg AS (SELECT ({at} AT TIME ZONE 'UTC')::date AS day, server_id, {records} AS records "
        f"FROM {source} GROUP BY 1, 2), "
        f"day_upd AS (UPDATE {DAY_COUNTS} AS d SET records = d.records + a.records FROM day_agg AS a "
        "WHERE d.day = a.day AND d.server_id = a.server_id RETURNING d.day, d.server_id), "
        f"day_new AS (INSERT INTO {DAY_COUNTS} AS d (day, server_id, records) SELECT a.day, a.server_id, a.records "
        # A one-time filter: the anti-join runs only when some (day, server) is new (a server's
        # first batch of a day).
        "FROM day_agg AS a WHERE (SELECT count(*) FROM day_upd) < (SELECT count(*) FROM day_agg) "
        "AND NOT EXISTS (SELECT 1 FROM day_upd AS u WHERE u.day = a.day AND u.server_id = a.server_id) "
        "ORDER BY 2, 1 ON CONFLICT (day, server_id) DO UPDATE SET records = d.records + excluded.records RETURNING 1)"
    )


def day_counts_subtract(cursor, day: date, counts: list[tuple[int, int]]) -> None:
    """Take (server_id, n) rows of one day off its counts; a count that reaches 0 goes."""
    if counts:
        ids, ns = zip(*counts, strict=True)
        cursor.execute(
            f"UPDATE {DAY_COUNTS} AS d SET records = d.records - v.n "
            "FROM unnest(%s::bigint[], %s::bigint[]) AS v(id, n) WHERE d.day = %s AND d.server_id = v.id",
            [list(ids), list(ns), day],
        )
    cursor.execute(f"DELETE FROM {DAY_COUNTS} WHERE day = %s AND records <= 0", [day])


def day_counts_rebuild(cursor) -> None:
    """Recount the day counts of the partitioned table from scratch (migration 0005).

    A day's 5-minute rollups count every record of that day (written in the same transaction; no
    bucket straddles midnight), so a day is summed from its rollups — unless the legacy table
    still holds rows of some day (its records are in the rollups but not in the partitioned
    table) or the day was dropped before (its rollups still count the dropped rows): those days
    are counted from their rows."""
    cursor.execute(f"TRUNCATE {DAY_COUNTS}")
    legacy = table_exists(cursor, LEGACY)
    cursor.execute(f"SELECT day FROM {DROPPED_DAYS}")
    dropped = {day for (day,) in cursor.fetchall()}
    for day in attached_days(cursor):
        if legacy or day in dropped:
            cursor.execute(
                f"INSERT INTO {DAY_COUNTS} (day, server_id, records) "
                f"SELECT %s, server_id, count(*) FROM {partition_name(day)} GROUP BY 2",
                [day],
            )
        else:
            start, end = day_bounds(day)
            cursor.execute(
                f"INSERT INTO {DAY_COUNTS} (day, server_id, records) SELECT %(day)s, server_id, sum(count) "
                "FROM ingest_metricbucket WHERE bucket_start >= %(start)s AND bucket_start < %(end)s "
                "GROUP BY 2 HAVING sum(count) > 0",
                {"day": day, "start": start, "end": end},
            )
    # The DEFAULT partition only holds days that have no partition (attaching one moves them).
    cursor.execute(
        f"INSERT INTO {DAY_COUNTS} (day, server_id, records) "
        f"SELECT (\"timestamp\" AT TIME ZONE 'UTC')::date, server_id, count(*) FROM {DEFAULT} GROUP BY 1, 2"
    )


def create_partition(cursor, day: date) -> bool:
    """Create and attach the partition of one day; False if it already existed.

    Must run inside a transaction or savepoint the caller can roll back: ATTACH fails if the
    DEFAULT partition holds rows of that day (partitions_maintain moves them first).
    """
    name = partition_name(day)
    if table_exists(cursor, name):
        return False
    start, end = day_bounds(day)
    cursor.execute(f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS)")
    cursor.execute(f"ALTER TABLE {PARENT} ATTACH PARTITION {name} FOR VALUES FROM (%s) TO (%s)", [start, end])
    logger.info("created record partition", extra={"partition": name})
    return True


def move_default_rows(cursor, day: date) -> int:
    """Move the DEFAULT partition's rows of one day into that day's new partition.

    Rows move (DELETE … RETURNING into INSERT), so the record counts do not change.
    """
    name = partition_name(day)
    start, end = day_bounds(day)
    cursor.execute(f"LOCK TABLE {DEFAULT} IN ACCESS EXCLUSIVE MODE")
    cursor.execute(f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS)")
    columns = ", ".join(f'"{c}"' for c in COLUMNS)
    cursor.execute(
        f'WITH moved AS (DELETE FROM {DEFAULT} WHERE "timestamp" >= %s AND "timestamp" < %s RETURNING {columns}) '
        f"INSERT INTO {name} ({columns}) SELECT {columns} FROM moved",
        [start, end],
    )
    moved = cursor.rowcount
    cursor.execute(f"ALTER TABLE {PARENT} ATTACH PARTITION {name} FOR VALUES FROM (%s) TO (%s)", [start, end])
    logger.info("moved stray records into their partition", extra={"partition": name, "records": moved})
    return moved


def default_days(cursor) -> list[date]:
    cursor.execute(f"SELECT DISTINCT (\"timestamp\" AT TIME ZONE 'UTC')::date FROM {DEFAULT} ORDER BY 1")
    return [day for (day,) in cursor.fetchall()]


def detach_partition(cursor, day: date) -> str:
    """Detach a day and rename it out of the way (so ingest can recreate that day if a late
    backfill arrives); returns the detached table's name. ACCESS EXCLUSIVE on the parent, for
    milliseconds: nothing is scanned."""
    name = partition_name(day)
    gone = f"{name}{DETACHED_SUFFIX}"
    cursor.execute(f"ALTER TABLE {PARENT} DETACH PARTITION {name}")
    cursor.execute(f"ALTER TABLE {name} RENAME TO {gone}")
    return gone


def detached_counts(cursor, day: date) -> list[tuple[int, int]]:
    """Per-server rows of a detached day, (server_id, n) sorted by server_id, without scanning it:
    the day's counts less the rows of that day still attached (a backfill that arrived after the
    detach, counted there too). One statement, so both sides read one snapshot."""
    start, end = day_bounds(day)
    cursor.execute(
        "SELECT server_id, sum(n)::bigint FROM ("
        f" SELECT server_id, records AS n FROM {DAY_COUNTS} WHERE day = %(day)s"
        " UNION ALL"
        f' SELECT server_id, -count(*) AS n FROM {PARENT} WHERE "timestamp" >= %(start)s AND "timestamp" < %(end)s GROUP BY 1'
        ") AS x GROUP BY 1 HAVING sum(n) <> 0 ORDER BY 1",
        {"day": day, "start": start, "end": end},
    )
    return cursor.fetchall()


def mark_dropped(cursor, day: date) -> None:
    cursor.execute(f"INSERT INTO {DROPPED_DAYS} (day) VALUES (%s) ON CONFLICT DO NOTHING", [day])


def rename_to_legacy(cursor) -> int:
    """Rename the plain table and everything named after it out of the way; returns the next id."""
    cursor.execute(f"ALTER TABLE {PARENT} RENAME TO {LEGACY}")
    cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s", [LEGACY])
    for (index,) in cursor.fetchall():
        cursor.execute(f'ALTER INDEX "{index}" RENAME TO "{index[:55]}_legacy"')
    cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [LEGACY])
    (sequence,) = cursor.fetchone()
    if sequence:
        cursor.execute(f"ALTER SEQUENCE {sequence} RENAME TO {LEGACY}_id_seq")
    cursor.execute(f"SELECT COALESCE(max(id), 0) + 1 FROM {LEGACY}")
    return cursor.fetchone()[0]


def legacy_span(cursor) -> tuple[datetime, datetime] | None:
    cursor.execute(f'SELECT min("timestamp"), max("timestamp") FROM {LEGACY}')
    lo, hi = cursor.fetchone()
    return (lo, hi) if lo is not None else None


def ensure_days(cursor, first: date, last: date) -> int:
    """Create the partitions of first..last (inclusive) that do not exist yet (no concurrency:
    migrations and the migration command)."""
    created = 0
    day = first
    while day <= last:
        created += create_partition(cursor, day)
        day += timedelta(days=1)
    return created


def move_legacy_batch(cursor, *, batch_size: int) -> tuple[int, int]:
    """Move the legacy table's lowest ids into the partitioned table, in one statement.

    Returns (moved, already_there). A row already in the partitioned table (a client retried a
    batch after the upgrade, before this row was moved: ingest's idempotency only sees the new
    table) was stored and counted twice; the copy is dropped here and its second count taken
    back from the server, the feed counter and its rollup bucket (a retry carries the same
    values, so the bucket's maxima are unchanged).
    """
    columns = ", ".join(f'"{c}"' for c in COLUMNS)
    step = "%(step)s::interval"
    cursor.execute(
        f"WITH moved AS (DELETE FROM {LEGACY} WHERE id IN (SELECT id FROM {LEGACY} ORDER BY id LIMIT %(n)s) "
        f"RETURNING {columns}), "
        f"ins AS (INSERT INTO {PARENT} ({columns}) SELECT {columns} FROM moved "
        f'ON CONFLICT (server_id, "timestamp") DO NOTHING RETURNING server_id, "timestamp"), '
        f"dup AS (SELECT m.* FROM moved m LEFT JOIN ins i "
        f'ON i.server_id = m.server_id AND i."timestamp" = m."timestamp" WHERE i.server_id IS NULL), '
        f"fix_buckets AS (UPDATE ingest_metricbucket b SET count = b.count - d.n, "
        f"cpu_pct_sum = b.cpu_pct_sum - d.cpu, mem_pct_sum = b.mem_pct_sum - d.mem, "
        f"disk_io_mb_s_sum = b.disk_io_mb_s_sum - d.disk, latency_ms_sum = b.latency_ms_sum - d.lat, "
        + ", ".join(f"n_{s} = b.n_{s} - d.n_{s}" for s in _STATES)
        + " FROM (SELECT server_id, date_bin("
        f"{step}, \"timestamp\", 'epoch'::timestamptz) AS start, count(*) AS n, sum(cpu_pct) AS cpu, "
        f"sum(mem_pct) AS mem, sum(disk_io_mb_s) AS disk, sum(latency_ms) AS lat, "
        + ", ".join(f"count(*) FILTER (WHERE state = '{s}') AS n_{s}" for s in _STATES)
        + " FROM dup GROUP BY 1, 2) AS d WHERE b.server_id = d.server_id AND b.bucket_start = d.start RETURNING 1), "
        "fix_servers AS (UPDATE ingest_server s SET record_count = s.record_count - d.n "
        "FROM (SELECT server_id, count(*) AS n FROM dup GROUP BY 1) AS d WHERE s.id = d.server_id RETURNING 1), "
        f"days AS ({day_counts_upsert_sql('ins')}) "
        "SELECT (SELECT count(*) FROM moved), (SELECT count(*) FROM dup), "
        "(SELECT count(*) FROM fix_buckets), (SELECT count(*) FROM fix_servers), (SELECT count(*) FROM days)",
        {"n": batch_size, "step": _step()},
    )
    moved, duplicates, *_ = cursor.fetchone()
    if duplicates:
        cursor.execute("UPDATE ingest_feedcounter SET records = records - %s WHERE slot = 0", [duplicates])
    return moved, duplicates


def legacy_next_days(cursor, *, batch_size: int) -> tuple[date, date] | None:
    """The days the next batch of move_legacy_batch spans (its partitions must exist first)."""
    cursor.execute(
        f'SELECT min("timestamp"), max("timestamp") FROM (SELECT "timestamp" FROM {LEGACY} ORDER BY id LIMIT %s) AS b',
        [batch_size],
    )
    lo, hi = cursor.fetchone()
    return (day_of(lo), day_of(hi)) if lo is not None else None


def _step() -> str:
    from django.conf import settings

    return f"{settings.TFT_STEP_MINUTES} minutes"
