"""The live poller of `pull_prometheus`: survives database and network errors, and reads again what
it missed.

Each tick reads every poll instant (a multiple of the interval) from the one after the last instant
it stored up to now: one instant query when nothing was missed, else range queries from there
(step = the interval, so the timestamps are the ones the live polls would have given; Prometheus
still holds those samples). A database or Prometheus error is logged and the tick reports failure;
the last stored instant does not move, so the next tick after the outage backfills the gap. The gap
is bounded by TFT_PULL_MAX_BACKFILL_SECONDS (Prometheus' retention may be shorter still, and the
ingest contract refuses records older than TFT_RETENTION_DAYS); instants older than that are logged
as lost. Between failing ticks the command backs off (doubling, up to TFT_PULL_MAX_BACKOFF_SECONDS).

The last stored instant lives in memory: a restarted poller reads from now on (run it with
--backfill to cover the time it was down; the ingest is idempotent, so overlaps are only duplicates).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.db import Error as DjangoDatabaseError
from django.db import connections

from ingest.prometheus_pull import PrometheusError, PullConfig, PullResult, prometheus_poll, prometheus_range

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class PullPoller:
    config: PullConfig
    interval: int  # seconds between poll instants
    last_stored: int | None = None  # epoch seconds of the newest instant stored
    failures: int = 0  # consecutive failed ticks
    last_error: str = ""

    def tick(self, *, now: float) -> PullResult | None:
        """Read and store every instant not yet stored up to `now`; None when this tick failed."""
        at = int(now) // self.interval * self.interval
        if self.last_stored is not None and at <= self.last_stored:
            return PullResult()
        # As Django does before each request: drop a connection that broke or aged out since the
        # last tick (CONN_HEALTH_CHECKS), so a restarted database costs no failed tick.
        _recycle_connections()
        try:
            result = self._read(at)
        except (PrometheusError, DjangoDatabaseError) as exc:
            self._failed(exc)
            return None
        self.failures, self.last_error = 0, ""
        self.last_stored = at
        return result

    def backoff_seconds(self) -> float:
        """How long to wait after a failed tick: the interval, doubling with each failure, capped."""
        cap = max(self.interval, settings.TFT_PULL_MAX_BACKOFF_SECONDS)
        return min(self.interval * 2 ** max(0, self.failures - 1), cap)

    def _read(self, at: int) -> PullResult:
        first = at if self.last_stored is None else self.last_stored + self.interval
        if first >= at:
            return prometheus_poll(config=self.config, at=datetime.fromtimestamp(at, tz=UTC))
        oldest = at - settings.TFT_PULL_MAX_BACKFILL_SECONDS // self.interval * self.interval
        if first < oldest:
            logger.warning(
                "prometheus pull gap longer than the backfill limit; older instants are not read",
                extra={
                    "lost_from": _iso(first),
                    "lost_until": _iso(oldest - self.interval),
                    "max_backfill_seconds": settings.TFT_PULL_MAX_BACKFILL_SECONDS,
                },
            )
            first = oldest
        logger.info("prometheus pull backfilling missed instants", extra={"from": _iso(first), "until": _iso(at)})
        return prometheus_range(config=self.config, start=first, end=at, step_s=self.interval, stored=self._stored)

    def _stored(self, chunk_end: int) -> None:
        # A long gap is read in chunks: one that is stored is not read again if a later one fails.
        self.last_stored = chunk_end

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]
        if isinstance(exc, DjangoDatabaseError):
            # A broken connection is dropped here, so the next tick opens a new one.
            _recycle_connections()
        logger.warning(
            "prometheus pull failed; the missed instants are read again after it recovers",
            extra={
                "error": self.last_error,
                "failures": self.failures,
                "last_stored": _iso(self.last_stored) if self.last_stored is not None else None,
            },
        )


def _recycle_connections() -> None:
    """django.db.close_old_connections, but never inside a transaction someone else holds (a
    caller's atomic block: closing its connection would end its transaction)."""
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat()
