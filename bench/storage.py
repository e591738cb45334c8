"""``python -m bench storage`` — issue 17's growth curve for the day-partitioned raw records.

Runs in-process against its own database (tftsite_bench_storage, dropped at the end) on the
local PostgreSQL; no web server. What it measures, with the table at 0, 10 M, 50 M and 100 M rows
(``--max-rows`` caps the sizes):

- ingest: ``records_ingest`` of 1,000-record batches (50 of the seeded servers × 20 seconds,
  timestamps of today never used before), records/s and p99 of a batch, the server-side store
  the way bench/ingest.py measures it (no HTTP, no JSON, no validation);
- at the largest size, the same ingest with the timestamp index as BRIN and with none;
- prune: ``records_prune`` of one whole day of 10,000 servers (DETACH + the day's per-server
  counts from ingest_metricrecord_day_counts + DROP), one day per repetition, with the phases
  the service logs (bench/results/storage_prune.json has the earlier count from the rollups:
  1.44 s; a covering rollup index made that 1.10 s but cost ingest 0.68 ×);
- row sizes: bytes per raw row (a day's partition with its indexes) and per rollup row;
- read: ``forecasting.windows.server_windows`` (the prediction read) at 1,000 and 10,000 servers.

Seeding is server-side and fast: each day is generated with generate_series straight into a
table of its own, indexed after the load and attached as that day's partition (an insert
through indexes runs at ~80,000 rows/s here, the load-then-index path at ~200,000). Seeded rows
are one per server per minute (the real 5-second cadence would be 12 times as many per day):
today's partition is filled first (10 M rows, the partition the measured ingest writes to), then
earlier days, each at most 10,000 servers × 1,440 rows = 14.4 M.
"""

from __future__ import annotations

import logging
import statistics
import time
from datetime import UTC, date, datetime, timedelta

from bench import common
from bench.common import percentile, summary

SERVERS = 10_000
SIZES = (0, 10_000_000, 50_000_000, 100_000_000)
ROWS_PER_SERVER_DAY = 1_440  # one a minute
PRUNE_ROWS_PER_SERVER_DAY = 288  # one per 5-minute bucket: a full day of rollups, 288 buckets a server
BATCHES = 30
BATCH_SERVERS, BATCH_SECONDS = 50, 20


def _cursor():
    from django.db import connection

    return connection.cursor()


def _seed_servers(now: datetime) -> None:
    with _cursor() as cur:
        cur.execute(
            "INSERT INTO ingest_server (id, name, profile, first_seen, last_seen, last_received_at, record_count) "
            "SELECT i, 'st' || lpad(i::text, 5, '0'), 'generic', %s, %s, %s, 0 FROM generate_series(1, %s) i",
            [now - timedelta(days=40), now, now, SERVERS],
        )
        cur.execute("SELECT setval(pg_get_serial_sequence('ingest_server', 'id'), %s)", [SERVERS])


