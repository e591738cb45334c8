"""Dashboard pages over no data, a fleet warming up and a full stored run; access and acknowledging."""

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from forecasting.models import Alert, ServerForecast
from forecasting.runs.chunks import fleet_predict
from tests.conftest import ingest_fleet
from tests.dashboard.conftest import hot_fleet

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
PAGES = ("/dashboard/", "/dashboard/alerts/", "/dashboard/alerts/?state=all", "/dashboard/poll.json")


def _text(response) -> str:
    return response.content.decode()


# --- Fleet ------------------------------------------------------------------------------------------


def test_fleet_with_no_data_explains_how_to_feed(viewer_client):
    response = viewer_client.get("/dashboard/")

    assert response.status_code == 200
    body = _text(response)
    assert "No data yet" in body
    assert "POST /feed/data" in body
    assert "warmup 0/150 records" in body


def test_fleet_while_warming_up_shows_progress(viewer_client):
    ingest_fleet(["ppdb001", "ppweb002"], buckets=37)

    body = _text(viewer_client.get("/dashboard/"))

    assert 'id="warmup"' in body
    assert "Warming up: 0/2 servers ready" in body
    assert "37/150" in body
    assert "No forecast yet" in body
    assert "warmup 37/150 records" in body


def test_fleet_with_a_full_run_lists_every_server_riskiest_first(viewer_client, no_models):
    names = hot_fleet(5, hot=1)
    fleet_predict()

    body = _text(viewer_client.get("/dashboard/"))

    rows = re.findall(r'<tr data-server="([^"]+)">', body)
    assert sorted(rows) == names
    assert rows[0] == "ppdb000"  # the hot one
    assert 'id="heatmap"' in body and 'class="h4"' in body
    assert body.count("<polyline points=") == 5
    assert "heuristic" in body
    assert 'id="tile-ready">5 / 5<' in body
    assert "No data yet" not in body and 'id="warmup"' not in body


def test_fleet_tiles_lead_with_expected_incidents_not_the_saturating_fleet_probability(viewer_client, no_models):
    hot_fleet(5, hot=1)
    run = fleet_predict()
    expected_8h = run.environment["expected_incidents_8h"]

    body = _text(viewer_client.get("/dashboard/"))

    tile = re.search(r'id="tile-expected-8h".*?</div>\s*</div>', body, re.S).group(0)
    assert f"{expected_8h:.1f} <span class=\"of\">of 5</span>" in tile
    assert f"P(any server) {round(100 * run.environment['prob_8h'])}%" in tile
    assert 'id="tile-expected-30m"' in body


def test_a_refreshed_fleet_page_has_the_regions_the_script_swaps(viewer_client, no_models):
    hot_fleet(2)
    fleet_predict()

    body = _text(viewer_client.get("/dashboard/"))

    for region in ('id="content" data-refresh', 'id="nav-alerts" data-refresh', 'id="footer" data-refresh'):
        assert region in body
    assert 'data-poll-url="/dashboard/poll.json"' in body
    assert 'data-interval="60"' in body


def test_rows_built_outside_the_template_are_escaped(viewer_client, no_models):
    from ingest.models import Server

    hot_fleet(1, hot=1)
    fleet_predict()
    # Feed validation never lets such a name in; an admin edit could, and the page must not run it.
    Server.objects.update(name='<b>"x')

    body = _text(viewer_client.get("/dashboard/"))

    assert '<b>"x' not in body
    assert "&lt;b&gt;&quot;x" in body


# --- Forecast origin and staleness ----------------------------------------------------------------


def _fleet_with_one_backfilled_server() -> dict[str, ServerForecast]:
    """ppdb000 fed up to now, ppdb001 only up to an hour ago (a backfill still loading), one run."""
    now = datetime.now(UTC)
    ingest_fleet(["ppdb000"], end=now)
    ingest_fleet(["ppdb001"], end=now - timedelta(hours=1))
    fleet_predict()
    return {f.server.name: f for f in ServerForecast.objects.select_related("server")}


def _fleet_row(body: str, name: str) -> str:
    return re.search(rf'<tr data-server="{name}">(.*?)</tr>', body, re.S).group(1)


def test_fleet_rows_show_each_forecasts_origin(viewer_client, no_models):
    forecasts = _fleet_with_one_backfilled_server()

    body = _text(viewer_client.get("/dashboard/"))

    for name, forecast in forecasts.items():
        assert f'<time datetime="{forecast.origin.isoformat()}"' in _fleet_row(body, name)


