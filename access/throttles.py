"""Rate limits per API key (or client IP without one): fixed one-minute windows in the cache.

DRF's built-in throttles keep every request's timestamp in the cache, which costs more the higher
the limit; a counter per window costs two cache operations whatever the rate. With Redis
configured the counters are shared by every web worker; with the local-memory cache they are per
process. If the cache is down the request is let through: a broken rate limiter must not stop the
feed (that is what Redis outages would otherwise do).
"""

import logging
import time

from django.conf import settings
from django.core.cache import caches
from rest_framework.throttling import BaseThrottle

logger = logging.getLogger(__name__)
WINDOW_SECONDS = 60


class _MinuteThrottle(BaseThrottle):
    setting = ""
    scope = ""

    def allow_request(self, request, view) -> bool:
        limit = getattr(settings, self.setting)
        if not limit:
            return True
        now = time.time()
        window = int(now // WINDOW_SECONDS)
        self._retry_after = WINDOW_SECONDS - (now % WINDOW_SECONDS)
        # Per key when the request carried a known one, else per client address.
        ident = getattr(request, "api_key_name", None) or self.get_ident(request)
        key = f"rl:{self.scope}:{ident}:{window}"
        cache = caches["ratelimit"]
        try:
            cache.add(key, 0, timeout=WINDOW_SECONDS + 5)
            count = cache.incr(key)
        except Exception:  # the limiter fails open: see the module docstring
            logger.warning("rate limit cache unavailable; not limiting", exc_info=True)
            return True
        return count <= limit

    def wait(self) -> float:
        return max(1.0, getattr(self, "_retry_after", WINDOW_SECONDS))


class FeedRateThrottle(_MinuteThrottle):
    setting = "TFT_RATE_LIMIT_FEED_PER_MINUTE"
    scope = "feed"


class ReadRateThrottle(_MinuteThrottle):
    setting = "TFT_RATE_LIMIT_READ_PER_MINUTE"
    scope = "read"
