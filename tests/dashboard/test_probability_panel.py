"""The fleet page's incident-probability panel (reliability diagrams) and a fleet health that never
contradicts the open alerts."""

import re
from datetime import UTC, datetime, timedelta

import pytest

from forecasting.models import Alert, ProbabilityOutcome
from forecasting.runs.chunks import fleet_predict
from ingest.models import Server
from tests.dashboard.conftest import hot_fleet

pytestmark = pytest.mark.django_db


def _text(response) -> str:
    assert response.status_code == 200
    return response.content.decode()


def resolved_outcomes(server_name: str) -> None:
    """8-hour outcomes: 50 served at 0.2 of which 9 had an incident, 150 at 0.02 with 3."""
    server = Server.objects.get(name=server_name)
    now = datetime.now(UTC)
    rows = []
    for k in range(200):
        p, incident = (0.2, k < 9) if k < 50 else (0.02, k < 53)
        rows.append(ProbabilityOutcome(server=server, window="8h", origin=now - timedelta(hours=9, minutes=5 * k),
                                       profile=server.profile, prob_prior=p, prob_served=p, critical=[90, 95, 500, 200],
                                       incident=incident, created_at=now, resolved_at=now))  # fmt: skip
    ProbabilityOutcome.objects.bulk_create(rows)


def test_the_reliability_chart_plots_what_we_forecast_against_what_happened(viewer_client, no_models):
    names = hot_fleet(2, hot=0)
    fleet_predict()
    resolved_outcomes(names[0])

    body = _text(viewer_client.get("/dashboard/"))

    panel = re.search(r'<figure class="reliability" data-window="8h".*?</figure>', body, re.S).group(0)
    assert 'data-outcomes="200"' in panel
    circles = dict(re.findall(r'<circle cx="([\d.]+)" cy="([\d.]+)"', panel))
    assert circles == {"2.0": "98.0", "20.0": "82.0"}  # (gave 2 %, had 2 %), (gave 20 %, had 18 %)
    assert "Of the forecasts we gave 20 %, 18 % had an incident" in panel
    assert "Brier skill" in panel and "AUC" in panel
    thirty = re.search(r'<figure class="reliability" data-window="30m".*?</figure>', body, re.S).group(0)
    assert "No window has passed yet" in thirty and "<circle" not in thirty


def test_fleet_health_is_never_healthy_beside_an_open_critical_alert(viewer_client, no_models):
    hot_fleet(3, hot=0)
    run = fleet_predict()
    assert run.environment["fleet_health"] == "healthy"
    # An alert opened since the run (or one the run's rule did not see): the tile follows it.
    Alert.objects.create(server=Server.objects.first(), metric="cpu_pct", severity="critical", state="active",
                         rule="p50_critical", predicted_value=99, threshold=95, steps_ahead=3, minutes_ahead=15, message="x",
                         opened_at=datetime.now(UTC), updated_at=datetime.now(UTC), first_run=run, last_run=run)  # fmt: skip

    body = _text(viewer_client.get("/dashboard/"))

    assert re.search(r'id="tile-health"><span class="pill critical">critical<', body)


def test_a_run_counts_open_alerts_into_fleet_health(no_models):
    hot_fleet(4, hot=1)

    run = fleet_predict()

    severities = set(Alert.objects.filter(state="active").values_list("severity", flat=True))
    assert severities  # the hot server raised at least one alert
    assert run.environment["fleet_health"] == ("critical" if "critical" in severities else "warning")


def test_the_server_page_shows_its_own_incident_history(viewer_client, no_models):
    import numpy as np

    from forecasting.scoring.probabilities import incident_histories_add

    names = hot_fleet(1, hot=0)
    fleet_predict()
    server = Server.objects.get(name=names[0])
    assert "none resolved yet" in _text(viewer_client.get(f"/dashboard/servers/{names[0]}/"))
    incident_histories_add(server_ids=np.array([server.pk] * 48), windows=["8h"] * 48,
                           incident=np.arange(48) < 6, now=datetime.now(UTC))  # fmt: skip

    body = _text(viewer_client.get(f"/dashboard/servers/{names[0]}/"))

    assert re.search(r'id="incident-history".*8 h: 12 % of 4 h of windows', body)


def test_the_server_page_says_when_its_incident_alert_opens(viewer_client, no_models):
    names = hot_fleet(1, hot=0)
    fleet_predict()
    server = Server.objects.get(name=names[0])
    assert re.search(r'id="incident-rule".*not yet: learning its usual P\(8 h\), 0\.\d of 6 h kept',
                     _text(viewer_client.get(f"/dashboard/servers/{names[0]}/")))  # fmt: skip
    now = datetime.now(UTC)
    ProbabilityOutcome.objects.all().delete()  # the run's own kept P: six hours of 20 % instead
    ProbabilityOutcome.objects.bulk_create(
        ProbabilityOutcome(server=server, window="8h", origin=now - timedelta(minutes=5 * (k + 1)),
                           profile=server.profile, prob_prior=0.2, prob_served=0.1, critical=[90, 95, 500, 200],
                           created_at=now)
        for k in range(72)
    )  # fmt: skip

    body = _text(viewer_client.get(f"/dashboard/servers/{names[0]}/"))

    assert re.search(r"id=\"incident-rule\".*opens at P\(8 h\) ≥ 60 % \(3 × its usual 20 %; the event model", body)
