"""Room for HOT updates on the rows every batch updates, and one index fewer on the rollups.

In the guide's batch shape (N servers × 1 timestamp) every record updates its own server row and
its own rollup row. An update that changes no indexed column is a HOT update (no index entry
written) only if the new row version fits on the same page; at the default fillfactor of 100 the
pages are full, so each update also wrote an entry into every index of the table (7 WAL records
per rollup row instead of 2; docs/ingest-guide-shape.md). A fillfactor below 100 keeps that
room on the pages new rows go to (existing pages keep their layout until rewritten).

ingest_metricbucket's own index on server_id is the leading column of uniq_bucket_server_start,
which serves every lookup by server; dropping it saves an index write per new bucket.
PostgreSQL only: SQLite has no fillfactor.
"""

from django.db import migrations, models

# Percent of each page new rows may fill. The server and rollup rows are updated by every batch
# that carries them, so half of each page is kept for their next versions: over 240 batches of
# 1,000 servers × 1 timestamp, 100 % of the updates were HOT at 50, 28 % (rollups) and 69 %
# (servers) at 100. Values in between were not measured.
FILLFACTOR = 50
TABLES = ("ingest_server", "ingest_metricbucket", "ingest_metricrecord_day_counts")


def set_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for table in TABLES:
            cursor.execute(f"ALTER TABLE IF EXISTS {table} SET (fillfactor = {FILLFACTOR})")


def reset_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for table in TABLES:
            cursor.execute(f"ALTER TABLE IF EXISTS {table} RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [("ingest", "0006_apikey_moved_to_access")]

    operations = [
        migrations.RunPython(set_fillfactor, reset_fillfactor),
        migrations.AlterField(
            model_name="metricbucket",
            name="server",
            field=models.ForeignKey(
                db_index=False,
                on_delete=models.deletion.CASCADE,
                related_name="buckets",
                to="ingest.server",
            ),
        ),
    ]
