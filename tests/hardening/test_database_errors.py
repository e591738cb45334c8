"""A database error in the middle of a batch (a constraint, a raised exception, disk full) is a clear
5xx JSON answer and leaves nothing of the batch behind: no records, servers, rollups or counters."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from tests.hardening.conftest import Stack, record

logger = logging.getLogger(__name__)

pytestmark = pytest.mark.slow

# Rollup rows for these servers make the trigger raise; the rollup insert is the last write of a
# batch, after its servers and records, so a partial batch would show if the rollback failed.
TRIGGER_SQL = """
CREATE OR REPLACE FUNCTION hardening_poison() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE server_name text;
BEGIN
  SELECT name INTO server_name FROM ingest_server WHERE id = NEW.server_id;
  IF server_name = 'poison-check' THEN
    RAISE EXCEPTION 'hardening: rollup rejected' USING ERRCODE = 'check_violation';
  ELSIF server_name = 'poison-raise' THEN
    RAISE EXCEPTION 'hardening: trigger raised';
  ELSIF server_name = 'poison-diskfull' THEN
    RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full';
  END IF;
  RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS hardening_poison ON ingest_metricbucket;
CREATE TRIGGER hardening_poison BEFORE INSERT ON ingest_metricbucket
  FOR EACH ROW EXECUTE FUNCTION hardening_poison();
"""
DROP_SQL = "DROP TRIGGER IF EXISTS hardening_poison ON ingest_metricbucket; DROP FUNCTION IF EXISTS hardening_poison();"


@pytest.fixture
def poisoned_db(healthy_stack: Stack) -> Stack:
    healthy_stack.sql(TRIGGER_SQL)
    yield healthy_stack
    healthy_stack.sql(DROP_SQL)


def _footprint(stack: Stack, names: list[str]) -> tuple:
    return stack.sql(
        "SELECT (SELECT count(*) FROM ingest_server WHERE name = ANY(%(n)s)), "
        "(SELECT count(*) FROM ingest_metricrecord r JOIN ingest_server s ON s.id = r.server_id WHERE s.name = ANY(%(n)s)), "
        "(SELECT count(*) FROM ingest_metricbucket b JOIN ingest_server s ON s.id = b.server_id WHERE s.name = ANY(%(n)s)), "
        "(SELECT coalesce(sum(batches), 0) FROM ingest_feedcounter), "
        "(SELECT coalesce(sum(records), 0) FROM ingest_feedcounter), "
        "(SELECT count(*) FROM ingest_metricrecord)",
        {"n": names},
    )[0]


@pytest.mark.parametrize(
    ("poison", "status", "error"),
    [
        ("poison-check", 500, "database_error"),
        ("poison-raise", 500, "database_error"),
        ("poison-diskfull", 503, "database_unavailable"),
    ],
)
def test_database_error_mid_batch_is_a_json_5xx_and_stores_nothing(poisoned_db: Stack, poison, status, error):
    stack = poisoned_db
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    clean_server = f"clean-{poison}"
    batch = [record(clean_server, start + timedelta(seconds=i)) for i in range(20)]
    batch += [record(poison, start + timedelta(seconds=i)) for i in range(5)]
    names = [clean_server, poison]
    before = _footprint(stack, names)

    result = stack.post_feed(batch)

    logger.info("%s: %s %s", poison, result.status, result.body[:200])
    assert result.status == status
    assert result.headers.get("Content-Type", "").startswith("application/json")
    body = result.json()
    assert body["error"] == error and "nothing" in body["message"]
    if status == 503:
        assert result.headers.get("Retry-After", "").isdigit()
    assert before[:3] == (0, 0, 0)
    assert _footprint(stack, names) == before, "part of a failed batch was stored"
    # The same records without the poisoned server go through: the failure was the batch, not the service.
    assert stack.post_feed(batch[:20]).status == 200
