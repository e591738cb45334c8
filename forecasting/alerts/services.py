"""Alert lifecycle: every state change of an alert, and the notification it records.

States: an alert opens `active`; an operator may acknowledge it; it is `resolved` when a run no
longer predicts it or an operator resolves it. Resolved is final: a problem predicted again later
opens a new alert (the partial unique constraint allows one open alert per server, metric and
severity).

One path for every transition, whoever causes it:
- `alerts_open` creates the run's new alerts (the unique constraint is their compare-and-swap);
- `alerts_transition` moves existing alerts with a compare-and-swap on their current state
  (`_move`, set-based: a run resolving hundreds of alerts moves them in one UPDATE), and
  `alert_transition` is its one-alert form for operators (admin actions, the dashboard);
both record the transition's AlertNotification through `_notify` in the same transaction, pushed on
commit by forecasting.tasks. A transition that finds the alert already moved changes nothing
and records nothing, so running it twice notifies once (and AlertNotification is unique per alert
and transition besides).

What is pushed: opening ("firing") and resolving ("resolved", with endsAt). Acknowledging is recorded
on the alert but not pushed: Alertmanager has no acknowledged state (its answer is a silence, set
there), and an acknowledged alert is still a predicted problem, so it must keep firing downstream
until it resolves. Changes of an open alert's predicted value or lead time are not pushed either:
the firing alert's identity (labels, startsAt) is unchanged and Alertmanager would only dedupe it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from django.db import transaction

from forecasting.alerts import push as alert_push
from forecasting.models import Alert, AlertNotification, PredictionRun

logger = logging.getLogger(__name__)

OPEN_STATES = (Alert.State.ACTIVE, Alert.State.ACKNOWLEDGED)
# The states each target state may be entered from (the compare-and-swap's expected values).
_ALLOWED_FROM = {
    Alert.State.ACKNOWLEDGED: (Alert.State.ACTIVE,),
    Alert.State.RESOLVED: OPEN_STATES,
}
# Transitions pushed to Alertmanager / webhooks; see the module docstring for acknowledged.
_PUSHED = {
    Alert.State.ACTIVE: AlertNotification.Transition.FIRING,
    Alert.State.RESOLVED: AlertNotification.Transition.RESOLVED,
}
# Fields a run refreshes on an open alert that is predicted again.
PREDICTION_FIELDS = ("rule", "predicted_value", "threshold", "steps_ahead", "minutes_ahead", "message")


def _now() -> datetime:
    return datetime.now(UTC)


def _notify(*, alerts: list[Alert], to: str, now: datetime) -> int:
    """The one place a transition's notification is recorded (inside the transition's transaction)."""
    transition = _PUSHED.get(to)
    if transition is None or not alerts:
        return 0
    return alert_push.alert_notifications_record(alerts=alerts, transition=transition, now=now)


def _changes(*, to: str, by, now: datetime, run: PredictionRun | None) -> dict:
    changes = {"state": to, "updated_at": now}
    if to == Alert.State.ACKNOWLEDGED:
        changes.update(acknowledged_at=now, acknowledged_by=by)
    elif to == Alert.State.RESOLVED:
        changes["resolved_at"] = now
    if run is not None:
        changes["last_run"] = run
    return changes


def alerts_transition(
    *, alert_ids: list[int], to: str, by=None, now: datetime | None = None, run: PredictionRun | None = None
) -> list[Alert]:
    """Move the given alerts to `to` (acknowledged or resolved) where their current state allows it,
    and record each moved alert's notification. Returns the alerts that moved (the others were
    already there, or resolved). `by` is the operator's user, `run` the run that caused it."""
    if to not in _ALLOWED_FROM:
        raise ValueError(f"alerts cannot be moved to {to!r}; they open through alerts_open")
    with transaction.atomic():
        # Lock the rows still in an allowed state: the UPDATE in _move then moves exactly these, so
        # the notifications are for the alerts this call moved and no other caller's.
        alerts = list(Alert.objects.select_for_update().filter(pk__in=alert_ids, state__in=_ALLOWED_FROM[to]))
        return _move(alerts=alerts, to=to, by=by, now=now or _now(), run=run)


