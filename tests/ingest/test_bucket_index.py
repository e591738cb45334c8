"""The rollup index that retention's per-server count of a day reads (migration 0005)."""

from datetime import UTC, datetime

import pytest
from django.db import connection

from ingest import partitions

pytestmark = pytest.mark.django_db


@pytest.mark.postgres_only
@pytest.mark.usefixtures("postgres_only")
def test_day_count_of_a_dropped_day_reads_the_rollup_index_alone():
    # A test table is tiny, so the planner would pick a sequential scan: rule the heap paths out and
    # see whether the index can answer by itself (it cannot if it stops covering server_id, count).
    start, end = partitions.day_bounds(datetime(2026, 1, 1, tzinfo=UTC).date())
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        cursor.execute("EXPLAIN " + partitions.detached_counts_sql(), {"start": start, "end": end})
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "Index Only Scan using bucket_day_count_idx" in plan, plan
