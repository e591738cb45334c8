"""Dashboard fixtures: plain static storage (no collectstatic in tests), users, and fleets."""

import secrets

import pytest
from django.test import Client

from tests.conftest import ingest_fleet

# A fresh password each run: no fixed credentials anywhere, not even in tests.
STAFF_PASSWORD = secrets.token_urlsafe(16)


@pytest.fixture(autouse=True)
def _plain_static_storage(settings):
    # The manifest storage needs collectstatic's manifest; templates only need {% static %} to resolve.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def viewer(django_user_model):
    return django_user_model.objects.create_user(username="viewer", password=STAFF_PASSWORD)


@pytest.fixture
def staff(django_user_model):
    """An operator: staff with the permission to change alerts (acknowledge them)."""
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user(username="operator", password=STAFF_PASSWORD, is_staff=True)
    user.user_permissions.add(Permission.objects.get(content_type__app_label="forecasting", codename="change_alert"))
    return user


@pytest.fixture
def viewer_client(viewer) -> Client:
    client = Client(HTTP_HOST="localhost")
    client.force_login(viewer)
    return client


@pytest.fixture
def staff_client(staff) -> Client:
    client = Client(HTTP_HOST="localhost")
    client.force_login(staff)
    return client


def hot_fleet(n: int = 4, *, hot: int = 1, buckets: int = 160):
    """n servers, the first `hot` of them with CPU high enough to open alerts."""
    servers = {}
    for i in range(n):
        name = f"ppdb{i:03d}" if i % 2 == 0 else f"ppweb{i:03d}"
        servers[name] = {"cpu_pct": 97.0} if i < hot else {"cpu_pct": (lambda k, i=i: 30.0 + (k + i) % 12)}
    ingest_fleet(servers, buckets=buckets)
    return sorted(servers)