def test_fleet_badges_only_the_forecast_older_than_the_stale_limit(viewer_client, no_models, settings):
    settings.TFT_STALE_AFTER_MINUTES = 15
    _fleet_with_one_backfilled_server()

    body = _text(viewer_client.get("/dashboard/"))

    assert "data-stale" in _fleet_row(body, "ppdb001")
    assert "data-stale" not in _fleet_row(body, "ppdb000")
    assert 'id="stale-note"' in body and "1 forecast starts more than 15 min in the past" in body


def test_the_stale_limit_follows_the_setting(viewer_client, no_models, settings):
    settings.TFT_STALE_AFTER_MINUTES = 120
    _fleet_with_one_backfilled_server()

    body = _text(viewer_client.get("/dashboard/"))

    assert "data-stale" not in body and 'id="stale-note"' not in body


def test_a_fresh_fleet_has_no_stale_badge(viewer_client, no_models):
    hot_fleet(3, hot=1)
    fleet_predict()

    body = _text(viewer_client.get("/dashboard/"))

    assert "data-stale" not in body and 'id="stale-note"' not in body


def test_forecasts_turn_stale_as_they_age_when_no_new_run_comes(no_models, settings):
    from dashboard.selectors import fleet_overview

    settings.TFT_STALE_AFTER_MINUTES = 15
    hot_fleet(2)
    fleet_predict()
    later = datetime.now(UTC) + timedelta(minutes=30)  # the worker stopped after this run

    fresh = fleet_overview(server_prefix="/dashboard/servers/")
    aged = fleet_overview(server_prefix="/dashboard/servers/", now=later)

    assert fresh["stale_rows"] == 0 and not any(r.stale for r in fresh["rows"])
    assert aged["stale_rows"] == 2 and all(r.stale for r in aged["rows"])


def test_server_page_marks_a_stale_forecast_and_names_its_origin(viewer_client, no_models, settings):
    settings.TFT_STALE_AFTER_MINUTES = 15
    origin = _fleet_with_one_backfilled_server()["ppdb001"].origin

    body = _text(viewer_client.get("/dashboard/servers/ppdb001/"))

    facts = re.search(r'<div id="forecast-origin">(.*?)</div>', body, re.S).group(1)
    assert f'<time datetime="{origin.isoformat()}">' in facts
    assert "data-stale" in facts
    assert 'id="stale-forecast"' in body


def test_server_page_of_a_fresh_forecast_is_not_marked_stale(viewer_client, no_models):
    _fleet_with_one_backfilled_server()

    body = _text(viewer_client.get("/dashboard/servers/ppdb000/"))

    assert 'id="forecast-origin"' in body
    assert "data-stale" not in body and 'id="stale-forecast"' not in body


def test_fan_chart_starts_at_the_origin_when_history_has_moved_past_it(viewer_client, no_models):
    origin = _fleet_with_one_backfilled_server()["ppdb001"].origin
    ingest_fleet(["ppdb001"], buckets=12)  # the backfill catches up after the run

    response = viewer_client.get("/dashboard/servers/ppdb001/")

    cpu = response.context["charts"][0].data
    assert cpu["history_t"][-1] > cpu["forecast_t0"] == int(origin.timestamp())
    assert cpu["stale"] is True and len(cpu["p50"]) == 96


# --- Server ----------------------------------------------------------------------------------------


def test_unknown_server_is_404(viewer_client):
    assert viewer_client.get("/dashboard/servers/nope/").status_code == 404


def test_server_warming_up_shows_history_and_progress(viewer_client):
    ingest_fleet(["ppdb001"], buckets=37)

    response = viewer_client.get("/dashboard/servers/ppdb001/")

    body = _text(response)
    assert response.status_code == 200
    assert "Warming up: 37/150 records" in body
    cpu = response.context["charts"][0].data
    assert cpu["metric"] == "cpu_pct" and len(cpu["history"]) == 37 and cpu["p50"] == []
    assert cpu["critical"] == 95.0  # absolute limits are known before any forecast


def test_server_with_a_run_has_four_fan_charts_timeline_and_alerts(viewer_client, no_models):
    hot_fleet(2, hot=1)
    fleet_predict()

    response = viewer_client.get("/dashboard/servers/ppdb000/")

    body = _text(response)
    assert response.status_code == 200
    for metric in ("cpu_pct", "mem_pct", "disk_io_mb_s", "latency_ms"):
        script = re.search(rf'<script id="data-{metric}" type="application/json">(.*?)</script>', body, re.S)
        data = json.loads(script.group(1))
        assert len(data["p10"]) == len(data["p50"]) == len(data["p90"]) == 96
        assert len(data["history"]) == len(data["history_t"]) > 100
        assert data["forecast_t0"] > data["history_t"][-1]
        assert data["warning"] is not None and data["critical"] is not None
    assert 'id="timeline"' in body and "st-healthy" in body
    assert "uPlot.iife.min.js" in body
    assert "ppdb000: cpu_pct p50 forecast peaks at" in body  # its alert


