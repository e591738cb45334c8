"""Per-day, per-server record counts of the partitioned raw table (ingest/partitions.py
DAY_COUNTS), so the daily prune reads 10,000 counts instead of summing a day of rollups.
Counted here from the rollups (one day at a time); PostgreSQL only, like the partitions."""

from django.db import migrations

from ingest import partitions


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        if not partitions.is_partitioned(cursor):
            return
        cursor.execute(partitions.CREATE_DAY_COUNTS)
        partitions.day_counts_rebuild(cursor)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {partitions.DAY_COUNTS}")


class Migration(migrations.Migration):
    dependencies = [("ingest", "0004_partition_metricrecord")]

    operations = [migrations.RunPython(create, drop)]
