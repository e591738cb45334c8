"""Alert lifecycle: every state change of an alert, and the notification it records.

States: an alert opens `active` (after K consecutive runs predict it, see "Run-driven"); an
operator may acknowledge it; it is `resolved` after M runs no longer predict it, when a maintenance
window covers it ("silenced"), or when an operator resolves it. Resolved is final: a problem
predicted again later opens a new alert (the partial unique constraint allows one open alert per
server and metric). Every change is also an AlertTransition row (the dashboard's timeline).

One path for every transition, whoever causes it:
- `alerts_open` creates the run's new alerts (the unique constraint is their compare-and-swap);
- `alerts_transition` moves existing alerts with a compare-and-swap on their current state
  (`_move`, set-based: a run resolving hundreds of alerts moves them in one UPDATE), and
  `alert_transition` is its one-alert form for operators (admin actions, the dashboard);
both record the transition's AlertNotification through `_notify` in the same transaction, pushed on
commit by forecasting.tasks. A transition that finds the alert already moved changes nothing
and records nothing, so running it twice notifies once (and AlertNotification is unique per alert
and transition, or per severity change, besides).

What is pushed: opening ("firing"), a change of an open alert's severity ("severity_changed", once
per change: see "Run-driven") and resolving ("resolved", with endsAt). Acknowledging is recorded
on the alert but not pushed: Alertmanager has no acknowledged state (its answer is a silence, set
there), and an acknowledged alert is still a predicted problem, so it must keep firing downstream
until it resolves. Changes of an open alert's predicted value or lead time are not pushed either:
the firing alert's identity (labels, startsAt) is unchanged and Alertmanager would only dedupe it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction

from forecasting.alerts import push as alert_push
from forecasting.alerts.selectors import alert_hysteresis, incident_hysteresis
from forecasting.engine.alert_rules import (
    CHANGED,
    INCIDENT_METRIC,
    OPENED,
    RESOLVED,
    SEVERITY_CODE,
    TREND_RULE,
    Hysteresis,
    Streak,
    first_trend,
    hysteresis_step,
)
from forecasting.models import Alert, AlertNotification, AlertStreak, AlertTransition, PredictionRun
from forecasting.windows import silenced_keys

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


def _notify(*, alerts: list[Alert], transition: str | None, now: datetime, caused_by: dict | None = None) -> int:
    """The one place a transition's notification is recorded (inside the transition's transaction);
    `transition` None: not pushed."""
    if transition is None or not alerts:
        return 0
    return alert_push.alert_notifications_record(alerts=alerts, transition=transition, now=now, caused_by=caused_by)


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


_KIND = {
    Alert.State.ACKNOWLEDGED: AlertTransition.Kind.ACKNOWLEDGED,
    Alert.State.RESOLVED: AlertTransition.Kind.RESOLVED,
}


def _move(
    *, alerts: list[Alert], to: str, by, now: datetime, run: PredictionRun | None, kind: str | None = None
) -> list[Alert]:
    """The transition itself, for alerts the caller holds locked (select_for_update in this
    transaction): compare-and-swap on their state, then their notifications."""
    if not alerts:
        return []
    changes = _changes(to=to, by=by, now=now, run=run)
    moved = Alert.objects.filter(pk__in=[a.pk for a in alerts], state__in=_ALLOWED_FROM[to]).update(**changes)
    if moved != len(alerts):
        # Only where the lock is not enforced (SQLite has no SELECT … FOR UPDATE): another caller
        # moved some first. Notify only the rows this UPDATE stamped, so none is notified twice.
        stamped = set(
            Alert.objects.filter(pk__in=[a.pk for a in alerts], state=to, updated_at=now).values_list("pk", flat=True)
        )
        alerts = [a for a in alerts if a.pk in stamped]
    for alert in alerts:
        for field, value in changes.items():
            setattr(alert, field, value)
    _notify(alerts=alerts, transition=_PUSHED.get(to), now=now)
    transitions: list[AlertTransition] = []
    for alert in alerts:
        _record(alert=alert, kind=kind or _KIND[to], now=now, run=run, transitions=transitions)
    AlertTransition.objects.bulk_create(transitions)
    logger.info(
        "alerts transitioned",
        extra={
            "to": to,
            "alerts": len(alerts),
            "run_id": getattr(run, "pk", None),
            "user": by.get_username() if by is not None else None,
        },
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


def alerts_open(*, alerts: list[Alert], now: datetime, run: PredictionRun | None = None) -> list[Alert]:
    """Create new (unsaved) alerts and record their "firing" notifications and "opened" transitions.
    Inside the caller's transaction: a second open alert for the same key violates the unique constraint."""
    if alerts:
        Alert.objects.bulk_create(alerts)
        _notify(alerts=alerts, transition=_PUSHED[Alert.State.ACTIVE], now=now)
        transitions: list[AlertTransition] = []
        for alert in alerts:
            _record(alert=alert, kind=AlertTransition.Kind.OPENED, now=now, run=run, transitions=transitions)
        AlertTransition.objects.bulk_create(transitions)
    return alerts


