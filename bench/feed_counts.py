"""The feed response's server counts at fleet scale (issue 25).

    python -m bench.feed_counts --servers 100000 --rounds 40

Every POST /feed/data answers with servers_tracked / servers_ready, which count every server row.
A batch of settled servers (past warm-up and feeding, the guide's steady state) cannot change
them, so its response may reuse this process's counts for TFT_FEED_SERVER_COUNTS_MAX_AGE_SECONDS
(ingest.selectors.feed_totals). This bench stores the guide's shape (1,000 servers × 1 timestamp,
settled) with ``records_ingest`` in-process in a fleet of --servers server rows, alternating
batches that count afresh (max age 0) and batches that reuse the counts (the default 2 s), and
reports the medians per batch and their ratio, measured in one run. Drops and recreates the bench
database (tftsite_bench).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import UTC, datetime, timedelta

from bench import common

BATCH_SERVERS = 1000


def _fill(servers: int) -> None:
    """Server rows beyond the batch's, feeding and past warm-up, as a fleet of that size has."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ingest_server (name, profile, first_seen, last_seen, last_received_at, record_count) "
            "SELECT 'fleet' || g, 'generic', now() - interval '1 day', now(), now(), 1000 "
            "FROM generate_series(1, %s) AS g",
            [max(0, servers - BATCH_SERVERS)],
        )
        cursor.execute("VACUUM ANALYZE ingest_server")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=40, help="batches of each kind, alternating")
    args = parser.parse_args(argv)
    common.apply_env()
    common.recreate_database()
    import django

    django.setup()
    from django.conf import settings

    from ingest.services import records_ingest
    from ingest.validation import CleanRecord

    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)

    def batch(i: int) -> list[CleanRecord]:
        ts = start + timedelta(seconds=5 * i)
        return [CleanRecord(server_name=f"srv{s:05d}", timestamp=ts, cpu_pct=40.0 + s % 7, mem_pct=55.0,
                            disk_io_mb_s=12.0, latency_ms=8.0, state="healthy") for s in range(BATCH_SERVERS)]  # fmt: skip

    load_before = os.getloadavg()
    settings.TFT_FEED_SERVER_COUNTS_MAX_AGE_SECONDS = 0.0
    for i in range(settings.TFT_WARMUP_RECORDS + 1):  # the batch's servers past warm-up
        records_ingest(records=batch(i))
    _fill(args.servers)
    times: dict[float, list[float]] = {0.0: [], 2.0: []}
    i = settings.TFT_WARMUP_RECORDS + 1
    for _ in range(args.rounds):
        for age in times:
            settings.TFT_FEED_SERVER_COUNTS_MAX_AGE_SECONDS = age
            t = time.perf_counter()
            result = records_ingest(records=batch(i))
            times[age].append((time.perf_counter() - t) * 1e3)
            i += 1
    counted, reused = (statistics.median(times[a]) for a in (0.0, 2.0))
    out = {
        "what": "records_ingest of a settled 1,000 servers x 1 timestamp batch, in-process, PostgreSQL",
        "servers": args.servers,
        "rounds": args.rounds,
        "counted_every_batch_ms": common.summary(times[0.0], 2),
        "counts_reused_ms": common.summary(times[2.0], 2),
        "ratio_reused_vs_counted": round(reused / counted, 3),
        "last_response": {"servers_tracked": result.servers_tracked, "servers_ready": result.servers_ready},
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    path = common.write_json(f"feed_counts_{args.servers}", out)
    print(f"{counted:.1f} ms counted, {reused:.1f} ms reused ({out['ratio_reused_vs_counted']}x) -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
