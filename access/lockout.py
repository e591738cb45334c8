"""Lockout after repeated failures: wrong API keys (per client address and per key prefix) and wrong
passwords on the login forms (per client address). Settings: TFT_API_KEY_MAX_FAILURES and
TFT_LOGIN_MAX_FAILURES failures within TFT_LOCKOUT_WINDOW_SECONDS lock that address (or prefix)
out for TFT_LOCKOUT_SECONDS; 0 failures turns a limit off.

Counters live in the "ratelimit" cache (Redis when configured, so every worker shares them). Like
the rate limits, the lockout fails open when the cache is down: a broken counter must not stop
the feed or lock every operator out.

Named keys (from the admin) are 256-bit random and cannot be guessed, so a request with a valid
named key is never locked out: a feeder with a revoked key on the same host as live feeders, or an
attacker behind the same NAT, does not stop the others. TFT_API_KEY is chosen by an operator and
may be weak, so it is refused like a wrong key while its address is locked out.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.core.cache import caches
from rest_framework.exceptions import Throttled
from rest_framework.throttling import BaseThrottle

logger = logging.getLogger(__name__)
ENV_KEY_NAME = "env:TFT_API_KEY"
KEY_PREFIX_CHARS = 10  # as ApiKey.prefix: enough to tell keys apart, far too little to use one


class ApiKeyLockedOut(Throttled):
    default_code = "too_many_failed_keys"

    def __init__(self, wait: float):
        super().__init__(
            wait=wait,
            detail=f"too many requests with a wrong X-API-Key from this address or key prefix; "
            f"locked out for {int(wait) + 1} more seconds",
        )


def client_address(request) -> str:
    """The client address as the rate limits see it (X-Forwarded-For only through TFT_NUM_PROXIES)."""
    return BaseThrottle().get_ident(request)


def lockout_wait(*, scope: str, idents: list[str]) -> float:
    """Seconds left of the longest lockout on any of `idents` (0 when none is locked out)."""
    try:
        until = caches["ratelimit"].get_many([f"lo:{scope}:{ident}:until" for ident in idents])
    except Exception:  # fails open: see the module docstring
        logger.warning("lockout cache unavailable; not locking out", exc_info=True)
        return 0.0
    return max([float(u) - time.time() for u in until.values()] + [0.0])


def failure_record(*, scope: str, idents: list[str], limit: int) -> float:
    """Count one failure against each ident; the lockout's length when this failure started one."""
    if not limit:
        return 0.0
    cache = caches["ratelimit"]
    window, lock = settings.TFT_LOCKOUT_WINDOW_SECONDS, settings.TFT_LOCKOUT_SECONDS
    started = 0.0
    for ident in idents:
        key = f"lo:{scope}:{ident}"
        try:
            cache.add(key, 0, timeout=window)  # the window starts at the first failure
            if cache.incr(key) < limit:
                continue
            cache.set(f"{key}:until", time.time() + lock, timeout=lock)
            cache.delete(key)
        except Exception:
            logger.warning("lockout cache unavailable; failure not counted", exc_info=True)
            continue
        started = float(lock)
        # ident is an address or a wrong key's first characters, never a whole key
        logger.warning("lockout started", extra={"scope": scope, "ident": ident, "seconds": lock})
    return started


def failures_clear(*, scope: str, idents: list[str]) -> None:
    try:
        caches["ratelimit"].delete_many([f"lo:{scope}:{ident}" for ident in idents])
    except Exception:
        logger.warning("lockout cache unavailable", exc_info=True)


def api_key_lockout_check(request, *, presented: str, identity) -> None:
    """Called by access.keys once the presented key is identified (None: no such key). Raises
    ApiKeyLockedOut (429, Retry-After) while the address or the key's prefix is locked out, and
    counts a wrong key; a valid named key always passes (module docstring)."""
    if not settings.TFT_API_KEY_MAX_FAILURES or (identity is not None and identity.name != ENV_KEY_NAME):
        return
    idents = [client_address(request), f"prefix:{presented[:KEY_PREFIX_CHARS]}"]
    wait = lockout_wait(scope="key", idents=idents)
    if not wait and identity is None:
        wait = failure_record(scope="key", idents=idents, limit=settings.TFT_API_KEY_MAX_FAILURES)
    if wait:
        raise ApiKeyLockedOut(wait)
