"""The admin operators work in (issue 5, item 3): every model's list and the alert actions."""

import pytest

from forecasting.models import Alert, PredictionRun
from forecasting.runs.chunks import fleet_predict
from tests.dashboard.conftest import hot_fleet

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("model", ["ingest/server", "ingest/metricrecord", "ingest/metricbucket",
                                   "forecasting/modelversion", "forecasting/predictionrun",
                                   "forecasting/serverforecast", "forecasting/alert", "forecasting/alertthreshold"])
def test_admin_lists_render_with_a_run(admin_client, no_models, model):
    hot_fleet(3, hot=1)
    fleet_predict()

    response = admin_client.get(f"/admin/{model}/")

    assert response.status_code == 200


def test_alert_admin_filters_by_server_and_acknowledges(admin_client, admin_user, no_models):
    hot_fleet(3, hot=1)
    run = fleet_predict()
    alert = Alert.objects.filter(state="active").first()

    filtered = admin_client.get(f"/admin/forecasting/alert/?server__id__exact={alert.server_id}")
    assert filtered.status_code == 200 and alert.message in filtered.content.decode()
    response = admin_client.post("/admin/forecasting/alert/", {"action": "acknowledge", "_selected_action": [alert.pk]})

    assert response.status_code == 302
    alert.refresh_from_db()
    assert alert.state == "acknowledged" and alert.acknowledged_by == admin_user
    detail = admin_client.get(f"/admin/forecasting/predictionrun/{run.pk}/change/")
    assert detail.status_code == 200 and "durations" in detail.content.decode()
    assert PredictionRun.objects.count() == 1
