"""Reads of alerts: the thresholds in force, the open alerts in the contract's shape, and where a
notification's push stands."""

from __future__ import annotations

from django.conf import settings
from django.db.models import Count

from forecasting.engine.alert_rules import Hysteresis, Trend
from forecasting.engine.spec import DEFAULT_THRESHOLDS, STEP_MINUTES
from forecasting.models import Alert, AlertNotification, AlertThreshold


def alert_thresholds() -> dict[str, dict]:
    rules = {metric: dict(rule) for metric, rule in DEFAULT_THRESHOLDS.items()}
    for row in AlertThreshold.objects.all():
        rules[row.metric] = {
            "warning": row.warning,
            "critical": row.critical,
            "relative": row.relative,
            "floor": row.floor,
        }
    return rules


def alert_hysteresis() -> Hysteresis:
    """The served hysteresis (settings TFT_ALERT_OPEN_AFTER_* / TFT_ALERT_RESOLVE_AFTER_*)."""
    return Hysteresis(
        {"warning": settings.TFT_ALERT_OPEN_AFTER_WARNING, "critical": settings.TFT_ALERT_OPEN_AFTER_CRITICAL},
        {"warning": settings.TFT_ALERT_RESOLVE_AFTER_WARNING, "critical": settings.TFT_ALERT_RESOLVE_AFTER_CRITICAL},
    )


def incident_hysteresis() -> Hysteresis:
    """The incident_prob alert's hysteresis (TFT_ALERT_INCIDENT_OPEN_AFTER / _RESOLVE_AFTER, both severities)."""
    k, m = settings.TFT_ALERT_INCIDENT_OPEN_AFTER, settings.TFT_ALERT_INCIDENT_RESOLVE_AFTER
    return Hysteresis({"warning": k, "critical": k}, {"warning": m, "critical": m})


def alert_trend() -> Trend | None:
    """The served trend rule (TFT_ALERT_TREND and its _FIT / _REACH / _HOLD_MINUTES, in 5-minute
    buckets, rounded up, _NEAR and _EXPECTED_STATES); None when it is off."""
    if not settings.TFT_ALERT_TREND:
        return None
    fit, reach, hold = (-(-minutes // STEP_MINUTES) for minutes in (
        settings.TFT_ALERT_TREND_FIT_MINUTES, settings.TFT_ALERT_TREND_REACH_MINUTES,
        settings.TFT_ALERT_TREND_HOLD_MINUTES))  # fmt: skip
    return Trend(fit, reach, hold, settings.TFT_ALERT_TREND_NEAR, settings.TFT_ALERT_TREND_EXPECTED_STATES)


def early_warning_steps() -> int:
    """How many forecast steps ahead the p90 early warning looks (TFT_ALERT_EARLY_WARNING_MINUTES; 0: none)."""
    return -(-settings.TFT_ALERT_EARLY_WARNING_MINUTES // STEP_MINUTES)


def open_alerts(*, server_name: str | None = None, server_names: list[str] | None = None):
    query = Alert.objects.filter(state__in=[Alert.State.ACTIVE, Alert.State.ACKNOWLEDGED]).select_related("server")
    if server_name:
        query = query.filter(server__name=server_name)
    if server_names is not None:
        query = query.filter(server__name__in=server_names)
    return query.order_by("-severity", "minutes_ahead")


def alerts_open_counts() -> dict[str, int]:
    """Open (active or acknowledged) alerts per severity: the floor of the fleet's health."""
    rows = (Alert.objects.filter(state__in=[Alert.State.ACTIVE, Alert.State.ACKNOWLEDGED])
            .values_list("severity").annotate(n=Count("id")))  # fmt: skip
    return {severity: n for severity, n in rows}


_CONTRACT_ALERT_FIELDS = (
    "pk",
    "server__name",
    "metric",
    "severity",
    "state",
    "rule",
    "predicted_value",
    "threshold",
    "steps_ahead",
    "minutes_ahead",
    "message",
    "opened_at",
    "updated_at",
    "acknowledged_at",
)


def open_alerts_contract(*, server_name: str | None = None, server_names: list[str] | None = None) -> list[dict]:
    """Open alerts in the contract's alert shape (plus id, state and times), most severe first.

    Read as plain rows: a thousand alerts as model instances would cost more than the response.
    """
    rows = open_alerts(server_name=server_name, server_names=server_names).values_list(*_CONTRACT_ALERT_FIELDS)
    out = []
    for (
        pk,
        server,
        metric,
        severity,
        state,
        rule,
        value,
        threshold,
        steps,
        minutes,
        message,
        opened,
        updated,
        acked,
    ) in rows:
        out.append(
            {
                "id": pk,
                "server": server,
                "metric": metric,
                "severity": severity,
                "state": state,
                "rule": rule,
                "predicted_value": value,
                "threshold": threshold,
                "steps_ahead": steps,
                "minutes_ahead": minutes,
                "message": message,
                "opened_at": opened.isoformat(),
                "updated_at": updated.isoformat(),
                "acknowledged_at": acked.isoformat() if acked else None,
            }
        )
    return out


def gave_up(*, attempts: int) -> bool:
    """A notification's push is no longer retried at all (the sweeper's limit); last_error says why."""
    return attempts >= settings.TFT_ALERT_PUSH_MAX_ATTEMPTS * 3


def alert_notification_status(*, notification: AlertNotification) -> str:
    """Where a notification's push stands, for the admin: delivered, superseded (a later notification
    of its alert reached the targets first, so it was never sent: forecasting.alerts.push, "Order"),
    given up (out of attempts), failing (retried; last_error says why) or pending."""
    if notification.delivered_at is not None:
        return "delivered"
    if notification.superseded_at is not None:
        return "superseded"
    if gave_up(attempts=notification.attempts):
        return "given up"
    return "failing" if notification.last_error else "pending"
