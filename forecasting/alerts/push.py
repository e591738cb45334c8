"""Alert push: each alert transition is sent to Alertmanager-compatible receivers exactly once.

Flow: every alert transition (forecasting.alerts.services: a run's, or an operator's in the admin
or the dashboard) calls `alert_notifications_record` inside its transaction. That writes one
AlertNotification per transition (unique per alert and transition, so a retried run cannot record
it twice) and, on commit, enqueues one Celery task per notification: neither the run nor the
request waits on a receiver. The task delivers with `alert_notification_deliver`, retrying with
backoff; the beat task `push_pending_alerts` re-enqueues whatever a lost task or exhausted retries
left undelivered.

Exactly once: a delivery first claims the notification with a compare-and-swap (delivered_at is NULL
and no live claim), so two workers never send it concurrently; each target that answered 2xx is
remembered so a retry after a partial fan-out does not resend to it; delivered_at is set by a
second compare-and-swap. (A receiver that stored a POST but timed out before answering gets it again
on retry: the payload's labels plus startsAt identify it, as Alertmanager itself dedupes.)

Order (per alert and target; Alertmanager's rule: the latest state wins, so a resolve must never be
followed by an older firing, which would fire again until its endsAt, 24 h on): the notifications of
one alert are sent in the order they were recorded (pk; the alert's row lock serialises its
transitions). A notification goes to a target only when every earlier one of its alert has reached
that target, been superseded, or spent its task's retries (failed more than
TFT_ALERT_PUSH_MAX_ATTEMPTS times: at most about 20 minutes of backoff with the defaults); until
then it waits ("held", no attempt counted) and the earlier one enqueues it when it settles. A
notification is never sent to a target that already accepted a later one of its alert: it is
superseded there, and once superseded on every target it still lacked it is settled (superseded_at,
superseded_by; shown in the admin) and never swept again. So an earlier failing message holds later ones while it is being retried, and if
it comes through only after a later one did (the sweeper's retries), it is not sent. One delivery per
alert at a time: the decision is taken under the alert's row lock (SELECT ... FOR UPDATE) and claims
the notification (a lease) that excludes every other delivery of the same alert while it posts.

Transitions: "firing" when an alert opens, "severity_changed" when an open alert's severity
changes, and "resolved" when it resolves (by a run or an operator, or "silenced" by a maintenance
window); acknowledging is not pushed (alerts.services says why). Severity is a label, and
Alertmanager identifies an alert by its labels (and routes by them: critical may page, warning not),
so a severity change is one message carrying two alerts: the old severity's labels resolved and the
new severity's firing. One AlertNotification per severity change (keyed by its AlertTransition row),
so it is pushed once however often the run is retried. A resolve, and the next severity change,
carry the labels and startsAt of the latest firing pushed, so Alertmanager matches them.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q

from forecasting.engine.alert_rules import INCIDENT_RULE
from forecasting.models import Alert, AlertNotification
from tftsite.env import http_url_problem, redact_url

logger = logging.getLogger(__name__)

ALERT_NAME = "TFTForecastThreshold"
# The incident-probability alert is a different kind (a server's risk, not a metric's crossing):
# its own alertname, so Alertmanager routes and inhibits it apart.
INCIDENT_ALERT_NAME = "TFTIncidentProbability"
# The delivery task's name (forecasting.tasks; queued messages carry it, so it outlived its module)
# and how long a queued delivery stays worth sending.
PUSH_TASK = "forecasting.push_tasks.push_alert_notification"
PUSH_EXPIRES_SECONDS = 6 * 3600
# Alertmanager's own "no end time" in the webhook payload.
_ZERO_TIME = "0001-01-01T00:00:00Z"


class AlertPushError(Exception):
    """A target refused or could not be reached; the task retries. The message names the target by
    scheme, host and port only (redact_url): webhook URLs carry tokens."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """urllib follows a 301/302/303 to a POST with a GET, whose 200 would count as delivered
    though no receiver got the alert. A push never follows a redirect: the 3xx is an error."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises HTTPError with the 3xx


_opener = urllib.request.build_opener(_NoRedirects)