# --- Run-driven ---------------------------------------------------------------------------------
#
# One alert per server × metric, stepped through the engine's hysteresis (engine.alert_rules
# .hysteresis_step, the rule the backtest replays): it opens after K consecutive runs predict it,
# resolves after M runs that do not, and a change of severity while open is a transition of the same
# alert: a compare-and-swap on its previous severity, then one "severity_changed" AlertTransition and
# its notification (pushed once: the old severity's labels resolve, the new one's fire). A step that
# is repeated (a retried run, the same forecast origin again) finds the severity already changed or
# does not step, so it records and pushes nothing. The K counters of alerts not open yet live in
# AlertStreak, the M counters on the alert (misses).
# Inside a maintenance window (forecasting.windows.silenced_keys) nothing opens, and an alert still
# open is resolved as "silenced" (pushed once, as resolved: it is never pushed firing again).


def _predicted(forecasts: list[tuple], silenced: set[tuple[int, str | None]]) -> dict[tuple[int, str], dict]:
    """(server_id, metric) → the candidate of the highest severity this run predicts. The server's
    trend alert is one candidate per trending metric: those whose metric is in a maintenance window
    are left out (a silenced metric's ramp is expected), and the rest become one, naming the metric
    that reaches its limit first (engine.alert_rules.first_trend)."""
    out: dict[tuple[int, str], dict] = {}
    for server_id, candidates, *_ in forecasts:
        trends = [c for c in candidates if c["rule"] == TREND_RULE and not _is_silenced((server_id, c["trending"]), silenced)]
        for c in [c for c in candidates if c["rule"] != TREND_RULE] + first_trend(trends):
            key = (server_id, c["metric"])
            if key not in out or SEVERITY_CODE[c["severity"]] > SEVERITY_CODE[out[key]["severity"]]:
                out[key] = c
    return out


def _is_silenced(key: tuple[int, str], silenced: set[tuple[int, str | None]]) -> bool:
    return (key[0], None) in silenced or key in silenced


def _record(*, alert: Alert, kind: str, now: datetime, run: PredictionRun | None, transitions: list) -> None:
    transitions.append(
        AlertTransition(alert=alert, kind=kind, at=now, severity=alert.severity, run=run, message=alert.message)
    )


def _flaps(*, keys: list[tuple[int, str]], now: datetime) -> set[tuple[int, str]]:
    """The keys whose previous alert resolved within TFT_ALERT_FLAP_WINDOW_MINUTES: opening again is a flap."""
    if not keys:
        return set()
    since = now - timedelta(minutes=settings.TFT_ALERT_FLAP_WINDOW_MINUTES)
    rows = Alert.objects.filter(
        state=Alert.State.RESOLVED, resolved_at__gte=since, server_id__in={k[0] for k in keys}
    ).values_list("server_id", "metric")
    return set(rows) & set(keys)


@dataclass
class _RunChanges:
    new: list[Alert] = dc_field(default_factory=list)
    refreshed: list[tuple[Alert, dict]] = dc_field(default_factory=list)
    missed: list[Alert] = dc_field(default_factory=list)
    resolved: list[Alert] = dc_field(default_factory=list)
    silenced: list[Alert] = dc_field(default_factory=list)
    changed: list[tuple[Alert, str, dict]] = dc_field(default_factory=list)  # (alert, severity before, candidate)
    streaks: dict[tuple[int, str], tuple] = dc_field(default_factory=dict)  # key → (hits, origin); 0 hits: delete


