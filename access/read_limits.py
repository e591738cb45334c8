"""Heavy reads cannot starve the feed (issue 27): their own rate limits, and bodies cached for a few
seconds.

GET /predictions/current (tens of MB at 10,000 servers), /status (a 7-day score sum) and /metrics
(database counters, every process's metric files, one gauge set per server) cost far more than a
feed batch. Each has its own per-client limit besides the general read limit (settings
TFT_RATE_LIMIT_HEAVY_READ_PER_MINUTE, TFT_RATE_LIMIT_METRICS_PER_MINUTE; 0 = off), and /status
and /metrics serve a body rendered at most TFT_READ_CACHE_SECONDS ago (per process, in Django's
"default" cache), keyed on the current run: a new run is served at once, and a burst of readers
costs one render per process and interval. /predictions/current is already rendered once per run
(forecasting.runs.selectors.predictions_current_json).

The production recipe (bin/run, README "Production") keeps slow clients off the workers' threads;
bench/slow_readers.py measures it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.core.cache import caches

from access.throttles import _MinuteThrottle

logger = logging.getLogger(__name__)
T = TypeVar("T")


class HeavyReadRateThrottle(_MinuteThrottle):
    setting = "TFT_RATE_LIMIT_HEAVY_READ_PER_MINUTE"
    scope = "heavy_read"


class MetricsRateThrottle(_MinuteThrottle):
    setting = "TFT_RATE_LIMIT_METRICS_PER_MINUTE"
    scope = "metrics"


def read_cached(*, name: str, run_id: int | None, render: Callable[[], T]) -> T:
    """`render()`'s value, shared by the requests of the next TFT_READ_CACHE_SECONDS that read the
    same `name` while `run_id` is the current run. The cache failing is not the reader's problem."""
    seconds = settings.TFT_READ_CACHE_SECONDS
    if not seconds:
        return render()
    cache = caches["default"]
    key = f"read:{name}:{run_id}"
    try:
        value = cache.get(key)
    except Exception:
        logger.warning("read cache unavailable", exc_info=True)
        return render()
    if value is None:
        value = render()
        try:
            cache.set(key, value, timeout=seconds)
        except Exception:
            logger.warning("read cache unavailable", exc_info=True)
    return value
