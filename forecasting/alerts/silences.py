"""Maintenance windows (silences): created and ended by operators through the API or the admin.

While a window is on, forecasting.alerts.services opens no alert for the servers it covers and
resolves ("silenced") those open; live scoring, calibration, probability outcomes and training data
leave its buckets out (forecasting.windows.silenced_spans / server_histories), as they do the
buckets where a server reported state `maintenance`. Reads are in forecasting.windows.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction

from forecasting.models import MaintenanceWindow

logger = logging.getLogger(__name__)


def maintenance_window_create(
    *,
    servers: str,
    metric: str = "",
    starts_at: datetime,
    ends_at: datetime,
    reason: str,
    created_by: str,
    now: datetime,
) -> MaintenanceWindow:
    """A new window (the caller validated it: servers non-empty, ends_at after starts_at and now)."""
    window = MaintenanceWindow.objects.create(
        servers=servers,
        metric=metric,
        starts_at=starts_at,
        ends_at=ends_at,
        reason=reason,
        created_by=created_by,
        created_at=now,
    )
    logger.info(
        "maintenance window created",
        extra={"window_id": window.pk, "servers": servers, "metric": metric, "by": created_by},
    )
    return window


def maintenance_window_end(*, window_id: int, now: datetime) -> MaintenanceWindow | None:
    """End a window now (an upcoming one is thus cancelled). None when there is no such window;
    a window already over is returned unchanged (ending it twice changes nothing)."""
    with transaction.atomic():
        window = MaintenanceWindow.objects.select_for_update().filter(pk=window_id).first()
        if window is None:
            return None
        if window.ended_at is None and window.ends_at > now:
            window.ended_at = now
            window.save(update_fields=["ended_at"])
            logger.info("maintenance window ended", extra={"window_id": window.pk})
    return window
