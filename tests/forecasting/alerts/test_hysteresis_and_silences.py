"""The live alert lifecycle through the hysteresis and maintenance windows (forecasting.alerts.services,
forecasting.windows), driven by runs' candidates exactly as a prediction run finalises them."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.db import transaction

from forecasting.alerts.services import alerts_apply_run
from forecasting.models import Alert, AlertNotification, AlertTransition, MaintenanceWindow, PredictionRun
from forecasting.prometheus import metrics_text
from forecasting.windows import server_histories, silenced_keys
from ingest.models import Server
from tests.conftest import ingest_fleet

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def hysteresis(settings):
    settings.TFT_ALERT_OPEN_AFTER_WARNING, settings.TFT_ALERT_OPEN_AFTER_CRITICAL = 3, 2
    settings.TFT_ALERT_RESOLVE_AFTER_WARNING, settings.TFT_ALERT_RESOLVE_AFTER_CRITICAL = 4, 2
    settings.TFT_ALERT_WEBHOOK_URLS = ["http://127.0.0.1:9/hook"]  # notifications are recorded (not sent: no commit)


@pytest.fixture
def server():
    ingest_fleet(["ppdb001"], buckets=12)
    return Server.objects.get(name="ppdb001")


def _candidate(severity="warning", metric="mem_pct"):
    return {
        "metric": metric,
        "severity": severity,
        "rule": f"p50_{severity}",
        "predicted_value": 97.0,
        "threshold": 95.0 if severity == "critical" else 85.0,
        "steps_ahead": 6,
        "minutes_ahead": 30,
        "message": f"ppdb001: mem_pct p50 forecast peaks at 97.0 ({severity})",
    }


def _run(server, i, *severities, origin=None):
    """Run number i (5 minutes apart) predicting the given severities for mem_pct; its forecast's
    origin is `origin` (default: a new one each run, as a new bucket arrives)."""
    now = T0 + timedelta(minutes=5 * i)
    origin = origin or now
    run = PredictionRun.objects.create(status="complete", started_at=now, heartbeat_at=now, finished_at=now)
    with transaction.atomic():
        forecast = (server.pk, [_candidate(s) for s in severities], None, None, origin)
        alerts_apply_run(run=run, forecasts=[forecast], now=now)
    return run


def test_opens_on_the_kth_run_and_resolves_on_the_mth(hysteresis, server):
    for i in range(2):
        _run(server, i, "warning")
    assert not Alert.objects.exists()
    third = _run(server, 2, "warning")
    alert = Alert.objects.get()
    assert alert.state == "active" and alert.first_run == third
    for i in range(3, 6):
        _run(server, i)
    assert Alert.objects.get().state == "active"
    _run(server, 6)
    alert.refresh_from_db()
    assert alert.state == "resolved"
    assert list(AlertTransition.objects.values_list("kind", flat=True)) == ["opened", "resolved"]
    assert sorted(AlertNotification.objects.values_list("transition", flat=True)) == ["firing", "resolved"]


def test_runs_of_the_same_forecast_origin_count_once(hysteresis, server):
    for i in range(4):
        _run(server, i, "warning", origin=T0)  # runs every minute, no new bucket: one forecast
    assert not Alert.objects.exists()
    _run(server, 4, "warning")
    _run(server, 5, "warning")
    assert Alert.objects.get().state == "active"  # the 3rd forecast origin


def test_a_miss_between_predictions_does_not_flap(hysteresis, server):
    for i, predicted in enumerate(["warning"] * 3 + [None, None, "warning", None, None, None, "warning"]):
        _run(server, i, *([predicted] if predicted else []))
    assert Alert.objects.count() == 1 and Alert.objects.get().state == "active"
    assert AlertNotification.objects.count() == 1


def _open_warning(server):
    for i in range(3):
        _run(server, i, "warning")


def test_a_severity_change_is_a_transition_not_a_new_alert(hysteresis, server):
    _open_warning(server)
    _run(server, 3, "warning", "critical")
    alert = Alert.objects.get()
    assert alert.severity == "critical" and alert.opened_severity == "warning"
    assert list(alert.transitions.values_list("kind", "severity")) == [
        ("opened", "warning"),
        ("severity_changed", "critical"),
    ]


def test_a_severity_change_is_pushed_once_as_the_new_severity(hysteresis, server):
    _open_warning(server)
    _run(server, 3, "critical")
    firing, changed = AlertNotification.objects.order_by("pk")
    assert (firing.transition, changed.transition) == ("firing", "severity_changed")
    assert changed.alert_transition == AlertTransition.objects.get(kind="severity_changed")
    assert changed.payload["labels"]["severity"] == "critical"
    assert changed.payload["previous"]["labels"] == firing.payload["labels"]  # the warning that was pushed, ended


def test_the_same_step_again_pushes_nothing_more(hysteresis, server):
    _open_warning(server)
    origin = T0 + timedelta(minutes=15)
    _run(server, 3, "critical", origin=origin)
    _run(server, 4, "critical", origin=origin)  # the next run, same forecast origin
    _run(server, 3, "critical", origin=origin)  # the same run retried
    assert AlertNotification.objects.filter(transition="severity_changed").count() == 1
    assert AlertTransition.objects.filter(kind="severity_changed").count() == 1


def test_each_change_back_and_forth_is_pushed_once(hysteresis, server):
    _open_warning(server)
    _run(server, 3, "critical")
    _run(server, 4, "warning")
    changes = list(AlertNotification.objects.filter(transition="severity_changed").order_by("pk"))
    assert [n.payload["labels"]["severity"] for n in changes] == ["critical", "warning"]
    assert changes[1].payload["previous"]["labels"]["severity"] == "critical"
    assert Alert.objects.get().severity == "warning"


def test_a_resolve_after_a_severity_change_ends_the_new_severity(hysteresis, server):
    _open_warning(server)
    _run(server, 3, "critical")
    for i in range(4, 6):  # M = 2 for critical
        _run(server, i)
    resolved = AlertNotification.objects.get(transition="resolved")
    assert resolved.payload["labels"]["severity"] == "critical"
    changed = AlertNotification.objects.get(transition="severity_changed")
    assert resolved.payload["startsAt"] == changed.payload["startsAt"]


def test_the_timeline_shows_the_severity_change_with_its_forecast(hysteresis, server):
    from dashboard.selectors import alert_timeline

    _open_warning(server)
    _run(server, 3, "critical")
    newest = alert_timeline(server_name="ppdb001")[0]
    assert (newest.kind, newest.severity) == ("severity changed", "critical")
    assert newest.message == _candidate("critical")["message"]


def test_reopening_soon_after_resolving_is_a_flap(hysteresis, server, settings):
    settings.TFT_ALERT_OPEN_AFTER_CRITICAL = settings.TFT_ALERT_RESOLVE_AFTER_CRITICAL = 1
    _run(server, 0, "critical")
    _run(server, 1)
    _run(server, 2, "critical")
    assert list(Alert.objects.order_by("pk").values_list("flap", flat=True)) == [False, True]
    assert 'tft_alert_flaps_total{server="ppdb001"} 1.0' in metrics_text().decode()


def _window(**kwargs):
    fields = {
        "servers": "ppdb*",
        "starts_at": T0,
        "ends_at": T0 + timedelta(hours=2),
        "reason": "kernel upgrade",
        "created_by": "test",
        "created_at": T0,
        **kwargs,
    }
    return MaintenanceWindow.objects.create(**fields)


def test_inside_a_window_no_alert_opens_or_is_pushed(hysteresis, server):
    _window()
    for i in range(5):
        _run(server, i, "critical")
    assert not Alert.objects.exists() and not AlertNotification.objects.exists()


def test_a_window_on_another_metric_does_not_silence_this_one(hysteresis, server):
    _window(metric="cpu_pct")
    for i in range(2):
        _run(server, i, "critical")
    assert Alert.objects.filter(metric="mem_pct", state="active").exists()


def test_an_open_alert_is_resolved_once_when_a_window_begins_and_never_re_sent(hysteresis, server):
    for i in range(2):
        _run(server, i, "critical")
    _window(starts_at=T0 + timedelta(minutes=10))
    for i in range(2, 8):
        _run(server, i, "critical")
    alert = Alert.objects.get()
    assert alert.state == "resolved"
    assert list(alert.transitions.values_list("kind", flat=True)) == ["opened", "silenced"]
    assert sorted(AlertNotification.objects.values_list("transition", flat=True)) == ["firing", "resolved"]


def test_a_severity_change_inside_a_window_is_not_pushed(hysteresis, server):
    _open_warning(server)
    _window(starts_at=T0 + timedelta(minutes=15))
    _run(server, 3, "critical")
    alert = Alert.objects.get()
    assert (alert.state, alert.severity) == ("resolved", "warning")
    assert list(alert.transitions.values_list("kind", flat=True)) == ["opened", "silenced"]
    assert sorted(AlertNotification.objects.values_list("transition", flat=True)) == ["firing", "resolved"]


def test_an_ended_window_silences_no_more(hysteresis, server):
    _window(ended_at=T0 + timedelta(minutes=5))
    for i in range(2, 4):
        _run(server, i, "critical")
    assert Alert.objects.filter(state="active").exists()


def test_state_maintenance_counts_as_a_window(settings):
    ingest_fleet({"ppdb001": {"state": "maintenance"}, "ppdb002": {}}, buckets=3)
    ids = dict(Server.objects.values_list("name", "id"))
    assert silenced_keys(now=datetime.now(UTC)) == {(ids["ppdb001"], None)}
    settings.TFT_MAINTENANCE_STATE_SILENCES = False
    assert silenced_keys(now=datetime.now(UTC)) == set()


def test_window_buckets_are_left_out_of_training_data():
    end = ingest_fleet(["ppdb001", "ppweb002"], buckets=36)
    start = end - timedelta(minutes=5 * 35)
    a, b = start + timedelta(minutes=50), start + timedelta(minutes=100)
    _window(servers="ppdb001", starts_at=a, ends_at=b)
    by_name = {w.server: w for w in server_histories()}
    db = by_name["ppdb001"]
    gone = np.isnan(db.values).all(axis=1)
    bucket = [
        (db.start + timedelta(minutes=5 * i), db.start + timedelta(minutes=5 * (i + 1))) for i in range(len(gone))
    ]
    assert gone.tolist() == [lo < b and hi > a for lo, hi in bucket]  # every bucket overlapping the window
    assert 10 <= gone.sum() <= 11
    assert not np.isnan(by_name["ppweb002"].values).any()
    kept = {w.server: w for w in server_histories(keep_silenced=True)}
    assert not np.isnan(kept["ppdb001"].values).any()


def _incident_run(server, i, *, predicted):
    now = T0 + timedelta(minutes=5 * i)
    run = PredictionRun.objects.create(status="complete", started_at=now, heartbeat_at=now, finished_at=now)
    c = {**_candidate("warning", metric="incident"), "rule": "incident_prob", "predicted_value": 12.0,
         "threshold": 5.0, "steps_ahead": 96, "minutes_ahead": 480}  # fmt: skip
    with transaction.atomic():
        alerts_apply_run(run=run, forecasts=[(server.pk, [c] if predicted else [], None, 0.12, now)], now=now)


def test_the_incident_alert_keeps_its_own_hysteresis(hysteresis, server, settings):
    # The forecast rules open a warning on the 3rd run and resolve it on the 4th without; the incident
    # alert opens on the 1st and resolves only on the 6th run without it.
    settings.TFT_ALERT_INCIDENT_OPEN_AFTER, settings.TFT_ALERT_INCIDENT_RESOLVE_AFTER = 1, 6
    _incident_run(server, 0, predicted=True)
    alert = Alert.objects.get()
    assert (alert.metric, alert.rule, alert.state) == ("incident", "incident_prob", "active")
    for i in range(1, 6):
        _incident_run(server, i, predicted=False)
    alert.refresh_from_db()
    assert alert.state == "active" and alert.misses == 5
    _incident_run(server, 6, predicted=False)
    alert.refresh_from_db()
    assert alert.state == "resolved"


def test_a_maintenance_window_silences_the_incident_alert(hysteresis, server, settings):
    settings.TFT_ALERT_INCIDENT_OPEN_AFTER = 1
    _window(starts_at=T0 - timedelta(hours=1), ends_at=T0 + timedelta(hours=1))
    _incident_run(server, 0, predicted=True)
    assert not Alert.objects.exists()


def test_the_early_warnings_reach_is_the_setting_in_forecast_steps_rounded_up(settings):
    from forecasting.alerts.selectors import early_warning_steps

    settings.TFT_ALERT_EARLY_WARNING_MINUTES = 120
    assert early_warning_steps() == 24
    settings.TFT_ALERT_EARLY_WARNING_MINUTES = 122
    assert early_warning_steps() == 25


def test_the_trend_rule_is_the_settings_in_buckets_rounded_up(settings):
    from forecasting.alerts.selectors import alert_trend
    from forecasting.engine.alert_rules import Trend

    settings.TFT_ALERT_TREND_FIT_MINUTES, settings.TFT_ALERT_TREND_REACH_MINUTES = 120, 241
    settings.TFT_ALERT_TREND_HOLD_MINUTES, settings.TFT_ALERT_TREND_NEAR = 15, 0.5
    settings.TFT_ALERT_TREND_EXPECTED_STATES = ("heavy_load",)
    assert alert_trend() == Trend(fit=24, reach=49, hold=3, near=0.5, expected=("heavy_load",))


def test_no_trend_rule_when_it_is_off(settings):
    from forecasting.alerts.selectors import alert_trend

    settings.TFT_ALERT_TREND = False
    assert alert_trend() is None


def _trend(metric, steps):
    return {"metric": "trend", "trending": metric, "severity": "warning", "rule": "trend_projection",
            "predicted_value": 120.0, "threshold": 95.0, "steps_ahead": steps, "minutes_ahead": 5 * steps,
            "message": f"ppdb001: {metric} trending to its critical limit 95.0"}  # fmt: skip


def _trend_run(server, *trends):
    run = PredictionRun.objects.create(status="complete", started_at=T0, heartbeat_at=T0, finished_at=T0)
    with transaction.atomic():
        alerts_apply_run(run=run, forecasts=[(server.pk, list(trends), None, None, T0)], now=T0)


@pytest.fixture
def open_at_once(settings):
    settings.TFT_ALERT_OPEN_AFTER_WARNING = 1


def test_the_servers_trend_alert_names_the_metric_that_reaches_its_limit_first(open_at_once, server):
    _trend_run(server, _trend("cpu_pct", 20), _trend("mem_pct", 8))
    alert = Alert.objects.get()
    assert (alert.metric, alert.steps_ahead) == ("trend", 8)
    assert alert.message == "ppdb001: mem_pct trending to its critical limit 95.0; also trending: cpu_pct"


def test_a_window_on_a_metric_leaves_its_trend_out_of_the_servers_trend_alert(open_at_once, server):
    _window(starts_at=T0 - timedelta(hours=1), ends_at=T0 + timedelta(hours=1), metric="mem_pct")
    _trend_run(server, _trend("mem_pct", 8), _trend("cpu_pct", 20))
    assert Alert.objects.get().message == "ppdb001: cpu_pct trending to its critical limit 95.0"


def test_no_trend_alert_when_every_trending_metric_is_silenced(open_at_once, server):
    _window(starts_at=T0 - timedelta(hours=1), ends_at=T0 + timedelta(hours=1), metric="mem_pct")
    _trend_run(server, _trend("mem_pct", 8))
    assert not Alert.objects.exists()
