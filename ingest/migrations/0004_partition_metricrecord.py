"""Raw records become a table partitioned by day on PostgreSQL (ingest/partitions.py).

The plain table is renamed ingest_metricrecord_legacy and an empty partitioned table takes its
name, so `migrate` is fast on any size. A small legacy table (a fresh install, a test database,
a demo) is moved right here; a big one is left for `manage.py partition_records`, which moves it
in resumable batches while the feed runs. SQLite keeps its plain table.

The Django model keeps `id` as its primary key: the database's is (id, timestamp), because a
partitioned table's primary key must contain the partition key; ids still come from one sequence,
so `id` alone stays unique and the ORM and the admin address rows by it as before.
"""

import logging
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import migrations

from ingest import partitions

# Up to this many rows are moved inside the migration (seconds); more are left to the command.
MOVE_IN_MIGRATION = 100_000
logger = logging.getLogger(__name__)


def partition(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        if partitions.is_partitioned(cursor):
            return
        first_id = partitions.rename_to_legacy(cursor)
        partitions.create_parent(cursor, first_id=first_id)
        today = datetime.now(UTC).date()
        partitions.ensure_days(cursor, today - timedelta(days=settings.TFT_RETENTION_DAYS), today + timedelta(days=3))
        cursor.execute(f"SELECT count(*) FROM (SELECT 1 FROM {partitions.LEGACY} LIMIT %s) AS x", [MOVE_IN_MIGRATION + 1])
        if cursor.fetchone()[0] > MOVE_IN_MIGRATION:
            logger.warning(
                "%s holds more than %s records: run `manage.py partition_records` to move them "
                "into the partitioned table",
                partitions.LEGACY,
                MOVE_IN_MIGRATION,
            )
            return
        span = partitions.legacy_span(cursor)
        if span:
            partitions.ensure_days(cursor, partitions.day_of(span[0]), partitions.day_of(span[1]))
            columns = ", ".join(f'"{c}"' for c in partitions.COLUMNS)
            cursor.execute(f"INSERT INTO {partitions.PARENT} ({columns}) SELECT {columns} FROM {partitions.LEGACY}")
        cursor.execute(f"DROP TABLE {partitions.LEGACY}")


def unpartition(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        if not partitions.is_partitioned(cursor):
            return
        parent, plain = partitions.PARENT, f"{partitions.PARENT}_plain"
        columns = ", ".join(f'"{c}"' for c in partitions.COLUMNS)
        cursor.execute(f"CREATE TABLE {plain} (LIKE {parent} INCLUDING DEFAULTS)")
        cursor.execute(f"INSERT INTO {plain} ({columns}) SELECT {columns} FROM {parent}")
        if partitions.table_exists(cursor, partitions.LEGACY):
            cursor.execute(f"INSERT INTO {plain} ({columns}) SELECT {columns} FROM {partitions.LEGACY}")
            cursor.execute(f"DROP TABLE {partitions.LEGACY}")
        cursor.execute(f"ALTER SEQUENCE {partitions.SEQUENCE} OWNED BY {plain}.id")
        cursor.execute(f"DROP TABLE {parent}")
        cursor.execute(f"DROP TABLE IF EXISTS {partitions.DROPPED_DAYS}")
        cursor.execute(f"DROP TABLE IF EXISTS {partitions.DAY_COUNTS}")
        cursor.execute(f"ALTER TABLE {plain} RENAME TO {parent}")
        cursor.execute(f"ALTER TABLE {parent} ADD CONSTRAINT {parent}_pkey PRIMARY KEY (id)")
        cursor.execute(f'ALTER TABLE {parent} ADD CONSTRAINT uniq_record_server_ts UNIQUE (server_id, "timestamp")')
        cursor.execute(
            f"ALTER TABLE {parent} ADD CONSTRAINT {parent}_server_id_fk_ingest_server_id FOREIGN KEY (server_id) "
            "REFERENCES ingest_server (id) DEFERRABLE INITIALLY DEFERRED"
        )
        cursor.execute(f'CREATE INDEX record_ts_idx ON {parent} ("timestamp")')
        cursor.execute(f"CREATE INDEX {parent}_server_id_idx ON {parent} (server_id)")


class Migration(migrations.Migration):
    dependencies = [("ingest", "0003_api_keys")]

    operations = [migrations.RunPython(partition, unpartition)]