def push_targets() -> list[str]:
    targets = list(settings.TFT_ALERT_WEBHOOK_URLS)
    if settings.TFT_ALERTMANAGER_URL:
        targets.append(f"{settings.TFT_ALERTMANAGER_URL}/api/v2/alerts")
    return targets


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _alertmanager_alert(*, alert: Alert, server_name: str, transition: str, now: datetime) -> dict:
    """The alert in Alertmanager's /api/v2/alerts shape (also the element of a webhook's alerts)."""
    labels = {
        "alertname": INCIDENT_ALERT_NAME if alert.rule == INCIDENT_RULE else ALERT_NAME,
        "server": server_name,
        "metric": alert.metric,
        # Its severity now: a severity change is pushed re-labelled (see the module docstring); a
        # resolve takes the labels of the latest firing pushed instead (_fired).
        "severity": alert.severity,
        "rule": alert.rule,
        "service": "tftsite",
    }
    annotations = {
        "summary": alert.message,
        "predicted_value": f"{alert.predicted_value:g}",
        "threshold": f"{alert.threshold:g}",
        "minutes_ahead": str(alert.minutes_ahead),
    }
    if transition == AlertNotification.Transition.RESOLVED:
        ends_at = _iso(alert.resolved_at or now)
    else:
        ends_at = _iso(now + timedelta(seconds=settings.TFT_ALERTMANAGER_FIRING_TTL_SECONDS))
    return {
        "labels": labels,
        "annotations": annotations,
        "startsAt": _iso(alert.opened_at),
        "endsAt": ends_at,
        "generatorURL": f"/alerts/active?server={server_name}",
    }


_FIRES = (AlertNotification.Transition.FIRING, AlertNotification.Transition.SEVERITY_CHANGED)


def _fired(*, alerts: list[Alert], transition: str) -> dict[int, dict]:
    """Alert id → the Alertmanager alert its latest firing push carried (the opening, or the latest
    severity change): a resolve or a severity change ends exactly that one, by its labels and startsAt
    (the rule and severity of an open alert may change since: Alertmanager identifies an alert by its
    labels)."""
    if transition == AlertNotification.Transition.FIRING:
        return {}
    rows = (
        AlertNotification.objects.filter(alert_id__in=[a.pk for a in alerts], transition__in=_FIRES)
        .order_by("created_at", "pk")
        .values_list("alert_id", "payload")
    )
    return {alert_id: payload for alert_id, payload in rows if payload.get("labels")}  # the latest wins


def _payload(*, alert: Alert, server_name: str, transition: str, now: datetime, fired: dict | None) -> dict:
    """What one notification stores: the Alertmanager alert at the transition; for a severity change,
    the new severity's alert (firing from now) with the previous one, resolved now, under "previous"."""
    firing_or_resolved = (
        AlertNotification.Transition.RESOLVED
        if transition == AlertNotification.Transition.RESOLVED
        else AlertNotification.Transition.FIRING
    )
    payload = _alertmanager_alert(alert=alert, server_name=server_name, transition=firing_or_resolved, now=now)
    if transition == AlertNotification.Transition.RESOLVED and fired:
        payload.update(labels=fired["labels"], startsAt=fired["startsAt"])
    elif transition == AlertNotification.Transition.SEVERITY_CHANGED:
        payload["startsAt"] = _iso(now)  # the new labels' alert starts firing now
        if fired:  # nothing to end when no firing was pushed (no target was configured then)
            previous = {key: value for key, value in fired.items() if key != "previous"}
            payload["previous"] = {**previous, "endsAt": _iso(now)}
    return payload