def _load_day(day: date, *, servers: int, per_server: int) -> int:
    """Fill one day's (empty) partition with servers × per_server rows: load, index, attach."""
    from ingest import partitions

    start, end = partitions.day_bounds(day)
    name, tmp = partitions.partition_name(day), f"bench_load_{day:%Y%m%d}"
    step = 86_400 // per_server
    with _cursor() as cur:
        cur.execute("SET synchronous_commit = off")
        cur.execute("SET maintenance_work_mem = '512MB'")
        cur.execute(f"CREATE TABLE {tmp} (LIKE {partitions.PARENT} INCLUDING DEFAULTS)")
        cur.execute(
            f"INSERT INTO {tmp} (timestamp, cpu_pct, mem_pct, disk_io_mb_s, latency_ms, state, received_at, server_id) "
            "SELECT %s::timestamptz + m * %s * interval '1 second', (s * 7 + m) %% 100, (s + m * 3) %% 100, "
            "(m %% 50) * 1.5, 5 + (s %% 40), CASE WHEN m %% 97 = 0 THEN 'heavy_load' ELSE 'healthy' END, %s, s "
            "FROM generate_series(1, %s) s, generate_series(0, %s) m",
            [start, step, start, servers, per_server - 1],
        )
        rows = cur.rowcount
        cur.execute(f"ALTER TABLE {tmp} ADD CONSTRAINT {tmp}_day CHECK (timestamp >= %s AND timestamp < %s)", [start, end])
        cur.execute(f"CREATE UNIQUE INDEX ON {tmp} (id, timestamp)")
        cur.execute(f"CREATE UNIQUE INDEX ON {tmp} (server_id, timestamp)")
        cur.execute(f"CREATE INDEX ON {tmp} (timestamp)")
        if partitions.table_exists(cur, name):
            cur.execute(f"ALTER TABLE {partitions.PARENT} DETACH PARTITION {name}")
            cur.execute(f"DROP TABLE {name}")
        cur.execute(f"ALTER TABLE {tmp} RENAME TO {name}")
        cur.execute(f"ALTER TABLE {partitions.PARENT} ATTACH PARTITION {name} FOR VALUES FROM (%s) TO (%s)", [start, end])
        cur.execute(f"ALTER TABLE {name} DROP CONSTRAINT {tmp}_day")
        # The day counts the ingest statement keeps (seeded rows bypass it): this day's, recounted.
        cur.execute(f"DELETE FROM {partitions.DAY_COUNTS} WHERE day = %s", [day])
        cur.execute(
            f"INSERT INTO {partitions.DAY_COUNTS} (day, server_id, records) "
            f"SELECT %s, server_id, count(*) FROM {name} GROUP BY 2",
            [day],
        )
        cur.execute(f"ANALYZE {name}")
    return rows