def _new_alert(key: tuple[int, str], c: dict, *, run: PredictionRun, now: datetime, origin: datetime | None) -> Alert:
    return Alert(
        server_id=key[0],
        stepped_origin=origin,
        opened_at=now,
        updated_at=now,
        first_run=run,
        last_run=run,
        opened_severity=c["severity"],
        **{f: c[f] for f in ("metric", "severity", *PREDICTION_FIELDS)},
    )


def _step_key(
    key,
    *,
    alert: Alert | None,
    hits: int,
    c: dict | None,
    rule: Hysteresis,
    out: _RunChanges,
    run,
    now,
    origin: datetime | None,
):
    """One server × metric through the hysteresis; what changes goes into `out`."""
    predicted = c["severity"] if c is not None else None
    streak = Streak(severity=alert.severity, misses=alert.misses) if alert is not None else Streak(hits=hits)
    streak, event = hysteresis_step(streak, predicted, rule)
    if alert is None:
        if event == OPENED:
            out.new.append(_new_alert(key, c, run=run, now=now, origin=origin))
        out.streaks[key] = (streak.hits, origin)
        return
    alert._dirty = alert.stepped_origin != origin
    alert.stepped_origin = origin
    if event == RESOLVED:
        out.resolved.append(alert)
    elif c is None:
        alert.misses = streak.misses
        out.missed.append(alert)
    else:
        alert._dirty = alert._dirty or alert.misses != 0 or event == CHANGED
        alert.misses = 0
        out.refreshed.append((alert, c))
        if event == CHANGED:
            out.changed.append((alert, alert.severity, c))
            alert.severity = streak.severity


def _save_streaks(*, streaks: dict[tuple[int, str], tuple], existing: dict, now: datetime) -> None:
    gone = [existing[k].pk for k, (hits, _) in streaks.items() if not hits and k in existing]
    AlertStreak.objects.filter(pk__in=gone).delete()
    rows = [
        AlertStreak(server_id=k[0], metric=k[1], hits=hits, stepped_origin=origin, updated_at=now)
        for k, (hits, origin) in streaks.items()
        if hits
    ]
    AlertStreak.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["server", "metric"],
        update_fields=["hits", "stepped_origin", "updated_at"],
    )


def _severities_change(*, changed: list[tuple[Alert, str, dict]], run: PredictionRun, now: datetime) -> None:
    """Open alerts whose severity the hysteresis changed (each holding its new severity): moved by a
    compare-and-swap on the severity they had, then, for those this UPDATE moved, a "severity_changed"
    transition and its notification. The rows are locked by alerts_apply_run; the swap is what keeps a
    second caller from recording the change again where locks are not enforced (SQLite)."""
    groups: dict[tuple[str, str], list[tuple[Alert, dict]]] = {}
    for alert, before, c in changed:
        groups.setdefault((before, alert.severity), []).append((alert, c))
    moved: list[Alert] = []
    for (before, after), items in groups.items():
        ids = [a.pk for a, _ in items]
        n = Alert.objects.filter(pk__in=ids, state__in=OPEN_STATES, severity=before).update(
            severity=after, updated_at=now, last_run=run
        )
        if n != len(ids):
            stamped = set(Alert.objects.filter(pk__in=ids, severity=after, updated_at=now).values_list("pk", flat=True))
            items = [(a, c) for a, c in items if a.pk in stamped]
        for alert, c in items:
            for f in PREDICTION_FIELDS:  # the transition carries the forecast that changed it
                setattr(alert, f, c[f])
            moved.append(alert)
    transitions: list[AlertTransition] = []
    for alert in moved:
        _record(alert=alert, kind=AlertTransition.Kind.SEVERITY_CHANGED, now=now, run=run, transitions=transitions)
    AlertTransition.objects.bulk_create(transitions)
    _notify(
        alerts=moved,
        transition=AlertNotification.Transition.SEVERITY_CHANGED,
        now=now,
        caused_by={t.alert_id: t.pk for t in transitions},
    )


