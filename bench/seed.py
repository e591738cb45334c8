"""Fast seeding of a simulated fleet: servers + 24 h of 5-minute buckets via COPY (no records)."""

from __future__ import annotations

import io
import math
from datetime import UTC, datetime, timedelta

RESET_TABLES = (
    "ingest_server",
    "ingest_metricrecord",
    "ingest_metricbucket",
    "forecasting_predictionrun",
    "forecasting_serverforecast",
    "forecasting_alert",
    "forecasting_alertnotification",
)


def reset_fleet_tables() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(RESET_TABLES)} RESTART IDENTITY CASCADE")


def _ts(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S+00")


def seed_fleet(n: int, *, now: datetime | None = None, hours: float = 24, seed: int = 7, windows=None) -> dict:
    """Replace the fleet by ``n`` simulated servers (forecasting.engine.simulator.fleet_names), each ready
    (record_count ≥ warmup, last_seen = now) with ``hours`` of buckets ending at now."""
    from django.conf import settings
    from django.db import connection, transaction

    from forecasting.engine.simulator import fleet_names, simulate_buckets
    from ingest.contract import METRICS, STATES

    now = now or datetime.now(UTC)
    start = now - timedelta(hours=hours)
    if windows is None:
        windows = simulate_buckets(servers=fleet_names(n), start=start, end=now, seed=seed)
    reset_fleet_tables()
    step = timedelta(minutes=windows[0].step_minutes)
    record_count = max(settings.TFT_WARMUP_RECORDS, len(windows[0].values))
    bucket_cols = ["server_id", "bucket_start", "count"]
    bucket_cols += [f"{m}_{agg}" for m in METRICS for agg in ("sum", "max")]
    bucket_cols += [f"n_{s}" for s in STATES]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ingest_server (name, profile, first_seen, last_seen, last_received_at, record_count) "
            "SELECT * FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[], "
            "%s::timestamptz[], %s::bigint[]) RETURNING id, name",
            [
                [w.server for w in windows],
                [w.profile for w in windows],
                [w.start for w in windows],
                [now] * len(windows),
                [now] * len(windows),
                [record_count] * len(windows),
            ],
        )
        ids = dict((name, sid) for sid, name in cursor.fetchall())
        buf = io.StringIO()
        zeros = [0] * len(STATES)
        rows = 0
        for w in windows:
            sid = ids[w.server]
            values = w.values.tolist()
            states = w.states.tolist()
            for t, (vals, state) in enumerate(zip(values, states, strict=True)):
                if state < 0 or any(math.isnan(v) for v in vals):
                    continue
                counts = zeros.copy()
                counts[state] = 1
                metric_cols = "\t".join(f"{v!r}\t{v!r}" for v in vals)
                buf.write(f"{sid}\t{_ts(w.start + t * step)}\t1\t{metric_cols}\t{chr(9).join(map(str, counts))}\n")
                rows += 1
        with cursor.cursor.copy(f"COPY ingest_metricbucket ({', '.join(bucket_cols)}) FROM STDIN") as copy:
            copy.write(buf.getvalue())
        cursor.execute("ANALYZE ingest_server")
        cursor.execute("ANALYZE ingest_metricbucket")
    return {"servers": len(windows), "buckets": rows, "now": now.isoformat()}
