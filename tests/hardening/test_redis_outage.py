"""Redis stopped: the feed keeps working (the rate limiter fails open), /status reports predictions as
stale with their age, and the worker and beat reconnect by themselves when Redis is back."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.hardening.conftest import INTERVAL_SECONDS, Stack, record, wait_for

logger = logging.getLogger(__name__)

pytestmark = pytest.mark.slow

STALE_AFTER = 3 * INTERVAL_SECONDS


def _predictions(stack: Stack) -> dict:
    result = stack.get("/status")
    assert result.status == 200, result.body[:300]
    return result.json()["predictions"]


def test_redis_outage_keeps_feed_up_reports_stale_predictions_and_runs_resume(healthy_stack: Stack):
    stack = healthy_stack
    before = stack.wait_for_complete_run(timeout=60)
    first = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    feed_results = []
    stack.processes["redis"].stop()
    outage_started = time.monotonic()
    try:
        for n in range(10):
            feed_results.append(stack.post_feed([record("redisfault01", first + timedelta(seconds=n))]))
        stale = wait_for(
            lambda: (p := _predictions(stack))["stale"] and p,
            timeout=STALE_AFTER + 60,
            interval=1,
            what="/status to report stale predictions",
        )
        outage_seconds = time.monotonic() - outage_started
    finally:
        stack.start_redis()
    restarted = time.monotonic()
    after = stack.wait_for_complete_run(after_id=before[0], timeout=120)
    resumed_seconds = time.monotonic() - restarted
    fresh = wait_for(
        lambda: (p := _predictions(stack))["run_id"] >= after[0] and not p["stale"] and p,
        timeout=30,
        what="/status to report fresh predictions",
    )

    logger.info(
        "redis outage: feed answers %s, max feed latency %.2fs; stale after %.1fs (age %.1fs); "
        "runs resumed %.1fs after Redis came back (run #%s -> #%s)",
        [r.status for r in feed_results],
        max(r.seconds for r in feed_results),
        outage_seconds,
        stale["age_seconds"],
        resumed_seconds,
        before[0],
        after[0],
    )
    assert [r.status for r in feed_results] == [200] * 10, [r.body[:200] for r in feed_results]
    assert max(r.seconds for r in feed_results) < 5.0
    # stale means age > STALE_AFTER; age_seconds is shown rounded to 0.1 s, so 15.04 s reads 15.0
    assert stale["stale"] is True and stale["age_seconds"] >= STALE_AFTER
    assert fresh["stale"] is False and fresh["age_seconds"] <= STALE_AFTER
    (stored,) = stack.sql(
        "SELECT count(*) FROM ingest_metricrecord r JOIN ingest_server s ON s.id = r.server_id "
        "WHERE s.name = 'redisfault01'"
    )[0]
    assert stored == 10
