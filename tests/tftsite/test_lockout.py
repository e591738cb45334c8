"""Lockout after repeated failures (issue 27): wrong API keys per client address and per key prefix
(429 with Retry-After), wrong passwords on the admin and dashboard login forms per client address (a
clear message, and not even the right password is checked while locked out)."""

import time

import pytest
from django.core.cache import caches
from django.test import Client

from access.keys import named_keys
from access.services import api_key_create
from ingest.models import MetricRecord
from tests.conftest import TEST_API_KEY, make_record, post_feed

pytestmark = pytest.mark.django_db
PASSWORD = "a-right-password-for-tests-only"


@pytest.fixture(autouse=True)
def lockout_on(settings):
    named_keys.clear()
    caches["ratelimit"].clear()
    settings.TFT_API_KEY_MAX_FAILURES = 3
    settings.TFT_LOGIN_MAX_FAILURES = 3
    settings.TFT_LOCKOUT_WINDOW_SECONDS = 60
    settings.TFT_LOCKOUT_SECONDS = 120
    # The login pages need no collectstatic manifest, only {% static %} that resolves.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    yield settings
    named_keys.clear()
    caches["ratelimit"].clear()


def _feed(client, key, address="10.0.0.1"):
    return post_feed(client, {"records": [make_record()]}, HTTP_X_API_KEY=key, REMOTE_ADDR=address)


# --- API keys ----------------------------------------------------------------------------------------


def test_wrong_keys_lock_the_address_out_with_429_and_retry_after(anon_client):
    assert [_feed(anon_client, f"guess-{i}").status_code for i in range(3)] == [403, 403, 429]

    locked = _feed(anon_client, TEST_API_KEY)  # the (guessable) env key is refused too while locked out
    assert locked.status_code == 429 and locked.json()["error"] == "too_many_failed_keys"
    assert 100 <= int(locked["Retry-After"]) <= 120
    assert not MetricRecord.objects.exists()
    # Another address is not affected.
    assert _feed(anon_client, TEST_API_KEY, address="10.0.0.2").status_code == 200


def test_a_valid_named_key_is_never_locked_out(anon_client):
    _, raw = api_key_create(name="feeder")
    for i in range(4):
        _feed(anon_client, f"guess-{i}")

    assert _feed(anon_client, raw).status_code == 200  # 256-bit keys cannot be guessed


def test_wrong_keys_with_one_prefix_lock_that_prefix_out_from_any_address(anon_client):
    codes = [_feed(anon_client, f"tft_AAAAAA-{i}", address=f"10.0.1.{i}").status_code for i in range(3)]

    assert codes == [403, 403, 429]
    assert _feed(anon_client, "tft_AAAAAA-other", address="10.0.2.1").status_code == 429
    assert _feed(anon_client, "tft_BBBBBB-other", address="10.0.2.1").status_code == 403


def test_failures_outside_the_window_do_not_add_up(anon_client, lockout_on):
    lockout_on.TFT_LOCKOUT_WINDOW_SECONDS = 1
    for i in range(2):
        _feed(anon_client, f"guess-{i}")
    time.sleep(1.5)

    assert _feed(anon_client, "guess-late").status_code == 403


def test_the_lockout_can_be_turned_off(anon_client, lockout_on):
    lockout_on.TFT_API_KEY_MAX_FAILURES = 0

    assert {_feed(anon_client, f"guess-{i}").status_code for i in range(5)} == {403}


# --- Login forms -------------------------------------------------------------------------------------


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_user(username="op", password=PASSWORD, is_staff=True)


@pytest.mark.parametrize("path", ["/admin/login/", "/dashboard/login/"])
def test_wrong_passwords_lock_the_login_form_out(operator, path):
    client = Client(HTTP_HOST="localhost", REMOTE_ADDR="10.0.0.9")
    for _ in range(2):
        page = client.post(path, {"username": "op", "password": "wrong"})
        assert page.status_code == 200 and "Too many failed logins" not in page.content.decode()

    third = client.post(path, {"username": "op", "password": "wrong"})
    right = client.post(path, {"username": "op", "password": PASSWORD})

    assert "Too many failed logins from your address. Try again in 2 minutes." in third.content.decode()
    assert right.status_code == 200 and "Too many failed logins" in right.content.decode()
    assert "_auth_user_id" not in client.session
    other = Client(HTTP_HOST="localhost", REMOTE_ADDR="10.0.0.10")
    assert other.post(path, {"username": "op", "password": PASSWORD}).status_code == 302


def test_a_successful_login_clears_the_failures(operator):
    client = Client(HTTP_HOST="localhost", REMOTE_ADDR="10.0.0.9")
    for _ in range(2):
        client.post("/admin/login/", {"username": "op", "password": "wrong"})
    assert client.post("/admin/login/", {"username": "op", "password": PASSWORD}).status_code == 302
    client.logout()

    for _ in range(2):
        page = client.post("/admin/login/", {"username": "op", "password": "wrong"})
        assert "Too many failed logins" not in page.content.decode()
