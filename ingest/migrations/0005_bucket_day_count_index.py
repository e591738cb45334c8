"""The rollups' bucket_start index becomes covering (INCLUDE server_id, count) on PostgreSQL.

Retention takes a dropped day's records off the per-server counts by summing that day's rollup
counts per server (ingest.partitions.detached_counts_sql): 2.9 M rollups for 10,000 servers.
With the plain index that sum read every one of those rows from the heap; with server_id and
count in the index it is an index-only scan (the day is weeks old, so its pages are all-visible).
bench/results/storage.json (prune_by_bucket_index) has both. SQLite ignores INCLUDE.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("ingest", "0004_partition_metricrecord")]

    operations = [
        migrations.AddIndex(
            model_name="metricbucket",
            index=models.Index(fields=["bucket_start"], include=["server", "count"], name="bucket_day_count_idx"),
        ),
        migrations.RemoveIndex(model_name="metricbucket", name="bucket_start_idx"),
    ]
