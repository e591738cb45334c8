"""Alert push: Alertmanager webhook and /api/v2/alerts payloads, retry after a 500, exactly once; every
transition (a run's, the admin's, the dashboard's) records its notification through one path."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction

from forecasting.alerts import push as alert_push
from forecasting.alerts.push import AlertPushError, alert_notification_deliver, alert_notifications_pending_push
from forecasting.alerts.services import alert_transition, alerts_apply_run
from forecasting.models import Alert, AlertNotification, PredictionRun
from forecasting.runs.chunks import fleet_predict
from ingest.models import Server
from tests.conftest import ingest_fleet
from tests.forecasting.alerts.test_hysteresis_and_silences import _candidate

pytestmark = pytest.mark.django_db


def _rising_mem(i):
    return 60.0 + i * 0.2  # reaches 92: a warning is predicted


@pytest.fixture
def push_settings(settings, receiver):
    settings.TFT_ALERT_WEBHOOK_URLS = [f"{receiver.url}/hook"]
    settings.TFT_ALERTMANAGER_URL = f"{receiver.url}/am"
    settings.TFT_ALERT_PUSH_TIMEOUT_SECONDS = 5
    # One alert per server (the memory forecast's): the rising memory would also open the server's
    # trend warning, and these tests count one alert's notifications exactly.
    settings.TFT_ALERT_TREND = False
    return settings


def _deliver_all(ids) -> None:
    for pk in ids:
        assert alert_notification_deliver(notification_id=pk) is True


def test_open_and_resolve_are_pushed_once_with_retries(
    push_settings, receiver, no_models, django_capture_on_commit_callbacks, monkeypatch
):
    # Data ending 3 h ago, forecast by a run at that time (so the forecast is current, not stale);
    # later buckets then bring the server up to now.
    end = ingest_fleet({"ppdb001": {"mem_pct": _rising_mem}}, end=datetime.now(UTC) - timedelta(hours=3))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        fleet_predict(now=end)
    assert receiver.requests == []  # the run itself never talks to a receiver
    firing = list(AlertNotification.objects.filter(transition="firing"))
    opened = Alert.objects.filter(state="active")
    assert firing and {n.alert_id for n in firing} == {a.pk for a in opened}

    # On commit, one task per notification is enqueued.
    enqueued = []
    monkeypatch.setattr(alert_push, "_enqueue", enqueued.extend)
    assert len(callbacks) == 1
    callbacks[0]()
    assert sorted(enqueued) == sorted(n.pk for n in firing)

    # The webhook answers 500 once: the delivery raises (Celery retries) and nothing is marked.
    receiver.fail["/hook"] = 1
    first = firing[0]
    with pytest.raises(AlertPushError, match="HTTP 500"):
        alert_notification_deliver(notification_id=first.pk)
    first.refresh_from_db()
    assert first.delivered_at is None and first.attempts == 1 and "500" in first.last_error
    # The retry delivers; later attempts (a duplicate task, the sweeper) send nothing.
    assert alert_notification_deliver(notification_id=first.pk) is True
    assert alert_notification_deliver(notification_id=first.pk) is False
    _deliver_all(n.pk for n in firing[1:])

    hooks, pushes = receiver.ok("/hook"), receiver.ok("/am/api/v2/alerts")
    assert len(hooks) == len(firing) and len(pushes) == len(firing)  # exactly one success per target
    fired = hooks[0]
    assert fired["version"] == "4" and fired["status"] == "firing"
    alert = fired["alerts"][0]
    assert alert["status"] == "firing"
    assert alert["labels"] == {"alertname": "TFTForecastThreshold", "server": "ppdb001", "metric": "mem_pct",
                               "severity": Alert.objects.get(server__name="ppdb001").opened_severity,
                               "rule": alert["labels"]["rule"], "service": "tftsite"}
    assert alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert "ppdb001" in alert["annotations"]["summary"]
    am_alert = pushes[0][0]
    assert set(am_alert) == {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}
    assert datetime.fromisoformat(am_alert["endsAt"]) > datetime.now(UTC)  # firing until resolved

    # Memory returns to normal: the next run resolves the alerts and pushes "resolved" once each.
    ingest_fleet({"ppdb001": {"mem_pct": 40.0}}, buckets=36)
    with django_capture_on_commit_callbacks(execute=False):
        fleet_predict()
    resolved = list(AlertNotification.objects.filter(transition="resolved"))
    assert {n.alert_id for n in resolved} == {n.alert_id for n in firing}
    _deliver_all(n.pk for n in resolved)
    done = [h for h in receiver.ok("/hook") if h["status"] == "resolved"]
    assert len(done) == len(resolved)
    ended = done[0]["alerts"][0]
    row = Alert.objects.get(pk=next(n.alert_id for n in resolved if n.payload["labels"] == ended["labels"]))
    assert datetime.fromisoformat(ended["endsAt"]) == row.resolved_at
    am_resolved = [p[0] for p in receiver.ok("/am/api/v2/alerts")[len(firing):]]
    assert all(datetime.fromisoformat(a["endsAt"]) <= datetime.now(UTC) for a in am_resolved)

    # A third run with nothing new records nothing; the sweeper finds nothing pending.
    with django_capture_on_commit_callbacks(execute=False):
        fleet_predict()
    assert AlertNotification.objects.count() == len(firing) + len(resolved)
    assert alert_notifications_pending_push(min_age_seconds=0) == 0


def test_partial_fan_out_is_not_resent_and_claims_exclude_each_other(
    push_settings, receiver, no_models, django_capture_on_commit_callbacks, monkeypatch
):
    ingest_fleet({"ppdb001": {"mem_pct": _rising_mem}, "ppdb002": {"mem_pct": _rising_mem}})
    with django_capture_on_commit_callbacks(execute=False):
        fleet_predict()
    notification = AlertNotification.objects.filter(transition="firing").first()

    # The webhook accepts, Alertmanager fails: the retry only goes to Alertmanager.
    receiver.fail["/am/"] = 1
    with pytest.raises(AlertPushError):
        alert_notification_deliver(notification_id=notification.pk)
    assert alert_notification_deliver(notification_id=notification.pk) is True
    assert len([b for b in receiver.ok("/hook") if b["alerts"][0]["fingerprint"] == f"tft-{notification.alert_id}-{notification.payload['labels']['severity']}"]) == 1

    # A notification another worker is delivering (live claim) is left alone.
    other = AlertNotification.objects.exclude(pk=notification.pk).filter(transition="firing").first()
    assert other is not None  # both servers' rising memory opened an alert
    sent = len(receiver.requests)
    AlertNotification.objects.filter(pk=other.pk).update(claimed_until=datetime.now(UTC) + timedelta(minutes=1))
    assert alert_notification_deliver(notification_id=other.pk) is False
    assert len(receiver.requests) == sent
    enqueued = []
    monkeypatch.setattr(alert_push, "_enqueue", enqueued.extend)
    assert alert_notifications_pending_push(min_age_seconds=0) == 0  # claimed: not swept
    # The claim lapses (its worker died mid-delivery): the sweeper re-enqueues it.
    AlertNotification.objects.filter(pk=other.pk).update(claimed_until=datetime.now(UTC) - timedelta(seconds=1))
    assert alert_notifications_pending_push(min_age_seconds=0) == 1
    assert enqueued == [other.pk]
    assert alert_notification_deliver(notification_id=other.pk) is True


def test_nothing_is_recorded_without_targets(settings, no_models):
    settings.TFT_ALERT_WEBHOOK_URLS = []
    settings.TFT_ALERTMANAGER_URL = ""
    ingest_fleet({"ppdb001": {"mem_pct": _rising_mem}})
    fleet_predict()
    assert Alert.objects.exists()
    assert not AlertNotification.objects.exists()


@pytest.fixture
def enqueued(monkeypatch):
    """The notification ids enqueued on commit, instead of Celery tasks."""
    ids: list[int] = []
    monkeypatch.setattr(alert_push, "_enqueue", ids.extend)
    return ids


@pytest.fixture
def open_alert(push_settings, no_models, django_capture_on_commit_callbacks):
    """An active alert whose "firing" notification is already recorded and delivered; its history ends
    3 hours ago, so a later ingest of normal memory ends the prediction."""
    # Data ending 3 h ago, forecast by a run at that time (so the forecast is current, not stale);
    # later buckets then bring the server up to now.
    end = ingest_fleet({"ppdb001": {"mem_pct": _rising_mem}}, end=datetime.now(UTC) - timedelta(hours=3))
    with django_capture_on_commit_callbacks(execute=False):
        fleet_predict(now=end)
    _deliver_all(AlertNotification.objects.values_list("pk", flat=True))
    return Alert.objects.filter(state="active").order_by("pk").first()


def _resolved_hooks(receiver, alert):
    return [h for h in receiver.ok("/hook") if h["status"] == "resolved"
            and h["alerts"][0]["fingerprint"] == f"tft-{alert.pk}-{alert.severity}"]


def test_admin_resolve_records_one_resolved_notification_and_pushes_it(
    open_alert, receiver, admin_client, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post("/admin/forecasting/alert/", {"action": "resolve", "_selected_action": [open_alert.pk]})

    assert response.status_code == 302
    (notification,) = AlertNotification.objects.filter(alert=open_alert, transition="resolved")
    assert enqueued == [notification.pk]  # pushed on commit, like a run's
    _deliver_all(enqueued)
    (hook,) = _resolved_hooks(receiver, open_alert)
    open_alert.refresh_from_db()
    assert open_alert.state == "resolved"
    assert datetime.fromisoformat(hook["alerts"][0]["endsAt"]) == open_alert.resolved_at
    am_resolved = [p[0] for p in receiver.ok("/am/api/v2/alerts") if p[0]["labels"] == hook["alerts"][0]["labels"]]
    assert datetime.fromisoformat(am_resolved[-1]["endsAt"]) == open_alert.resolved_at  # Alertmanager stops firing


def test_resolving_twice_records_one_notification(open_alert, enqueued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert alert_transition(alert_id=open_alert.pk, to="resolved") is True
        assert alert_transition(alert_id=open_alert.pk, to="resolved") is False

    assert AlertNotification.objects.filter(alert=open_alert, transition="resolved").count() == 1
    assert len(enqueued) == 1


def test_dashboard_acknowledge_goes_through_the_transition_and_is_not_pushed(
    open_alert, admin_client, admin_user, enqueued, django_capture_on_commit_callbacks
):
    before = AlertNotification.objects.count()
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"/dashboard/alerts/{open_alert.pk}/acknowledge")

    assert response.status_code == 302
    open_alert.refresh_from_db()
    assert open_alert.state == "acknowledged" and open_alert.acknowledged_by == admin_user
    # Alertmanager has no acknowledged state: the alert keeps firing there until it resolves.
    assert AlertNotification.objects.count() == before and enqueued == []


def test_an_acknowledged_alert_resolved_by_the_next_run_is_pushed_once(
    open_alert, receiver, admin_client, enqueued, django_capture_on_commit_callbacks
):
    admin_client.post("/admin/forecasting/alert/", {"action": "acknowledge", "_selected_action": [open_alert.pk]})
    ingest_fleet({"ppdb001": {"mem_pct": 40.0}}, buckets=36)
    with django_capture_on_commit_callbacks(execute=True):
        fleet_predict()
    with django_capture_on_commit_callbacks(execute=True):
        fleet_predict()  # nothing left open: records nothing more

    (notification,) = AlertNotification.objects.filter(alert=open_alert, transition="resolved")
    assert notification.pk in enqueued and len(enqueued) == AlertNotification.objects.filter(transition="resolved").count()
    _deliver_all([notification.pk])
    assert len(_resolved_hooks(receiver, open_alert)) == 1


def test_an_operator_resolved_alert_is_not_resolved_again_by_the_run(
    open_alert, admin_client, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post("/admin/forecasting/alert/", {"action": "resolve", "_selected_action": [open_alert.pk]})
    resolved_at = Alert.objects.get(pk=open_alert.pk).resolved_at
    ingest_fleet({"ppdb001": {"mem_pct": 40.0}}, buckets=36)
    with django_capture_on_commit_callbacks(execute=True):
        fleet_predict()

    assert AlertNotification.objects.filter(alert=open_alert, transition="resolved").count() == 1
    assert Alert.objects.get(pk=open_alert.pk).resolved_at == resolved_at


def test_a_severity_change_reaches_each_receiver_once_as_the_new_severity(push_settings, receiver):
    """Warning, then critical, then critical again (a new forecast origin): one message each for the
    opening and the change; the change ends the warning's labels and fires the critical's."""
    ingest_fleet(["ppdb001"], buckets=12)
    server = Server.objects.get(name="ppdb001")
    t0 = datetime.now(UTC).replace(microsecond=0)
    for i, severity in enumerate(["warning", "critical", "critical"]):
        now = t0 + timedelta(minutes=5 * i)
        run = PredictionRun.objects.create(status="complete", started_at=now, heartbeat_at=now, finished_at=now)
        with transaction.atomic():
            alerts_apply_run(run=run, forecasts=[(server.pk, [_candidate(severity)], None, None, now)], now=now)
    _deliver_all(AlertNotification.objects.order_by("pk").values_list("pk", flat=True))

    opened, changed = receiver.ok("/hook")
    alert = Alert.objects.get()
    assert opened["alerts"][0]["labels"]["severity"] == "warning"
    assert changed["status"] == "firing" and "severity" not in changed["commonLabels"]
    assert [(a["status"], a["labels"]["severity"], a["fingerprint"]) for a in changed["alerts"]] == [
        ("resolved", "warning", f"tft-{alert.pk}-warning"),
        ("firing", "critical", f"tft-{alert.pk}-critical"),
    ]
    _, am_changed = receiver.ok("/am/api/v2/alerts")
    ended, fired = am_changed
    assert ended["labels"] == opened["alerts"][0]["labels"] and fired["labels"]["severity"] == "critical"
    assert datetime.fromisoformat(ended["endsAt"]) == t0 + timedelta(minutes=5)
    assert datetime.fromisoformat(fired["endsAt"]) > datetime.now(UTC)

    assert alert_transition(alert_id=alert.pk, to="resolved") is True
    _deliver_all(AlertNotification.objects.filter(transition="resolved").values_list("pk", flat=True))
    (resolved,) = _resolved_hooks(receiver, alert)
    assert resolved["alerts"][0]["labels"] == fired["labels"]  # Alertmanager matches it to the critical firing


def test_the_incident_probability_alert_is_pushed_under_its_own_alertname():
    now = datetime.now(UTC)
    alert = Alert(metric="incident", severity="warning", rule="incident_prob", predicted_value=12.0, threshold=5.0,
                  steps_ahead=96, minutes_ahead=480, message="ppdb001: P(incident within 8 h) is 12% (≥ 5.0%)",
                  opened_at=now, updated_at=now)  # fmt: skip
    pushed = alert_push._alertmanager_alert(alert=alert, server_name="ppdb001", transition="firing", now=now)
    assert pushed["labels"]["alertname"] == "TFTIncidentProbability"
    assert (pushed["labels"]["metric"], pushed["labels"]["rule"]) == ("incident", "incident_prob")