def _refresh_open(*, alerts_and_candidates: list[tuple[Alert, dict]], run: PredictionRun, now: datetime) -> None:
    """Stamp open alerts predicted again with this run; rewrite those whose prediction, severity or
    miss count changed."""
    changed, unchanged = [], []
    for alert, c in alerts_and_candidates:
        if getattr(alert, "_dirty", False) or any(getattr(alert, f) != c[f] for f in PREDICTION_FIELDS):
            for f in PREDICTION_FIELDS:
                setattr(alert, f, c[f])
            alert.updated_at, alert.last_run = now, run
            changed.append(alert)
        else:
            unchanged.append(alert.pk)
    if changed:
        fields = [*PREDICTION_FIELDS, "severity", "misses", "stepped_origin", "updated_at", "last_run"]
        Alert.objects.bulk_update(changed, fields, batch_size=500)
    if unchanged:
        # Most open alerts are predicted again unchanged: one UPDATE stamps them all, instead of
        # a CASE expression per row in bulk_update.
        Alert.objects.filter(pk__in=unchanged).update(updated_at=now, last_run=run)


def alerts_apply_run(
    *,
    run: PredictionRun,
    forecasts: list[tuple],
    now: datetime,
    held_server_ids: set[int] | frozenset[int] = frozenset(),
) -> None:
    """A run's alert lifecycle from its forecasts' (server_id, alert_candidates, …), through the
    hysteresis (see above). The open alerts and streaks of `held_server_ids` (servers whose forecast
    is stale) are left exactly as they are. Runs inside the run's finalising transaction."""
    rule, incident_rule = alert_hysteresis(), incident_hysteresis()
    silenced = silenced_keys(now=now)
    predicted = _predicted(forecasts, silenced)
    # (server_id, candidates, p30, p8h[, origin]): with the origin, the hysteresis counts forecasts
    # (one step per new forecast origin), not runs, as the backtest's replay counts origins.
    origins = {f[0]: f[4] for f in forecasts if len(f) > 4}
    open_alerts = {
        (a.server_id, a.metric): a
        for a in Alert.objects.select_for_update().filter(state__in=OPEN_STATES).exclude(server_id__in=held_server_ids)
    }
    streaks = {
        (s.server_id, s.metric): s
        for s in AlertStreak.objects.select_for_update().exclude(server_id__in=held_server_ids)
    }
    out = _RunChanges()
    for key in sorted(set(predicted) | set(open_alerts) | set(streaks)):
        alert = open_alerts.get(key)
        if _is_silenced(key, silenced):
            if alert is not None:
                out.silenced.append(alert)
            out.streaks[key] = (0, None)
            continue
        origin = origins.get(key[0])
        streak = streaks.get(key)
        if origin is not None and origin == (
            alert.stepped_origin if alert is not None else getattr(streak, "stepped_origin", None)
        ):
            # The same forecast origin as the run that last stepped this key (runs come every minute,
            # buckets every 5): no new evidence, so no hysteresis step; an open alert is refreshed.
            if alert is not None and key in predicted:
                out.refreshed.append((alert, predicted[key]))
            continue
        _step_key(
            key,
            alert=alert,
            hits=streak.hits if streak else 0,
            c=predicted.get(key),
            rule=incident_rule if key[1] == INCIDENT_METRIC else rule,
            out=out,
            run=run,
            now=now,
            origin=origin,
        )
    _apply_changes(out=out, streaks=streaks, run=run, now=now)


def _apply_changes(*, out: _RunChanges, streaks: dict, run: PredictionRun, now: datetime) -> None:
    flaps = _flaps(keys=[(a.server_id, a.metric) for a in out.new], now=now)
    for alert in out.new:
        alert.flap = (alert.server_id, alert.metric) in flaps
    alerts_open(alerts=out.new, now=now, run=run)
    _severities_change(changed=out.changed, run=run, now=now)
    _refresh_open(alerts_and_candidates=out.refreshed, run=run, now=now)
    if out.missed:
        for alert in out.missed:
            alert.updated_at, alert.last_run = now, run
        Alert.objects.bulk_update(out.missed, ["misses", "stepped_origin", "updated_at", "last_run"], batch_size=500)
    # The open alerts were locked above, so they move without being read again.
    _move(alerts=out.resolved, to=Alert.State.RESOLVED, by=None, now=now, run=run)
    _move(alerts=out.silenced, to=Alert.State.RESOLVED, by=None, now=now, run=run, kind=AlertTransition.Kind.SILENCED)
    _save_streaks(streaks=out.streaks, existing=streaks, now=now)