def alert_notifications_record(
    *, alerts: list[Alert], transition: str, now: datetime, caused_by: dict[int, int] | None = None
) -> int:
    """Record one transition's notifications and enqueue their pushes after commit. Called only by
    forecasting.alerts.services, inside the transition's transaction; a no-op (not even a query)
    when no push target is configured. For a severity change, `caused_by` maps each alert's id to the
    AlertTransition row it pushes (the notification's idempotency key)."""
    if not push_targets() or not alerts:
        return 0
    from ingest.models import Server

    names = dict(Server.objects.filter(pk__in={a.server_id for a in alerts}).values_list("pk", "name"))
    fired = _fired(alerts=alerts, transition=transition)
    rows = []
    for alert in alerts:
        if transition == AlertNotification.Transition.RESOLVED:
            alert.resolved_at = alert.resolved_at or now
        payload = _payload(
            alert=alert,
            server_name=names.get(alert.server_id, str(alert.server_id)),
            transition=transition,
            now=now,
            fired=fired.get(alert.pk),
        )
        rows.append(
            AlertNotification(
                alert_id=alert.pk,
                transition=transition,
                created_at=now,
                payload=payload,
                alert_transition_id=(caused_by or {}).get(alert.pk),
            )
        )
    # ignore_conflicts: unique per (alert, transition) or per severity change, so a retried run cannot
    # record it twice.
    AlertNotification.objects.bulk_create(rows, ignore_conflicts=True)
    ids = list(
        AlertNotification.objects.filter(
            alert_id__in=[r.alert_id for r in rows], transition=transition, created_at=now, delivered_at=None
        ).values_list("pk", flat=True)
    )
    # robust: a broker outage must not fail the committed transition; push_pending_alerts catches up.
    transaction.on_commit(lambda: _enqueue(ids), robust=True)
    return len(ids)


def _enqueue(notification_ids: list[int]) -> None:
    for pk in notification_ids:
        current_app.send_task(PUSH_TASK, kwargs={"notification_id": pk}, expires=PUSH_EXPIRES_SECONDS)


def carried_alerts(*, notification: AlertNotification) -> list[tuple[str, dict]]:
    """(status, Alertmanager alert) for each alert one notification carries: its own; for a severity
    change, first the previous severity's, resolved (so a receiver that applies them in order ends
    with the new severity firing)."""
    payload = dict(notification.payload)
    previous = payload.pop("previous", None)
    status = (
        AlertNotification.Transition.RESOLVED
        if notification.transition == AlertNotification.Transition.RESOLVED
        else AlertNotification.Transition.FIRING
    )
    own = [(status, payload)]
    return [(AlertNotification.Transition.RESOLVED, previous), *own] if previous else own


def _common(dicts: list[dict]) -> dict:
    return {k: v for k, v in dicts[0].items() if all(d.get(k) == v for d in dicts[1:])}


def webhook_body(*, notification: AlertNotification) -> dict:
    """Alertmanager's webhook JSON (version 4) carrying this one transition (firing when any alert it
    carries fires, as Alertmanager's group status). The fingerprint is per alert and severity: one
    per label set, as Alertmanager's own."""
    carried = carried_alerts(notification=notification)
    server = carried[0][1]["labels"]["server"]
    firing = AlertNotification.Transition.FIRING
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{ALERT_NAME}", server="{server}"}}',
        "truncatedAlerts": 0,
        "status": firing if any(st == firing for st, _ in carried) else AlertNotification.Transition.RESOLVED,
        "receiver": "tftsite",
        "groupLabels": {"alertname": ALERT_NAME, "server": server},
        "commonLabels": _common([a["labels"] for _, a in carried]),
        "commonAnnotations": _common([a["annotations"] for _, a in carried]),
        "externalURL": "",
        "alerts": [
            {
                "status": status,
                "labels": alert["labels"],
                "annotations": alert["annotations"],
                "startsAt": alert["startsAt"],
                "endsAt": alert["endsAt"] if status == AlertNotification.Transition.RESOLVED else _ZERO_TIME,
                "generatorURL": alert["generatorURL"],
                "fingerprint": f"tft-{notification.alert_id}-{alert['labels']['severity']}",
            }
            for status, alert in carried
        ],
    }


