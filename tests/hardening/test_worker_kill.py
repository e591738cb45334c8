"""The prediction worker SIGKILLed in the middle of a run: the previous complete run stays current, the
stuck run does not stay 'running' — it is expired by the next start (its chunks died with the
worker), or, when its remaining chunks were still queued, the restarted worker finishes it — and the
next scheduled run completes."""

from __future__ import annotations

import logging
import time

import pytest

from tests.hardening.conftest import RUN_STALE_SECONDS, Stack, wait_for

logger = logging.getLogger(__name__)

pytestmark = pytest.mark.slow

ATTEMPTS = 3  # a run can finish between the poll and the kill; then we try the next one


def _run_status(stack: Stack, run_id: int) -> str:
    return stack.sql("SELECT status FROM forecasting_predictionrun WHERE id = %s", [run_id])[0][0]


def _current_run_id(stack: Stack) -> int:
    result = stack.get("/predictions/current")
    assert result.status == 200, result.body[:300]
    return result.json()["metadata"]["run_id"]


def _kill_worker_mid_run(stack: Stack) -> int:
    """Kill -9 the worker's process group while a run is 'running'; returns that run's id."""
    for attempt in range(1, ATTEMPTS + 1):
        floor = stack.latest_complete_run()[0]
        running = wait_for(
            lambda floor=floor: stack.sql(
                "SELECT id FROM forecasting_predictionrun WHERE status = 'running' AND id > %s AND chunks_done > 0 "
                "ORDER BY id DESC LIMIT 1",
                [floor],
            ),
            timeout=60,
            interval=0.05,
            what="a run in progress",
        )[0][0]
        stack.processes["worker"].kill9()
        if _run_status(stack, running) == "running":
            logger.info("worker killed during run #%s (attempt %d)", running, attempt)
            return running
        logger.info("run #%s finished before the kill landed; restarting the worker", running)
        stack.start_worker()
    pytest.fail(f"could not kill the worker in the middle of a run in {ATTEMPTS} attempts")


def test_worker_sigkill_mid_run_keeps_previous_run_current_and_next_run_succeeds(healthy_stack: Stack):
    stack = healthy_stack
    stack.wait_for_complete_run(timeout=60)
    stuck = _kill_worker_mid_run(stack)
    killed_at = time.monotonic()
    previous = stack.latest_complete_run()[0]
    assert previous < stuck
    assert _current_run_id(stack) == previous

    stack.start_worker()
    served_meanwhile = _current_run_id(stack)
    wait_for(
        lambda: _run_status(stack, stuck) in ("expired", "complete"),
        timeout=RUN_STALE_SECONDS + 90,
        interval=0.5,
        what=f"run #{stuck} to be expired or finished",
    )
    expired_seconds = time.monotonic() - killed_at
    following = stack.wait_for_complete_run(after_id=stuck, timeout=120)
    recovered_seconds = time.monotonic() - killed_at

    (error,) = stack.sql("SELECT error FROM forecasting_predictionrun WHERE id = %s", [stuck])[0]
    logger.info(
        "killed mid-run #%s: expired after %.1fs, run #%s complete %.1fs after the kill",
        stuck,
        expired_seconds,
        following[0],
        recovered_seconds,
    )
    assert served_meanwhile == previous
    # expired: the error says so; finished from its still-queued chunks: complete, no error
    assert ("expired" in error) if _run_status(stack, stuck) == "expired" else not error
    assert following[1] > 0 and following[2] + following[3] == following[1]
    assert _current_run_id(stack) >= following[0]
    (still_running,) = stack.sql(
        "SELECT count(*) FROM forecasting_predictionrun WHERE status = 'running' AND id <= %s", [stuck]
    )[0]
    assert still_running == 0
