"""Alert push order: per alert and target, a receiver never gets an older state after a newer one.
A notification waits while an earlier one of the same alert is still being retried for that target,
and one that a later notification already overtook is superseded, never sent. Against a real local
HTTP receiver (webhook + Alertmanager /api/v2/alerts), with deliveries run out of order as Celery's
retries and two workers run them."""

import queue
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction

from forecasting.alerts import push as alert_push
from forecasting.alerts.push import AlertPushError, alert_notification_deliver, alert_notifications_pending_push
from forecasting.alerts.selectors import alert_notification_status
from forecasting.alerts.services import alert_transition, alerts_apply_run
from forecasting.models import AlertNotification, PredictionRun
from ingest.models import Server
from tests.conftest import ingest_fleet
from tests.forecasting.alerts.test_hysteresis_and_silences import _candidate

HOOK, AM = "/hook", "/am/api/v2/alerts"


@pytest.fixture
def push_settings(settings, receiver):
    settings.TFT_ALERT_WEBHOOK_URLS = [f"{receiver.url}{HOOK}"]
    settings.TFT_ALERTMANAGER_URL = f"{receiver.url}/am"
    settings.TFT_ALERT_PUSH_TIMEOUT_SECONDS = 5
    settings.TFT_ALERT_PUSH_MAX_ATTEMPTS = 3
    return settings


@pytest.fixture
def enqueued(monkeypatch):
    """The notification ids enqueued (on commit, and the wake-ups), instead of Celery tasks."""
    ids: list[int] = []
    monkeypatch.setattr(alert_push, "_enqueue", ids.extend)
    return ids


def _history(*severities: str) -> list[AlertNotification]:
    """One alert opened at the first severity, changed to each next one, then resolved by an operator:
    its notifications in the order they were recorded (none delivered)."""
    ingest_fleet(["ppdb001"], buckets=12)
    server = Server.objects.get(name="ppdb001")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    for i, severity in enumerate(severities):
        now = t0 + timedelta(minutes=5 * i)
        run = PredictionRun.objects.create(status="complete", started_at=now, heartbeat_at=now, finished_at=now)
        with transaction.atomic():
            alerts_apply_run(run=run, forecasts=[(server.pk, [_candidate(severity)], None, None, now)], now=now)
    alert_id = AlertNotification.objects.get(transition="firing").alert_id
    assert alert_transition(alert_id=alert_id, to="resolved") is True
    return list(AlertNotification.objects.filter(alert_id=alert_id).order_by("pk"))


def _kind(prefix: str, body) -> str:
    """Which transition a received message carries: a severity change carries two alerts (the old
    severity's resolved, the new one's firing); a resolve ends its alert now or earlier."""
    alerts = body["alerts"] if prefix == HOOK else body
    if len(alerts) == 2:
        return "severity_changed"
    if prefix == HOOK:
        return body["status"]
    ends = datetime.fromisoformat(alerts[0]["endsAt"])
    return "resolved" if ends <= datetime.now(UTC) else "firing"


def _received(receiver, prefix: str) -> list[str]:
    return [_kind(prefix, body) for body in receiver.ok(prefix)]


def _work(ids, enqueued, capture) -> None:
    """A Celery worker in miniature: runs the queued deliveries in turn; a delivery that raises is
    retried later (back at the end of the queue, as its backoff would), a wake-up is queued."""
    tasks = list(ids)
    for _ in range(100):
        if not tasks:
            return
        pk = tasks.pop(0)
        with capture(execute=True):
            try:
                alert_notification_deliver(notification_id=pk)
            except AlertPushError:
                tasks.append(pk)
        tasks.extend(enqueued)
        enqueued.clear()
    raise AssertionError(f"deliveries still queued after 100 tasks: {tasks}")


@pytest.mark.django_db
def test_deliveries_run_out_of_order_reach_each_receiver_in_order(
    push_settings, receiver, enqueued, django_capture_on_commit_callbacks
):
    firing, changed, resolved = _history("warning", "critical")

    _work([resolved.pk, changed.pk, firing.pk], enqueued, django_capture_on_commit_callbacks)

    in_order = ["firing", "severity_changed", "resolved"]
    assert _received(receiver, HOOK) == in_order and _received(receiver, AM) == in_order
    assert all(n.delivered_at for n in AlertNotification.objects.all())


@pytest.mark.django_db
def test_a_failing_earlier_message_holds_later_ones_until_it_is_delivered(
    push_settings, receiver, enqueued, django_capture_on_commit_callbacks
):
    firing, resolved = _history("warning")
    receiver.fail[HOOK] = 1

    with pytest.raises(AlertPushError):
        alert_notification_deliver(notification_id=firing.pk)
    assert alert_notification_deliver(notification_id=resolved.pk) is False  # held: nothing sent

    resolved.refresh_from_db()
    assert resolved.attempts == 0 and resolved.delivered_at is None and resolved.delivered_targets == []
    assert [path for path, _, _ in receiver.requests] == [HOOK]  # only the firing's failed POST
    with django_capture_on_commit_callbacks(execute=True):
        assert alert_notification_deliver(notification_id=firing.pk) is True  # its retry
    assert enqueued == [resolved.pk]  # the delivered firing wakes the message it held
    assert alert_notification_deliver(notification_id=resolved.pk) is True
    assert _received(receiver, HOOK) == ["firing", "resolved"] and _received(receiver, AM) == ["firing", "resolved"]