def _move(*, alerts: list[Alert], to: str, by, now: datetime, run: PredictionRun | None) -> list[Alert]:
    """The transition itself, for alerts the caller holds locked (select_for_update in this
    transaction): compare-and-swap on their state, then their notifications."""
    if not alerts:
        return []
    changes = _changes(to=to, by=by, now=now, run=run)
    moved = Alert.objects.filter(pk__in=[a.pk for a in alerts], state__in=_ALLOWED_FROM[to]).update(**changes)
    if moved != len(alerts):
        # Only where the lock is not enforced (SQLite has no SELECT … FOR UPDATE): another caller
        # moved some first. Notify only the rows this UPDATE stamped, so none is notified twice.
        stamped = set(Alert.objects.filter(pk__in=[a.pk for a in alerts], state=to, updated_at=now)
                      .values_list("pk", flat=True))
        alerts = [a for a in alerts if a.pk in stamped]
    for alert in alerts:
        for field, value in changes.items():
            setattr(alert, field, value)
    _notify(alerts=alerts, to=to, now=now)
    logger.info(
        "alerts transitioned",
        extra={"to": to, "alerts": len(alerts), "run_id": getattr(run, "pk", None),
               "user": by.get_username() if by is not None else None},
    )
    return alerts


def alert_transition(*, alert_id: int, to: str, by=None, now: datetime | None = None) -> bool:
    """One alert to `to`; False when its state did not allow it (already moved: nothing recorded)."""
    return bool(alerts_transition(alert_ids=[alert_id], to=to, by=by, now=now))


def alert_acknowledge(*, alert_id: int, user=None) -> bool:
    """Active → acknowledged. False when the alert was not active."""
    return alert_transition(alert_id=alert_id, to=Alert.State.ACKNOWLEDGED, by=user)


def alert_resolve(*, alert_id: int, user=None) -> bool:
    """Active or acknowledged → resolved, pushed as resolved. False when it was already resolved."""
    return alert_transition(alert_id=alert_id, to=Alert.State.RESOLVED, by=user)


def alerts_open(*, alerts: list[Alert], now: datetime) -> list[Alert]:
    """Create new (unsaved) alerts and record their "firing" notifications. Inside the caller's
    transaction: a second open alert for the same key violates the unique constraint."""
    if alerts:
        Alert.objects.bulk_create(alerts)
        _notify(alerts=alerts, to=Alert.State.ACTIVE, now=now)
    return alerts


# --- Run-driven ---------------------------------------------------------------------------------


def _wanted(forecasts: list[tuple]) -> dict[tuple[int, str, str], dict]:
    wanted = {}
    for server_id, candidates, _, _ in forecasts:
        for c in candidates:
            wanted[(server_id, c["metric"], c["severity"])] = c
    return wanted


def _refresh_open(*, alerts_and_candidates: list[tuple[Alert, dict]], run: PredictionRun, now: datetime) -> None:
    """Stamp open alerts predicted again with this run; rewrite those whose prediction changed."""
    changed, unchanged = [], []
    for alert, c in alerts_and_candidates:
        if any(getattr(alert, f) != c[f] for f in PREDICTION_FIELDS):
            for f in PREDICTION_FIELDS:
                setattr(alert, f, c[f])
            alert.updated_at, alert.last_run = now, run
            changed.append(alert)
        else:
            unchanged.append(alert.pk)
    if changed:
        Alert.objects.bulk_update(changed, [*PREDICTION_FIELDS, "updated_at", "last_run"], batch_size=500)
    if unchanged:
        # Most open alerts are predicted again unchanged: one UPDATE stamps them all, instead of
        # a CASE expression per row in bulk_update.
        Alert.objects.filter(pk__in=unchanged).update(updated_at=now, last_run=run)


def alerts_apply_run(*, run: PredictionRun, forecasts: list[tuple], now: datetime,
                     held_server_ids: set[int] | frozenset[int] = frozenset()) -> None:
    """A run's alert lifecycle from its forecasts' (server_id, alert_candidates, …): open what is newly
    predicted, refresh what is predicted again, resolve what is no longer predicted. The open alerts of
    `held_server_ids` (servers whose forecast is stale) are left exactly as they are. Runs inside the
    run's finalising transaction."""
    wanted = _wanted(forecasts)
    open_alerts = {
        (a.server_id, a.metric, a.severity): a
        for a in Alert.objects.select_for_update().filter(state__in=OPEN_STATES).exclude(server_id__in=held_server_ids)
    }
    new = [
        Alert(server_id=key[0], opened_at=now, updated_at=now, first_run=run, last_run=run,
              **{f: c[f] for f in ("metric", "severity", *PREDICTION_FIELDS)})
        for key, c in wanted.items()
        if key not in open_alerts
    ]
    alerts_open(alerts=new, now=now)
    _refresh_open(
        alerts_and_candidates=[(a, wanted[key]) for key, a in open_alerts.items() if key in wanted], run=run, now=now
    )
    # The open alerts were locked above, so they move without being read again.
    gone = [a for key, a in open_alerts.items() if key not in wanted]
    _move(alerts=gone, to=Alert.State.RESOLVED, by=None, now=now, run=run)