def _grow_to(target: int, state: dict, log) -> None:
    """Seed whole or partial days backward from today until the table holds ``target`` seeded rows."""
    while state["seeded"] < target:
        missing = target - state["seeded"]
        servers = min(SERVERS, -(-missing // ROWS_PER_SERVER_DAY))
        if state["next_day"] == state["today"]:
            servers = min(servers, 10_000_000 // ROWS_PER_SERVER_DAY + 1)  # today: ~10 M
        t0 = time.perf_counter()
        rows = _load_day(state["next_day"], servers=servers, per_server=ROWS_PER_SERVER_DAY)
        log(f"storage: seeded {rows:,} rows into {state['next_day']} in {time.perf_counter() - t0:.1f} s")
        state["seeded"] += rows
        state["next_day"] -= timedelta(days=1)


class _Clock:
    """Timestamps of today never used: seconds that are not whole minutes (seeded rows are)."""

    def __init__(self, today: date):
        self.base = datetime.combine(today, datetime.min.time(), tzinfo=UTC)
        self.second = 0

    def take(self, n: int) -> list[datetime]:
        out = []
        while len(out) < n:
            self.second += 1
            if self.second % 60:
                out.append(self.base + timedelta(seconds=self.second))
        return out


def _ingest_rep(clock: _Clock, offset: int) -> dict:
    from ingest.services import records_ingest
    from ingest.validation import CleanRecord

    times = []
    for b in range(BATCHES):
        first = (offset + b * BATCH_SERVERS) % (SERVERS - BATCH_SERVERS) + 1
        names = [f"st{i:05d}" for i in range(first, first + BATCH_SERVERS)]
        stamps = clock.take(BATCH_SECONDS)
        batch = [CleanRecord(n, t, 40.0 + k % 7, 55.5, 12.0, 8.5, "healthy") for k, t in enumerate(stamps) for n in names]
        t0 = time.perf_counter()
        result = records_ingest(records=batch)
        times.append(time.perf_counter() - t0)
        assert result.accepted == len(batch), result
    times_ms = sorted(t * 1000 for t in times)
    return {"records_per_s": BATCHES * BATCH_SERVERS * BATCH_SECONDS / sum(times),
            "p50_ms": statistics.median(times_ms), "p99_ms": percentile(times_ms, 99)}


def _ingest_at(size: int, clock: _Clock, reps: int, log, label: str = "") -> dict:
    runs = [_ingest_rep(clock, offset=size // 1000 + rep * 997) for rep in range(reps)]
    res = {"rows": size, "records_per_s": summary([r["records_per_s"] for r in runs], 0),
           "p50_ms": summary([r["p50_ms"] for r in runs], 1), "p99_ms": summary([r["p99_ms"] for r in runs], 1)}
    log(f"storage: ingest at {size:,} rows{label}: {res['records_per_s']['median']:,} records/s, "
        f"p99 {res['p99_ms']['median']} ms per 1,000-record batch")
    return res


def _ts_index(kind: str) -> None:
    with _cursor() as cur:
        cur.execute("DROP INDEX IF EXISTS record_ts_idx")
        if kind != "none":
            cur.execute("SET maintenance_work_mem = '512MB'")
            cur.execute(f"CREATE INDEX record_ts_idx ON ingest_metricrecord USING {kind} (timestamp)")


def _prune_days(state: dict, reps: int, log) -> dict:
    """Prune of one whole day per repetition (the oldest seeded days first)."""
    days = iter(sorted(state["next_day"] - timedelta(days=20 + k) for k in range(reps)))
    runs = [_prune_day(next(days), log) for _ in range(reps)]
    out = {"servers": SERVERS, "rows_per_server": PRUNE_ROWS_PER_SERVER_DAY,
           "seconds": summary([p["seconds"] for p in runs], 3),
           **{k: summary([p.get(k) for p in runs], 3) for k in ("detach_s", "count_s", "apply_s")},
           "rows": runs[0]["rows"], "counts_exact": all(p["exact"] for p in runs)}
    log(f"storage: prune {out['seconds']['median']} s (count {out['count_s']['median']} s, "
        f"apply {out['apply_s']['median']} s), counts exact: {out['counts_exact']}")
    return out


def _bytes_per_row(table: str, where: str = "") -> dict:
    """Rows and on-disk bytes per row of a table with its indexes (what 14 days of disk are sized from)."""
    with _cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {table} {where}")
        rows = cur.fetchone()[0]
        cur.execute("SELECT pg_table_size(%s), pg_indexes_size(%s)", [table, table])
        heap, indexes = cur.fetchone()
    return {"table": table, "rows": rows, "heap_bytes_per_row": round(heap / max(rows, 1), 1),
            "index_bytes_per_row": round(indexes / max(rows, 1), 1),
            "total_bytes_per_row": round((heap + indexes) / max(rows, 1), 1)}


def row_sizes(day: date, *, servers: int = 2_000) -> dict:
    """One day of ``servers`` × 1,440 raw rows in its partition and its 5-minute rollups, measured."""
    from ingest import partitions

    _load_day(day, servers=servers, per_server=ROWS_PER_SERVER_DAY)
    name = partitions.partition_name(day)
    with _cursor() as cur:
        cur.execute("CREATE TABLE bench_rollups AS SELECT * FROM ingest_metricbucket WITH NO DATA")
        cur.execute(
            "INSERT INTO bench_rollups (id, server_id, bucket_start, count, cpu_pct_sum, cpu_pct_max, mem_pct_sum, "
            "mem_pct_max, disk_io_mb_s_sum, disk_io_mb_s_max, latency_ms_sum, latency_ms_max, n_idle, n_healthy, "
            "n_morning_spike, n_maintenance, n_heavy_load, n_recovery, n_offline, n_critical_issue) "
            "SELECT row_number() OVER (), server_id, date_bin('5 minutes', timestamp, 'epoch'), count(*), sum(cpu_pct), "
            "max(cpu_pct), sum(mem_pct), max(mem_pct), sum(disk_io_mb_s), max(disk_io_mb_s), sum(latency_ms), "
            "max(latency_ms), 0, count(*), 0, 0, 0, 0, 0, 0 "
            f"FROM {name} GROUP BY 2, 3"
        )
        # the rollup table's own indexes: pkey, unique (server, bucket_start), bucket_start
        cur.execute("ALTER TABLE bench_rollups ADD PRIMARY KEY (id)")
        cur.execute("CREATE UNIQUE INDEX ON bench_rollups (server_id, bucket_start)")
        cur.execute("CREATE INDEX ON bench_rollups (bucket_start)")
    out = {"raw": _bytes_per_row(name), "rollup": _bytes_per_row("bench_rollups")}
    with _cursor() as cur:
        cur.execute("DROP TABLE bench_rollups")
    return out


def _prune_day(day: date, log) -> dict:
    """Seed a day of 10,000 servers with its rollups and counts, then time records_prune of it."""
    from ingest import partitions
    from ingest.models import MetricRecord
    from ingest.services import records_prune

    rows = _load_day(day, servers=SERVERS, per_server=PRUNE_ROWS_PER_SERVER_DAY)
    end = partitions.day_bounds(day)[1]
    with _cursor() as cur:
        cur.execute(
            "INSERT INTO ingest_metricbucket (server_id, bucket_start, count, cpu_pct_sum, cpu_pct_max, mem_pct_sum, "
            "mem_pct_max, disk_io_mb_s_sum, disk_io_mb_s_max, latency_ms_sum, latency_ms_max, n_idle, n_healthy, "
            "n_morning_spike, n_maintenance, n_heavy_load, n_recovery, n_offline, n_critical_issue) "
            "SELECT server_id, date_bin('5 minutes', timestamp, 'epoch'), count(*), sum(cpu_pct), max(cpu_pct), "
            "sum(mem_pct), max(mem_pct), sum(disk_io_mb_s), max(disk_io_mb_s), sum(latency_ms), max(latency_ms), "
            "0, count(*) FILTER (WHERE state = 'healthy'), 0, 0, count(*) FILTER (WHERE state = 'heavy_load'), 0, 0, 0 "
            f"FROM {partitions.partition_name(day)} GROUP BY 1, 2"
        )
        cur.execute(
            f"UPDATE ingest_server s SET record_count = s.record_count + c.n FROM (SELECT server_id, count(*) AS n "
            f"FROM {partitions.partition_name(day)} GROUP BY 1) c WHERE s.id = c.server_id"
        )
        cur.execute("UPDATE ingest_feedcounter SET records = records + %s WHERE slot = 0", [rows])
        cur.execute("SELECT sum(record_count) FROM ingest_server")
        before = cur.fetchone()[0]
        # The day a prune drops was written TFT_RETENTION_DAYS ago: autovacuum has long been over it.
        cur.execute("VACUUM (ANALYZE) ingest_metricbucket")
    phases, service_log = _Phases(), logging.getLogger("ingest.services")
    level = service_log.level
    service_log.setLevel(logging.INFO)
    service_log.addHandler(phases)
    t0 = time.perf_counter()
    try:
        deleted = records_prune(older_than=end)
    finally:
        seconds = time.perf_counter() - t0
        service_log.removeHandler(phases)
        service_log.setLevel(level)
    with _cursor() as cur:
        cur.execute("SELECT sum(record_count) FROM ingest_server")
        after = cur.fetchone()[0]
    exact = deleted == rows and before - after == rows and not MetricRecord.objects.filter(timestamp__lt=end).exists()
    log(f"storage: prune of {day} ({rows:,} rows, {SERVERS:,} servers): {seconds:.3f} s {phases.seen}, "
        f"counts exact: {exact}")
    return {"seconds": seconds, "rows": rows, "exact": exact, **phases.seen}


class _Phases(logging.Handler):
    """Picks the phase timings out of the service's "dropped record partition" log line."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.seen: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        for key in ("detach_s", "count_s", "apply_s"):
            if isinstance(getattr(record, key, None), float):
                self.seen[key] = getattr(record, key)


def _seed_read_buckets(now: datetime) -> None:
    """24 h of 5-minute buckets ending now for every server (what a prediction reads)."""
    with _cursor() as cur:
        cur.execute("SET synchronous_commit = off")
        cur.execute(
            "INSERT INTO ingest_metricbucket (server_id, bucket_start, count, cpu_pct_sum, cpu_pct_max, mem_pct_sum, "
            "mem_pct_max, disk_io_mb_s_sum, disk_io_mb_s_max, latency_ms_sum, latency_ms_max, n_idle, n_healthy, "
            "n_morning_spike, n_maintenance, n_heavy_load, n_recovery, n_offline, n_critical_issue) "
            "SELECT s, date_bin('5 minutes', %s::timestamptz, 'epoch') - k * interval '5 minutes', 60, "
            "60 * ((s + k) %% 90), (s + k) %% 90 + 5, 60 * 50.0, 60, 60 * 10.0, 12, 60 * 8.0, 9, "
            "0, 60, 0, 0, 0, 0, 0, 0 FROM generate_series(1, %s) s, generate_series(0, 287) k "
            "ON CONFLICT (server_id, bucket_start) DO NOTHING",
            [now, SERVERS],
        )
        cur.execute("UPDATE ingest_server SET last_seen = %s, record_count = GREATEST(record_count, 17280)", [now])
        cur.execute("ANALYZE ingest_metricbucket")


def _read_at(n: int, reps: int, log) -> dict:
    from forecasting.windows import server_windows

    ids = list(range(1, n + 1))
    times = []
    for _ in range(reps + 1):  # the first one warms the caches
        t0 = time.perf_counter()
        windows = server_windows(server_ids=ids)
        times.append(time.perf_counter() - t0)
        assert len(windows) == n, len(windows)
    res = {"servers": n, "seconds": summary(times[1:], 3)}
    res["ms_per_server"] = round(res["seconds"]["median"] * 1000 / n, 3)
    log(f"storage: read phase (server_windows) at {n:,} servers: {res['seconds']['median']} s")
    return res


def run_storage(args, log) -> dict:
    """The whole section; the caller has created and migrated the database, dropped at the end."""
    try:
        return _run(args, log)
    finally:
        drop_database()


def _run(args, log) -> dict:
    from django.db import connection

    now = datetime.now(UTC)
    today = now.date()
    reps = args.reps
    sizes = sorted({s for s in SIZES if s <= args.max_rows} | {0, args.max_rows})
    _seed_servers(now)
    state = {"seeded": 0, "today": today, "next_day": today}
    clock = _Clock(today)
    out: dict = {"servers": SERVERS, "seeded_rows_per_server_day": ROWS_PER_SERVER_DAY, "ingest": []}
    for size in sizes:
        _grow_to(size, state, log)
        out["ingest"].append(_ingest_at(state["seeded"], clock, reps, log))
    first, last = out["ingest"][0], out["ingest"][-1]
    out["ingest_ratio_largest_to_empty"] = round(last["records_per_s"]["median"] / first["records_per_s"]["median"], 2)
    if not args.skip_index_variants:
        out["ts_index_at_largest"] = {"btree": last}
        for kind in ("brin", "none"):
            _ts_index(kind)
            out["ts_index_at_largest"][kind] = _ingest_at(state["seeded"], clock, reps, log, f", timestamp index {kind}")
        _ts_index("btree")
    out["prune_day"] = _prune_days(state, reps, log)
    out["row_sizes"] = row_sizes(state["next_day"] - timedelta(days=40))
    if not args.skip_read:
        _seed_read_buckets(now)
        out["read"] = [_read_at(n, reps, log) for n in (1_000, SERVERS)]
        out["read_cost_per_server_ratio"] = round(out["read"][1]["ms_per_server"] / out["read"][0]["ms_per_server"], 2)
    with _cursor() as cur:
        cur.execute("SELECT pg_database_size(current_database())")
        out["database_bytes"] = cur.fetchone()[0]
    connection.close()
    out["goals"] = {
        "ingest_largest_ge_0.8_empty": out["ingest_ratio_largest_to_empty"] >= 0.8,
        "prune_day_le_1s": out["prune_day"]["seconds"]["median"] <= 1.0,
        "read_linear": out["read_cost_per_server_ratio"] <= 1.25 if "read" in out else None,
    }
    out["predictions_current"] = "not run: needs a 10,000-server prediction run (issue 17 item 3)"
    return out


def drop_database() -> None:
    """Free the disk: the seeded database is tens of GB at 100 M rows."""
    import psycopg
    from django.db import connections

    connections.close_all()
    with psycopg.connect(common.pg_admin_dsn(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {common.DB_NAME} WITH (FORCE)")
