"""Least privilege in the admin (issue 27): every admin action is behind the model permission it
changes. For each action, a staff user who may only *view* the model is refused (the action is not
offered and posting it changes nothing), and one who holds the permission gets it done."""

from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from access.models import ApiKey
from access.services import api_key_create
from forecasting.models import Alert, ModelVersion, TrainingRun
from forecasting.runs.chunks import fleet_predict
from tests.dashboard.conftest import hot_fleet

pytestmark = pytest.mark.django_db


def _staff_client(django_user_model, *codenames: str) -> Client:
    user = django_user_model.objects.create_user(username="staffer", is_staff=True)
    for codename in codenames:
        app, name = codename.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app, codename=name))
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    return client


def _act(client: Client, model: str, action: str, pks: list[int]):
    return client.post(f"/admin/{model}/", {"action": action, "_selected_action": pks})


def _offered(client: Client, model: str) -> set[str]:
    response = client.get(f"/admin/{model}/")
    assert response.status_code == 200
    form = response.context["action_form"]  # None when no action at all is offered
    return {value for value, _ in form.fields["action"].choices if value} if form else set()


# --- API keys --------------------------------------------------------------------------------------


def test_a_staff_user_without_permissions_cannot_open_the_api_key_list(django_user_model):
    client = _staff_client(django_user_model)

    assert client.get("/admin/access/apikey/").status_code == 403
    assert client.get("/admin/forecasting/modelversion/").status_code == 403  # as before


def test_revoking_keys_needs_the_change_permission(django_user_model):
    key, _ = api_key_create(name="feeder", can_feed=True, can_read=False)
    client = _staff_client(django_user_model, "access.view_apikey")

    assert "revoke" not in _offered(client, "access/apikey")
    _act(client, "access/apikey", "revoke", [key.pk])

    assert ApiKey.objects.get(pk=key.pk).is_active


def test_a_user_with_the_change_permission_revokes_keys(django_user_model):
    key, _ = api_key_create(name="feeder", can_feed=True, can_read=False)
    client = _staff_client(django_user_model, "access.view_apikey", "access.change_apikey")

    assert "revoke" in _offered(client, "access/apikey")
    assert _act(client, "access/apikey", "revoke", [key.pk]).status_code == 302

    assert not ApiKey.objects.get(pk=key.pk).is_active


# --- Model versions: activate, train, compare --------------------------------------------------------


@pytest.fixture
def version(tmp_path):
    return ModelVersion.objects.create(name="tft-test", path=str(tmp_path), created_at=datetime.now(UTC), valid=True)


def test_activating_a_model_needs_the_change_permission(django_user_model, version):
    client = _staff_client(django_user_model, "forecasting.view_modelversion", "forecasting.add_trainingrun")

    assert "activate" not in _offered(client, "forecasting/modelversion")
    _act(client, "forecasting/modelversion", "activate", [version.pk])

    assert not ModelVersion.objects.get(pk=version.pk).is_active


def test_a_user_with_the_change_permission_activates_a_model(django_user_model, version):
    client = _staff_client(django_user_model, "forecasting.view_modelversion", "forecasting.change_modelversion")

    assert _act(client, "forecasting/modelversion", "activate", [version.pk]).status_code == 302

    assert ModelVersion.objects.get(pk=version.pk).is_active


@pytest.mark.parametrize("action", ["train_now", "compare"])
def test_training_needs_the_add_training_run_permission(django_user_model, version, action):
    client = _staff_client(django_user_model, "forecasting.view_modelversion", "forecasting.change_modelversion")

    assert action not in _offered(client, "forecasting/modelversion")
    _act(client, "forecasting/modelversion", action, [version.pk])

    assert not TrainingRun.objects.exists()


@pytest.mark.parametrize("action", ["train_now", "compare"])
def test_a_user_with_the_add_training_run_permission_queues_training(django_user_model, version, action):
    client = _staff_client(django_user_model, "forecasting.view_modelversion", "forecasting.add_trainingrun")

    assert _act(client, "forecasting/modelversion", action, [version.pk]).status_code == 302

    assert TrainingRun.objects.count() == 1


# --- Alerts: acknowledge, resolve --------------------------------------------------------------------


@pytest.fixture
def alert(no_models):
    hot_fleet(1, hot=1)
    fleet_predict()
    return Alert.objects.filter(state="active").first()


@pytest.mark.parametrize("action", ["acknowledge", "resolve"])
def test_alert_transitions_need_the_change_permission(django_user_model, alert, action):
    client = _staff_client(django_user_model, "forecasting.view_alert")

    assert action not in _offered(client, "forecasting/alert")
    _act(client, "forecasting/alert", action, [alert.pk])

    assert Alert.objects.get(pk=alert.pk).state == "active"


@pytest.mark.parametrize(("action", "state"), [("acknowledge", "acknowledged"), ("resolve", "resolved")])
def test_a_user_with_the_change_permission_transitions_alerts(django_user_model, alert, action, state):
    client = _staff_client(django_user_model, "forecasting.view_alert", "forecasting.change_alert")

    assert _act(client, "forecasting/alert", action, [alert.pk]).status_code == 302

    assert Alert.objects.get(pk=alert.pk).state == state