# --- Alerts ----------------------------------------------------------------------------------------


def test_alerts_page_with_no_alerts_explains_them(viewer_client):
    body = _text(viewer_client.get("/dashboard/alerts/"))

    assert "No alerts" in body
    assert "median reaches a warning or critical threshold" in body


def test_alerts_page_filters_by_state_severity_metric_and_server(viewer_client, no_models):
    hot_fleet(3, hot=1)
    fleet_predict()
    alert = Alert.objects.filter(server__name="ppdb000", severity="critical").get()

    active = _text(viewer_client.get("/dashboard/alerts/"))
    resolved = _text(viewer_client.get("/dashboard/alerts/?state=resolved"))
    warning_only = viewer_client.get("/dashboard/alerts/?state=all&severity=warning").context["alerts"]
    by_server = viewer_client.get("/dashboard/alerts/?state=all&server=ppweb").context["alerts"]
    by_metric = viewer_client.get("/dashboard/alerts/?state=all&metric=mem_pct").context["alerts"]

    assert f'data-alert="{alert.pk}"' in active
    assert f'data-alert="{alert.pk}"' not in resolved
    assert all(a.severity == "warning" for a in warning_only) and alert not in warning_only
    assert by_server == [] and by_metric == []
    assert "Acknowledge</button>" not in active  # a viewer is not staff


def test_staff_see_the_acknowledge_button(staff_client, no_models):
    hot_fleet(1, hot=1)
    fleet_predict()

    assert "Acknowledge</button>" in _text(staff_client.get("/dashboard/alerts/"))


# --- Access ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [*PAGES, "/dashboard/servers/ppdb001/"])
def test_login_is_required_when_debug_is_off(anon_client, settings, path):
    settings.DEBUG = False

    response = anon_client.get(path)

    if path.endswith(".json"):
        assert response.status_code == 401
    else:
        assert response.status_code == 302
        assert response["Location"].startswith("/dashboard/login/?next=")


def test_local_mode_needs_no_login_to_look(anon_client, settings):
    settings.DEBUG = True

    assert anon_client.get("/dashboard/").status_code == 200
    assert anon_client.get("/dashboard/alerts/").status_code == 200


def test_root_redirects_to_the_fleet(viewer_client):
    response = viewer_client.get("/")

    assert response.status_code == 302 and response["Location"] == "/dashboard/"


def test_login_page_logs_in_with_csrf(staff):
    from tests.dashboard.conftest import STAFF_PASSWORD

    client = Client(HTTP_HOST="localhost", enforce_csrf_checks=True)
    page = client.get("/dashboard/login/?next=/dashboard/alerts/")
    token = page.cookies["csrftoken"].value

    assert page.status_code == 200 and "Log in to tftsite" in _text(page)
    assert "createsuperuser" in _text(page)
    response = client.post("/dashboard/login/", {"username": "operator", "password": STAFF_PASSWORD,
                                                 "next": "/dashboard/alerts/", "csrfmiddlewaretoken": token})
    assert response.status_code == 302 and response["Location"] == "/dashboard/alerts/"
    assert client.get("/dashboard/").status_code == 200


def test_logout_is_a_post_back_to_the_login_page(viewer_client):
    assert 'action="/dashboard/logout/"' in _text(viewer_client.get("/dashboard/"))

    response = viewer_client.post("/dashboard/logout/")

    assert response.status_code == 302 and response["Location"] == "/dashboard/login/"
    assert viewer_client.get("/dashboard/").status_code == 302


def test_wrong_password_stays_on_the_login_page(staff, anon_client):
    response = anon_client.post("/dashboard/login/", {"username": "operator", "password": "wrong"})

    assert response.status_code == 200
    assert "errorlist" in _text(response)


# --- Acknowledge -------------------------------------------------------------------------------------


@pytest.fixture
def active_alert(no_models):
    hot_fleet(1, hot=1)
    fleet_predict()
    return Alert.objects.filter(state="active").first()


def test_acknowledge_needs_staff(viewer_client, active_alert):
    response = viewer_client.post(f"/dashboard/alerts/{active_alert.pk}/acknowledge")

    assert response.status_code == 403
    active_alert.refresh_from_db()
    assert active_alert.state == "active"


