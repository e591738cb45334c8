"""The pending-fold table: a batch of servers already past warm-up appends its increments here, in
its own transaction, instead of updating one server row, one rollup row and one day-count row
per distinct server (issue 25; docs/ingest-guide-shape.md, round 4). ingest.services.records_fold
applies them and deletes them in one transaction.

One row per batch. The increments are aggregated per (server, 5-minute bucket) and held in
parallel arrays, so a batch of 1,000 servers writes one row (its arrays out of line) and a fold
deletes one row per batch, not one per server. PostgreSQL only: on SQLite every batch updates the
rollups and counters in its own transaction, as before.
"""

from django.db import migrations

METRICS = ("cpu_pct", "mem_pct", "disk_io_mb_s", "latency_ms")
STATES = ("idle", "healthy", "morning_spike", "maintenance", "heavy_load", "recovery", "offline", "critical_issue")

COLUMNS = [
    "id bigserial PRIMARY KEY",
    "received_at timestamptz NOT NULL",
    # Every server of the batch, also those whose records were all duplicates: last_received_at.
    "seen_ids bigint[] NOT NULL",
    # Per (server, bucket) of the records the batch stored; NULL when it stored none.
    "server_ids bigint[]",
    "bucket_starts timestamptz[]",
    "firsts timestamptz[]",
    "lasts timestamptz[]",
    "counts int[]",
    *(f"{m}_{agg}s float8[]" for m in METRICS for agg in ("sum", "max")),
    *(f"n_{s}s int[]" for s in STATES),
]


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE ingest_pendingfold ({', '.join(COLUMNS)})")
        # Stored out of line uncompressed: compressing a 1,000-server batch's arrays cost 2.9 of
        # the 4.3 ms its row took to write (the arrays are read once, by the fold, and deleted).
        arrays = [c.split()[0] for c in COLUMNS if c.endswith("[]") or c.endswith("[] NOT NULL")]
        cursor.execute(
            "ALTER TABLE ingest_pendingfold " + ", ".join(f"ALTER COLUMN {c} SET STORAGE EXTERNAL" for c in arrays)
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS ingest_pendingfold")


class Migration(migrations.Migration):
    dependencies = [("ingest", "0007_ingest_hot_updates")]

    operations = [migrations.RunPython(create, drop)]
