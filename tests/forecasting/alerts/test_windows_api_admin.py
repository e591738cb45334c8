"""Maintenance windows through the API (a key that may feed is the write scope) and the admin
(permissions per action)."""

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from access.keys import named_keys
from access.services import api_key_create
from forecasting.models import MaintenanceWindow
from tests.conftest import TEST_API_KEY

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _plain_static_storage(settings):
    # The admin pages only need {% static %} to resolve, not collectstatic's manifest.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


def _iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def _body(**kwargs):
    now = datetime.now(UTC)
    return {"servers": "db-*, web01", "ends_at": _iso(now + timedelta(hours=2)), "reason": "kernel upgrade", **kwargs}


def _create(client, key=TEST_API_KEY, **kwargs):
    return client.post("/alerts/windows/create", _body(**kwargs), content_type="application/json", HTTP_X_API_KEY=key)


def test_a_write_key_creates_lists_and_ends_a_window(anon_client):
    created = _create(anon_client)
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["servers"] == "db-*,web01" and body["state"] == "active" and body["created_by"] == "env:TFT_API_KEY"

    listed = anon_client.get("/alerts/windows").json()
    assert [w["id"] for w in listed["windows"]] == [body["id"]]

    ended = anon_client.post(f"/alerts/windows/{body['id']}/end", HTTP_X_API_KEY=TEST_API_KEY)
    assert ended.status_code == 200 and ended.json()["state"] == "over"
    assert anon_client.get("/alerts/windows").json()["count"] == 0


def test_upcoming_windows_are_listed_as_upcoming(anon_client):
    now = datetime.now(UTC)
    _create(anon_client, starts_at=_iso(now + timedelta(hours=1)), ends_at=_iso(now + timedelta(hours=3)))
    assert [w["state"] for w in anon_client.get("/alerts/windows").json()["windows"]] == ["upcoming"]


def test_a_read_only_key_may_not_create_or_end(anon_client):
    _, raw = api_key_create(name="grafana", can_feed=False)
    named_keys.clear()
    assert _create(anon_client, key=raw).status_code == 403
    window = _create(anon_client).json()
    assert anon_client.post(f"/alerts/windows/{window['id']}/end", HTTP_X_API_KEY=raw).status_code == 403
    assert _create(anon_client, key="").status_code == 401
    assert MaintenanceWindow.objects.filter(ended_at__isnull=True).count() == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"servers": "db 01"}, "servers"),
        ({"metric": "load"}, "metric"),
        ({"ends_at": "2020-01-01T00:00:00Z"}, "ends_at"),
        ({"reason": ""}, "reason"),
        ({"starts_at": (datetime.now(UTC) - timedelta(days=2)).isoformat()}, "starts_at"),
        ({"ends_at": (datetime.now(UTC) + timedelta(days=400)).isoformat()}, "ends_at"),
    ],
)
def test_a_bad_window_is_a_400_naming_the_field_and_stores_nothing(anon_client, change, field):
    response = _create(anon_client, **change)
    assert response.status_code == 400 and field in response.content.decode()
    assert not MaintenanceWindow.objects.exists()


def test_ending_an_unknown_window_is_a_404(anon_client):
    assert anon_client.post("/alerts/windows/999/end", HTTP_X_API_KEY=TEST_API_KEY).status_code == 404


def test_the_window_endpoints_are_in_the_openapi_schema(anon_client):
    paths = anon_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"]
    assert {"/alerts/windows", "/alerts/windows/create", "/alerts/windows/{window_id}/end"} <= set(paths)


def _staff(django_user_model, *perms):
    user = django_user_model.objects.create_user(username="op", password="x", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=perms, content_type__app_label="forecasting"))
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    return client


def _admin_add(client):
    now = datetime.now(UTC).replace(microsecond=0)
    return client.post(
        "/admin/forecasting/maintenancewindow/add/",
        {
            "servers": "db-*",
            "metric": "",
            "starts_at_0": now.strftime("%Y-%m-%d"),
            "starts_at_1": now.strftime("%H:%M:%S"),
            "ends_at_0": (now + timedelta(hours=1)).strftime("%Y-%m-%d"),
            "ends_at_1": (now + timedelta(hours=1)).strftime("%H:%M:%S"),
            "reason": "disk swap",
        },
    )


def test_admin_add_needs_the_add_permission_and_records_who(django_user_model):
    assert _admin_add(_staff(django_user_model, "view_maintenancewindow")).status_code == 403
    MaintenanceWindow.objects.all().delete()
    django_user_model.objects.all().delete()
    response = _admin_add(_staff(django_user_model, "add_maintenancewindow", "view_maintenancewindow"))
    assert response.status_code == 302, response.content[:2000]
    assert MaintenanceWindow.objects.get().created_by == "op"


def test_admin_end_action_needs_the_change_permission(django_user_model):
    now = datetime.now(UTC)
    window = MaintenanceWindow.objects.create(
        servers="db-*", starts_at=now, ends_at=now + timedelta(hours=1), reason="r", created_by="t", created_at=now
    )
    viewer = _staff(django_user_model, "view_maintenancewindow")
    viewer.post("/admin/forecasting/maintenancewindow/", {"action": "end_now", "_selected_action": [window.pk]})
    window.refresh_from_db()
    assert window.ended_at is None
    django_user_model.objects.all().delete()
    operator = _staff(django_user_model, "view_maintenancewindow", "change_maintenancewindow")
    operator.post("/admin/forecasting/maintenancewindow/", {"action": "end_now", "_selected_action": [window.pk]})
    window.refresh_from_db()
    assert window.ended_at is not None
