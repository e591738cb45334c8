"""Alert push delivery (issue 27): a redirect or an error is never counted as delivered, a URL that is
not absolute http(s) fails loudly (at start-up, and per delivery with a clear error), and webhook
tokens never reach the logs or last_error. Against a real local HTTP receiver."""

import logging
import subprocess
import sys

import pytest

from forecasting.alerts.push import AlertPushError, alert_notification_deliver, alert_notifications_pending_push
from forecasting.models import AlertNotification
from forecasting.runs.chunks import fleet_predict
from tests.conftest import ingest_fleet

pytestmark = pytest.mark.django_db

TOKEN = "T0KEN-b1c2d3"


@pytest.fixture
def notification(settings, receiver, no_models, django_capture_on_commit_callbacks):
    settings.TFT_ALERT_WEBHOOK_URLS = [f"{receiver.url}/hook"]
    settings.TFT_ALERTMANAGER_URL = ""
    settings.TFT_ALERT_PUSH_TIMEOUT_SECONDS = 5
    ingest_fleet({"ppdb001": {"mem_pct": lambda i: 60.0 + i * 0.2}})
    with django_capture_on_commit_callbacks(execute=False):
        fleet_predict()
    return AlertNotification.objects.filter(transition="firing").order_by("pk").first()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_not_followed_and_not_delivered(notification, receiver, status):
    receiver.redirect["/hook"] = (status, f"{receiver.url}/landing")

    with pytest.raises(AlertPushError, match=f"HTTP {status}"):
        alert_notification_deliver(notification_id=notification.pk)

    notification.refresh_from_db()
    assert receiver.gets == []  # the POST was not turned into a GET
    assert notification.delivered_at is None and notification.delivered_targets == []
    assert "redirect" in notification.last_error and notification.claimed_until is None  # free to retry
    # Once the receiver answers 2xx itself, the retry delivers.
    del receiver.redirect["/hook"]
    assert alert_notification_deliver(notification_id=notification.pk) is True


def test_an_error_status_is_not_delivered_and_says_why(notification, receiver):
    receiver.fail["/hook"] = 1

    with pytest.raises(AlertPushError, match="HTTP 500"):
        alert_notification_deliver(notification_id=notification.pk)

    notification.refresh_from_db()
    assert notification.delivered_at is None and "HTTP 500" in notification.last_error


def test_a_url_without_a_scheme_fails_each_delivery_clearly_and_stays_pending(notification, settings, monkeypatch):
    settings.TFT_ALERT_WEBHOOK_URLS = ["hooks.example.com/services/x"]

    with pytest.raises(AlertPushError, match="must start with http:// or https://"):
        alert_notification_deliver(notification_id=notification.pk)

    notification.refresh_from_db()
    assert notification.delivered_at is None and notification.claimed_until is None
    assert "http://" in notification.last_error
    # Unclaimed and undelivered: the sweeper re-enqueues it (the task's retries are for AlertPushError).
    enqueued = []
    monkeypatch.setattr("forecasting.alerts.push._enqueue", enqueued.extend)
    assert alert_notifications_pending_push(min_age_seconds=0) >= 1 and notification.pk in enqueued


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TFT_ALERT_WEBHOOK_URLS", f"https://ok.example/h,hooks.example.com/{TOKEN}"),
        ("TFT_ALERTMANAGER_URL", f"alertmanager:9093/{TOKEN}"),
        ("TFT_ALERT_WEBHOOK_URLS", f"ftp://files.example/{TOKEN}"),
    ],
)
def test_settings_refuse_a_push_url_that_is_not_http_and_do_not_echo_its_token(name, value):
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "tftsite.settings", name: value}
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], env=env, capture_output=True, text=True, timeout=60
    )

    assert result.returncode != 0
    assert "ConfigError" in result.stderr and name in result.stderr and "http://" in result.stderr
    assert TOKEN not in result.stderr


def test_webhook_tokens_are_not_logged_or_stored_in_errors(notification, receiver, settings, caplog):
    settings.TFT_ALERT_WEBHOOK_URLS = [f"{receiver.url}/hook/services/{TOKEN}?token={TOKEN}"]
    receiver.fail["/hook"] = 1

    with caplog.at_level(logging.DEBUG), pytest.raises(AlertPushError) as raised:
        alert_notification_deliver(notification_id=notification.pk)
    notification.refresh_from_db()
    assert "HTTP 500" in notification.last_error and TOKEN not in notification.last_error
    with caplog.at_level(logging.DEBUG):
        assert alert_notification_deliver(notification_id=notification.pk) is True

    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "alert push failed" in logged and f"127.0.0.1:{receiver.port}" in str(raised.value)
    assert TOKEN not in logged and TOKEN not in str(raised.value)
    assert receiver.ok("/hook/services/")  # the token still reaches the receiver itself