def test_acknowledge_needs_the_change_alert_permission(django_user_model, active_alert):
    # Staff without the permission to change alerts: no button, and a 403 if posted anyway.
    user = django_user_model.objects.create_user(username="onlooker", is_staff=True)
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)

    assert "Acknowledge</button>" not in _text(client.get("/dashboard/alerts/"))
    assert client.post(f"/dashboard/alerts/{active_alert.pk}/acknowledge").status_code == 403
    active_alert.refresh_from_db()
    assert active_alert.state == "active"


def test_acknowledge_needs_staff_even_in_local_mode(anon_client, settings, active_alert):
    settings.DEBUG = True

    assert anon_client.post(f"/dashboard/alerts/{active_alert.pk}/acknowledge").status_code == 403


def test_acknowledge_needs_the_csrf_token(staff, active_alert):
    client = Client(HTTP_HOST="localhost", enforce_csrf_checks=True)
    client.force_login(staff)

    response = client.post(f"/dashboard/alerts/{active_alert.pk}/acknowledge")

    assert response.status_code == 403
    active_alert.refresh_from_db()
    assert active_alert.state == "active"


def test_staff_acknowledges_with_csrf_through_the_service(staff, active_alert):
    client = Client(HTTP_HOST="localhost", enforce_csrf_checks=True)
    client.force_login(staff)
    token = client.get("/dashboard/alerts/").cookies["csrftoken"].value

    response = client.post(f"/dashboard/alerts/{active_alert.pk}/acknowledge",
                           {"csrfmiddlewaretoken": token, "next": "/dashboard/alerts/?state=acknowledged"})

    assert response.status_code == 302 and response["Location"] == "/dashboard/alerts/?state=acknowledged"
    active_alert.refresh_from_db()
    assert active_alert.state == "acknowledged"
    assert active_alert.acknowledged_by == staff and active_alert.acknowledged_at is not None
    page = _text(client.get("/dashboard/alerts/?state=acknowledged"))
    assert f'data-alert="{active_alert.pk}" data-state="acknowledged"' in page
    assert f"Alert {active_alert.pk} acknowledged." in page
    # Twice is harmless: the service's compare-and-swap says it was not active any more.
    again = client.post(f"/dashboard/alerts/{active_alert.pk}/acknowledge", {"csrfmiddlewaretoken": token})
    assert again.status_code == 302
    assert "was not active" in _text(client.get(again["Location"]))


def test_acknowledge_never_redirects_off_site(staff_client, active_alert):
    response = staff_client.post(f"/dashboard/alerts/{active_alert.pk}/acknowledge", {"next": "https://evil.example/"})

    assert response["Location"] == "/dashboard/alerts/"


def test_acknowledge_is_post_only(staff_client, active_alert):
    assert staff_client.get(f"/dashboard/alerts/{active_alert.pk}/acknowledge").status_code == 405


# --- Poll endpoint ---------------------------------------------------------------------------------


def test_poll_signature_changes_when_a_run_completes(viewer_client, no_models):
    hot_fleet(2)
    before = viewer_client.get("/dashboard/poll.json").json()
    fleet_predict()
    after = viewer_client.get("/dashboard/poll.json").json()

    assert before["run_id"] is None and after["run_id"] is not None
    assert after["servers_ready"] == after["servers_tracked"] == 2
    assert after["interval_seconds"] == 60


# --- Speed: a bounded number of queries whatever the fleet size ----------------------------------


def _queries(client, path) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(path)
    assert response.status_code == 200, path
    return len(ctx.captured_queries)


def test_query_count_does_not_grow_with_servers(viewer_client, no_models, django_assert_max_num_queries):
    paths = (*PAGES, "/dashboard/servers/ppdb000/")
    hot_fleet(2, hot=1)
    fleet_predict()
    small = {path: _queries(viewer_client, path) for path in paths}

    hot_fleet(24, hot=6)
    fleet_predict()
    large = {path: _queries(viewer_client, path) for path in paths}

    assert large == small
    # A fixed budget per page: the server page reads its forecast, history, alerts and the live
    # accuracy sums (24 h and 7 d) and when its incident alert opens (its usual P and own incident
    # rate: scoring.selectors.server_incident_rule); the fleet page adds the open-alert counts of its health tile, the
    # maintenance windows and servers in state maintenance, and the live probability reliability —
    # none of it per server; and each page first looks for pending ingest increments to fold (one
    # query when there are none: ingest.services.records_fold). The fleet page's table is two queries
    # on every view (its page of rows and its counts, dashboard.selectors._ranked_page).
    for path in paths:
        with django_assert_max_num_queries(17):
            viewer_client.get(path)