@pytest.mark.django_db
def test_an_earlier_message_out_of_task_retries_no_longer_holds_later_ones(push_settings, receiver, enqueued):
    firing, resolved = _history("warning")
    receiver.fail[HOOK] = push_settings.TFT_ALERT_PUSH_MAX_ATTEMPTS + 1  # every run of the firing's task fails

    for _ in range(push_settings.TFT_ALERT_PUSH_MAX_ATTEMPTS + 1):
        assert alert_notification_deliver(notification_id=resolved.pk) is False  # held meanwhile
        with pytest.raises(AlertPushError):
            alert_notification_deliver(notification_id=firing.pk)

    assert alert_notification_deliver(notification_id=resolved.pk) is True
    assert _received(receiver, HOOK) == ["resolved"] and _received(receiver, AM) == ["resolved"]


@pytest.mark.django_db
def test_a_stale_firing_after_a_delivered_resolve_is_superseded_not_sent(push_settings, receiver, enqueued):
    firing, resolved = _history("warning")
    receiver.fail[HOOK] = push_settings.TFT_ALERT_PUSH_MAX_ATTEMPTS + 1
    for _ in range(push_settings.TFT_ALERT_PUSH_MAX_ATTEMPTS + 1):
        with pytest.raises(AlertPushError):
            alert_notification_deliver(notification_id=firing.pk)
    assert alert_notification_deliver(notification_id=resolved.pk) is True

    # The sweeper picks the firing up again: the receivers already have the resolve, so it is not sent.
    assert alert_notifications_pending_push(min_age_seconds=0) == 1 and enqueued == [firing.pk]
    assert alert_notification_deliver(notification_id=firing.pk) is False

    firing.refresh_from_db()
    assert _received(receiver, HOOK) == ["resolved"] and _received(receiver, AM) == ["resolved"]
    assert firing.superseded_by_id == resolved.pk and firing.superseded_at is not None
    assert alert_notification_status(notification=firing) == "superseded"
    assert alert_notifications_pending_push(min_age_seconds=0) == 0  # settled: never swept again


@pytest.mark.django_db
def test_the_admin_shows_a_superseded_notification_as_superseded(push_settings, admin_client):
    push_settings.STORAGES = {  # no collectstatic manifest in tests
        **push_settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    firing, resolved = _history("warning")
    AlertNotification.objects.filter(pk=firing.pk).update(superseded_at=datetime.now(UTC), superseded_by=resolved)

    page = admin_client.get("/admin/forecasting/alertnotification/?superseded_at__isempty=0")

    assert page.status_code == 200
    assert [n.pk for n in page.context["cl"].result_list] == [firing.pk]
    assert '<td class="field-push_status">superseded</td>' in page.content.decode()


@pytest.mark.django_db
def test_order_is_kept_per_target_a_receiver_that_is_up_is_not_held_by_one_that_is_down(
    push_settings, receiver, enqueued, django_capture_on_commit_callbacks
):
    firing, resolved = _history("warning")
    receiver.fail["/am/"] = 1

    with pytest.raises(AlertPushError):
        alert_notification_deliver(notification_id=firing.pk)  # the webhook accepts, Alertmanager fails
    assert alert_notification_deliver(notification_id=resolved.pk) is False  # webhook yes, Alertmanager held

    assert _received(receiver, HOOK) == ["firing", "resolved"] and _received(receiver, AM) == []
    with django_capture_on_commit_callbacks(execute=True):
        assert alert_notification_deliver(notification_id=firing.pk) is True
    assert alert_notification_deliver(notification_id=resolved.pk) is True
    assert _received(receiver, AM) == ["firing", "resolved"] and len(receiver.ok(HOOK)) == 2


@pytest.mark.django_db(transaction=True)
def test_two_workers_racing_send_each_message_once_and_in_order(push_settings, receiver, monkeypatch):
    tasks: queue.Queue[int] = queue.Queue()
    monkeypatch.setattr(alert_push, "_enqueue", lambda ids: [tasks.put(pk) for pk in ids])
    firing, changed, resolved = _history("warning", "critical")  # autocommit: enqueued as recorded
    while not tasks.empty():  # run them out of order instead, each twice (a task and the sweeper's)
        tasks.get()
    receiver.delay["/"] = 0.2  # each POST takes a while: the two workers' deliveries overlap
    for pk in (resolved.pk, changed.pk, firing.pk, resolved.pk, firing.pk, changed.pk):
        tasks.put(pk)
    errors: list[BaseException] = []

    def worker():
        try:
            while True:
                try:
                    pk = tasks.get(timeout=3)
                except queue.Empty:
                    return
                alert_notification_deliver(notification_id=pk)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=worker) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)

    assert errors == [] and not any(w.is_alive() for w in workers)
    in_order = ["firing", "severity_changed", "resolved"]
    assert _received(receiver, HOOK) == in_order and _received(receiver, AM) == in_order
    assert len(receiver.requests) == 6  # once per message and target, nothing doubled