def _post(url: str, body: object) -> None:
    """Delivered only when the target itself answers 2xx; a redirect, an error status or a failed
    connection raises AlertPushError (urlopen raises HTTPError for every status outside 2xx)."""
    target = redact_url(url)
    problem = http_url_problem(url)
    if problem:  # settings check this at start-up; a URL set another way still fails clearly
        raise AlertPushError(f"{target}: {problem}")
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "tftsite-alert-push"},
    )
    try:
        with _opener.open(request, timeout=settings.TFT_ALERT_PUSH_TIMEOUT_SECONDS) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        note = " (a redirect: pushes never follow one, configure the final URL)" if 300 <= exc.code < 400 else ""
        raise AlertPushError(f"{target}: HTTP {exc.code}{note}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise AlertPushError(f"{target}: {_reason(exc)}") from None  # the cause may print the URL


def _reason(exc: Exception) -> str:
    """The error without the URL: urllib's messages can repeat the full URL (and its token)."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    return type(reason).__name__ if isinstance(reason, ValueError) else str(reason)[:200]


def _holds_later(*, attempts: int) -> bool:
    """An undelivered notification keeps later ones of its alert waiting (for the targets it has not
    reached) while its task still has retries: until it has failed more than TFT_ALERT_PUSH_MAX_ATTEMPTS
    times. After that the sweeper still retries it, and it is superseded wherever a later one arrived
    first."""
    return attempts <= settings.TFT_ALERT_PUSH_MAX_ATTEMPTS


@dataclass
class _Plan:
    """What one delivery of a notification may do now, per target it still lacks."""

    notification: AlertNotification
    send: list[str]  # every earlier notification of the alert is settled for these
    held: list[str]  # an earlier one is still being retried for these: wait for it
    stale: dict[str, int]  # a later one (its id) already reached these: never send this one there


def _plan(*, me: AlertNotification, siblings: list[AlertNotification], targets: list[str]) -> _Plan:
    def reached_by_later(n: AlertNotification, url: str) -> AlertNotification | None:
        later = [o for o in siblings if o.pk > n.pk and url in o.delivered_targets]
        return later[-1] if later else None

    plan = _Plan(notification=me, send=[], held=[], stale={})
    for url in targets:
        if url in me.delivered_targets:
            continue
        newer = reached_by_later(me, url)
        if newer is not None:
            plan.stale[url] = newer.pk
        elif any(
            o.pk < me.pk
            and o.delivered_at is None
            and o.superseded_at is None
            and url not in o.delivered_targets
            and _holds_later(attempts=o.attempts)
            and reached_by_later(o, url) is None
            for o in siblings
        ):
            plan.held.append(url)
        else:
            plan.send.append(url)
    return plan


def _claim(*, notification_id: int, targets: list[str], now: datetime, lease: timedelta) -> _Plan | None:
    """Decide, under the alert's row lock, what this delivery may send, and claim the notification for
    it (compare-and-swap). One delivery per alert at a time: the lock serialises the decisions, the
    claim (a lease) excludes a second sender while this one posts. None: nothing to do now (delivered,
    superseded, another worker is delivering this alert, or every target it lacks is held)."""
    alert_id = AlertNotification.objects.filter(pk=notification_id).values_list("alert_id", flat=True).first()
    if alert_id is None:
        return None
    with transaction.atomic():
        list(Alert.objects.select_for_update().filter(pk=alert_id).values_list("pk", flat=True))
        siblings = list(AlertNotification.objects.filter(alert_id=alert_id).order_by("pk"))
        me = next((n for n in siblings if n.pk == notification_id), None)
        if me is None or me.delivered_at is not None or me.superseded_at is not None:
            return None
        if any(n.claimed_until is not None and n.claimed_until >= now for n in siblings):
            return None  # this alert is being delivered: its worker wakes the next one when done
        plan = _plan(me=me, siblings=siblings, targets=targets)
        if plan.held and not plan.send:
            return None  # the earlier notification wakes this one when it settles
        if plan.stale and not plan.send:
            _supersede(plan=plan, now=now)
            _wake(notification=me)  # enqueued once this transaction commits
            return None
        claimed = AlertNotification.objects.filter(
            Q(claimed_until__isnull=True) | Q(claimed_until__lt=now), pk=me.pk, delivered_at=None, superseded_at=None
        ).update(claimed_until=now + lease, attempts=F("attempts") + (1 if plan.send else 0))
        if not claimed:
            return None
        me.attempts += 1 if plan.send else 0
        return plan


def _supersede(*, plan: _Plan, now: datetime) -> None:
    """Settle a notification that a later one overtook on every target it still lacked."""
    n = plan.notification
    AlertNotification.objects.filter(pk=n.pk, delivered_at=None, superseded_at=None).update(
        superseded_at=now, superseded_by_id=max(plan.stale.values()), claimed_until=None
    )
    logger.info(
        "alert push superseded",
        extra={"notification_id": n.pk, "transition": n.transition, "superseded_by": max(plan.stale.values())},
    )


def _wake(*, notification: AlertNotification) -> None:
    """Enqueue the next undelivered notification of the same alert: it may have waited for this one.
    (The sweeper re-enqueues anything a lost wake-up leaves.)"""
    following = (
        AlertNotification.objects.filter(
            alert_id=notification.alert_id,
            pk__gt=notification.pk,
            delivered_at=None,
            superseded_at=None,
            attempts__lt=settings.TFT_ALERT_PUSH_MAX_ATTEMPTS * 3,  # not given up
        )
        .order_by("pk")
        .values_list("pk", flat=True)
        .first()
    )
    if following is not None:
        transaction.on_commit(lambda: _enqueue([following]), robust=True)


def alert_notification_deliver(*, notification_id: int, now: datetime | None = None) -> bool:
    """Send one notification to every target that has not yet accepted it, in order (see "Order" in
    the module docstring). True when this call completed the delivery; False when it was already
    delivered or superseded, another worker is delivering its alert, or it waits for an earlier
    notification (which enqueues it again when it settles). Raises AlertPushError when a target failed
    (the task retries)."""
    now = now or datetime.now(UTC)
    targets = push_targets()
    lease = timedelta(seconds=settings.TFT_ALERT_PUSH_TIMEOUT_SECONDS * (len(targets) + 1) + 30)
    plan = _claim(notification_id=notification_id, targets=targets, now=now, lease=lease)
    if plan is None:
        return False
    notification = plan.notification
    done = list(notification.delivered_targets)
    try:
        for url in plan.send:
            is_alertmanager = url.endswith("/api/v2/alerts") and url.startswith(settings.TFT_ALERTMANAGER_URL or "\0")
            if is_alertmanager:
                _post(url, [alert for _, alert in carried_alerts(notification=notification)])
            else:
                _post(url, webhook_body(notification=notification))
            done.append(url)
            AlertNotification.objects.filter(pk=notification_id).update(delivered_targets=done)
    except AlertPushError as exc:
        AlertNotification.objects.filter(pk=notification_id).update(claimed_until=None, last_error=str(exc)[:500])
        logger.warning(
            "alert push failed, will retry",
            extra={"notification_id": notification_id, "attempt": notification.attempts, "error": str(exc)[:300]},
        )
        _wake(notification=notification)  # a target it did reach may take the next one now
        raise
    if plan.held:  # sent where it could; the earlier notification wakes it for the rest
        AlertNotification.objects.filter(pk=notification_id).update(claimed_until=None)
        _wake(notification=notification)
        return False
    if plan.stale:
        _supersede(plan=plan, now=now)
        _wake(notification=notification)
        return False
    delivered = AlertNotification.objects.filter(pk=notification_id, delivered_at=None).update(
        delivered_at=datetime.now(UTC), claimed_until=None, last_error=""
    )
    logger.info(
        "alert pushed",
        extra={"notification_id": notification_id, "transition": notification.transition, "targets": len(done)},
    )
    _wake(notification=notification)
    return bool(delivered)


def alert_notifications_pending_push(*, now: datetime | None = None, min_age_seconds: int = 900) -> int:
    """Re-enqueue undelivered notifications that no task is working on (lost or out of retries).
    Only those older than min_age_seconds, so a task still in its backoff is rarely doubled (and a
    doubled one finds the notification claimed or delivered)."""
    if not push_targets():
        return 0
    now = now or datetime.now(UTC)
    ids = list(
        AlertNotification.objects.filter(
            Q(claimed_until__isnull=True) | Q(claimed_until__lt=now),
            delivered_at=None,
            superseded_at=None,
            created_at__lt=now - timedelta(seconds=min_age_seconds),
            attempts__lt=settings.TFT_ALERT_PUSH_MAX_ATTEMPTS * 3,  # then give up: last_error says why
        ).values_list("pk", flat=True)[:500]
    )
    _enqueue(ids)
    return len(ids)
