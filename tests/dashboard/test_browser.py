"""The dashboard in a real browser: Playwright for Python driving Debian's Chromium against a live
server with a stored run. Screenshots go to test-artifacts/ (gitignored).

Skipped only where /usr/bin/chromium is missing and CI is not set; in CI (.ci/run installs
Chromium) a missing browser fails the test instead of hiding it.
"""

import os
import re
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.db import connections

from forecasting.models import Alert, MaintenanceWindow
from forecasting.runs.chunks import fleet_predict
from tests.dashboard.conftest import STAFF_PASSWORD, hot_fleet

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"),
                       reason="needs Debian's chromium (apt-get install chromium); runs always in CI"),
]

# Counts the canvas pixels of each series colour: proof the chart drew data, not just an element.
PIXELS_JS = """(selector) => {
  const canvas = document.querySelector(selector + ' canvas');
  if (!canvas) return null;
  const {width, height} = canvas;
  const px = canvas.getContext('2d').getImageData(0, 0, width, height).data;
  let p50 = 0, history = 0, band = 0, critical = 0;
  for (let i = 0; i < px.length; i += 4) {
    const [r, g, b, a] = [px[i], px[i + 1], px[i + 2], px[i + 3]];
    if (a < 40) continue;
    if (r > 190 && g > 95 && g < 150 && b < 60 && a > 200) p50++;
    else if (r < 90 && g > 80 && g < 140 && b > 180) history++;
    else if (r > 200 && g < 80 && b < 80) critical++;
    else if (r > 200 && g > 100 && b < 60 && a < 120) band++;
  }
  return {width, height, p50, history, band, critical};
}"""


@pytest.fixture
def page(live_server, monkeypatch, staff):
    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes between
    # browser steps are plain synchronous code, so Django's async-safety guard must stand aside.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        # A timezone other than the server's UTC: times on the page must follow the browser.
        context = browser.new_context(viewport={"width": 1440, "height": 1000}, timezone_id="America/New_York")
        tab = context.new_page()
        tab.set_default_timeout(20_000)
        tab.goto(f"{live_server.url}/dashboard/")  # DEBUG is off in tests: this lands on the login page
        tab.screenshot(path=str(ARTIFACTS / "dashboard-login.png"))
        tab.fill("#id_username", "operator")
        tab.fill("#id_password", STAFF_PASSWORD)
        tab.click("button[type=submit]")
        tab.wait_for_url(re.compile(r"/dashboard/$"))
        try:
            yield tab
        finally:
            context.close()
            browser.close()


@contextmanager
def own_connection():
    """ORM calls made while Playwright's loop runs get a connection of their own (Django keys
    connections by context); close it in that same context, or dropping the test database at the
    end of the session finds it still in use."""
    try:
        yield
    finally:
        connections.close_all()


def test_fleet_page_shows_every_server_and_a_server_page_draws_its_fan_charts(page, live_server, no_models):
    with own_connection():
        names = hot_fleet(6, hot=2)
        fleet_predict()
        page.reload()

        listed = page.locator("#servers tr[data-server]").evaluate_all("rows => rows.map(r => r.dataset.server)")
        assert sorted(listed) == names
        # Sparklines carry real data: a polyline of many points inside the 120×24 box.
        points = page.locator("#servers svg.spark polyline").first.get_attribute("points").split()
        assert len(points) >= 30
        assert all(0 <= float(x) <= 120 and 0 <= float(y) <= 24 for x, y in (p.split(",") for p in points))
        assert page.locator("#heatmap td").count() == 4 * len(names)
        # Times follow the browser's timezone, not the server's UTC.
        assert "America/New_York" in page.locator("footer time").get_attribute("title")
        page.screenshot(path=str(ARTIFACTS / "dashboard-fleet.png"), full_page=True)

        # In-place refresh: a new run changes the polled signature and the page swaps its content.
        fleet_predict()
        page.evaluate("window.tftDashboard.poll()")
        page.wait_for_function("document.body.dataset.refreshedAt !== undefined")

        page.click(f'#servers tr[data-server="{listed[0]}"] a.server-link')
        page.wait_for_url(re.compile(rf"/dashboard/servers/{listed[0]}/$"))
        for metric in ("cpu_pct", "mem_pct", "disk_io_mb_s", "latency_ms"):
            page.wait_for_selector(f"#fan-{metric} canvas")
        pixels = page.evaluate(PIXELS_JS, "#fan-cpu_pct")
        assert pixels is not None and pixels["width"] > 300
        assert pixels["history"] > 100, pixels  # the 24 h history line
        assert pixels["p50"] > 50, pixels  # the median forecast line
        assert pixels["band"] > 200, pixels  # the p10–p90 fan
        assert pixels["critical"] > 50, pixels  # the critical threshold line
        assert int(page.locator("#fan-cpu_pct .chart").get_attribute("data-points")) > 96 + 100
        assert page.locator("#timeline span").count() >= 1
        page.screenshot(path=str(ARTIFACTS / "dashboard-server.png"), full_page=True)


def test_staff_acknowledges_an_alert_and_it_moves_to_acknowledged(page, live_server, no_models):
    with own_connection():
        hot_fleet(3, hot=1)
        fleet_predict()
        alert = Alert.objects.filter(state="active", server__name="ppdb000").order_by("pk").first()
        assert alert is not None

        page.goto(f"{live_server.url}/dashboard/alerts/")
        row = page.locator(f'tr[data-alert="{alert.pk}"]')
        assert row.get_attribute("data-state") == "active"
        page.screenshot(path=str(ARTIFACTS / "dashboard-alerts-active.png"), full_page=True)
        row.locator("button[data-ack]").click()
        page.wait_for_selector(".messages li")

        assert f"Alert {alert.pk} acknowledged." in page.locator(".messages").inner_text()
        assert page.locator(f'tr[data-alert="{alert.pk}"]').count() == 0  # gone from the active tab
        page.click('a[data-tab="acknowledged"]')
        page.wait_for_url(re.compile(r"state=acknowledged"))
        moved = page.locator(f'tr[data-alert="{alert.pk}"]')
        assert moved.get_attribute("data-state") == "acknowledged"
        assert "by operator" in moved.inner_text()
        alert.refresh_from_db()
        assert alert.state == "acknowledged" and alert.acknowledged_by.username == "operator"
        page.screenshot(path=str(ARTIFACTS / "dashboard-alerts-acknowledged.png"), full_page=True)


# Layout of a table row: each cell's content box (a Range over its nodes, so text that spills out of
# its cell counts where it is drawn), the cell's own box, and the Acknowledge button's.
ROW_BOXES_JS = """(row) => Array.from(row.cells).map((td) => {
  const range = document.createRange();
  range.selectNodeContents(td);
  const c = range.getBoundingClientRect(), b = td.getBoundingClientRect();
  return {text: td.innerText.trim().slice(0, 40), cell: [b.left, b.top, b.right, b.bottom],
          content: c.width && c.height ? [c.left, c.top, c.right, c.bottom] : null};
})"""


def _overlap(a, b, slack: float = 0.5) -> bool:
    return a[0] < b[2] - slack and b[0] < a[2] - slack and a[1] < b[3] - slack and b[1] < a[3] - slack


def _inside(inner, outer, slack: float = 1.0) -> bool:
    return (inner[0] >= outer[0] - slack and inner[1] >= outer[1] - slack and inner[2] <= outer[2] + slack
            and inner[3] <= outer[3] + slack)


def _alerts_page(page, live_server, *, width: int, height: int):
    hot_fleet(4, hot=2)
    fleet_predict()
    page.set_viewport_size({"width": width, "height": height})
    page.goto(f"{live_server.url}/dashboard/alerts/?state=all")
    page.wait_for_selector("table.alerts tr[data-alert]")
    return page.locator("table.alerts tr[data-alert]")


def test_alerts_rows_at_1280_px_have_no_overlapping_cells(page, live_server, no_models):
    with own_connection():
        rows = _alerts_page(page, live_server, width=1280, height=800)
        page.screenshot(path=str(ARTIFACTS / "dashboard-alerts-1280.png"), full_page=True)

        assert rows.count() >= 2
        for i in range(rows.count()):
            boxes = rows.nth(i).evaluate(ROW_BOXES_JS)
            filled = [b for b in boxes if b["content"]]
            for b in filled:
                assert _inside(b["content"], b["cell"]), f"{b['text']!r} spills out of its cell: {b}"
            for j, a in enumerate(filled):
                for b in filled[j + 1 :]:
                    assert not _overlap(a["content"], b["content"]), f"{a['text']!r} overlaps {b['text']!r}"


def test_acknowledge_button_is_inside_the_viewport_at_1280_px(page, live_server, no_models):
    with own_connection():
        _alerts_page(page, live_server, width=1280, height=800)

        button = page.locator("button[data-ack]").first
        box = button.bounding_box()
        viewport = page.evaluate("({w: window.innerWidth, h: window.innerHeight})")
        assert box is not None
        assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["w"], (box, viewport)
        assert box["y"] >= 0 and box["y"] + box["height"] <= viewport["h"], (box, viewport)
        # Not hidden behind the table box's own scroll either: the whole table fits its box.
        wrap = page.locator(".tablewrap").first.evaluate("el => [el.scrollWidth, el.clientWidth]")
        assert wrap[0] <= wrap[1], wrap


def test_alerts_page_on_a_phone_scrolls_the_table_not_the_page(page, live_server, no_models):
    with own_connection():
        _alerts_page(page, live_server, width=390, height=844)
        page.screenshot(path=str(ARTIFACTS / "dashboard-alerts-390.png"), full_page=True)

        widths = page.evaluate("({doc: document.documentElement.scrollWidth, view: window.innerWidth})")
        assert widths["doc"] <= widths["view"], widths
        wrap = page.locator(".tablewrap").first.evaluate(
            "el => ({scroll: el.scrollWidth, client: el.clientWidth, overflow: getComputedStyle(el).overflowX})"
        )
        assert wrap["scroll"] > wrap["client"] and wrap["overflow"] == "auto", wrap


@pytest.mark.parametrize("path", ["/dashboard/", "/dashboard/servers/ppdb000/"])
def test_fleet_and_server_pages_on_a_phone_do_not_scroll_sideways(page, live_server, no_models, path):
    with own_connection():
        hot_fleet(4, hot=2)
        fleet_predict()
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto(f"{live_server.url}{path}")
        page.wait_for_load_state("load")

        widths = page.evaluate("({doc: document.documentElement.scrollWidth, view: window.innerWidth})")
        assert widths["doc"] <= widths["view"], widths


def test_a_stale_forecast_is_drawn_from_its_origin_even_where_history_has_moved_on(page, live_server, no_models):
    with own_connection():
        from datetime import UTC, datetime, timedelta

        from tests.conftest import ingest_fleet

        ingest_fleet(["ppdb000"], end=datetime.now(UTC) - timedelta(hours=1))  # a backfill still loading
        fleet_predict()
        ingest_fleet(["ppdb000"], buckets=12)  # then it catches up: history now runs past the origin
        page.goto(f"{live_server.url}/dashboard/servers/ppdb000/")
        page.wait_for_selector("#fan-cpu_pct canvas")

        drawn = page.evaluate("""() => {
          const u = window.tftCharts.charts()[0], d = JSON.parse(document.getElementById('data-cpu_pct').textContent);
          const p50 = u.data[3].map((v, i) => [u.data[0][i], v]).filter(([, v]) => v !== null);
          return {first: p50[0][0], points: p50.length, origin: d.forecast_t0, steps: d.p50.length};
        }""")
        # Every forecast step is on the chart (plus the one context point it is joined to).
        assert drawn["points"] == drawn["steps"] + 1, drawn
        assert drawn["first"] == drawn["origin"] - 300, drawn
        assert page.locator("#forecast-origin [data-stale]").count() == 1
        page.screenshot(path=str(ARTIFACTS / "dashboard-server-stale.png"), full_page=True)


# Counts the canvas pixels tinted by the attention shading (charts.js: rgba(122,70,200,…) under the series).
SHADE_JS = """(selector) => {
  const canvas = document.querySelector(selector + ' canvas');
  const px = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let shaded = 0;
  for (let i = 0; i < px.length; i += 4) {
    const [r, g, b, a] = [px[i], px[i + 1], px[i + 2], px[i + 3]];
    if (a > 0 && b - g > 6 && r - g > 3 && b > r) shaded++;
  }
  return shaded;
}"""


def test_server_page_draws_the_input_importance_chart_and_shades_the_attention(page, live_server):
    # The committed default model forecasts; the hot server's forecast calls for alerts, so the
    # run explains it (forecasting.runs.chunks._explain_chunk).
    with own_connection():
        hot = hot_fleet(2, hot=1)[0]
        fleet_predict()
        page.goto(f"{live_server.url}/dashboard/servers/{hot}/")
        page.wait_for_selector("#importance-chart svg rect")

        bars = page.locator("#importance-chart svg rect.bar")
        widths = bars.evaluate_all("rs => rs.map(r => r.getBBox().width)")
        assert bars.count() >= 8 and max(widths) > 20, widths
        assert page.locator("#explanation-text").inner_text().startswith("driven by ")
        page.wait_for_selector("#fan-cpu_pct canvas")
        assert page.evaluate(SHADE_JS, "#fan-cpu_pct") > 500
        page.locator("#explanation").scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "dashboard-server-explanation.png"), full_page=True)


# --- Maintenance windows and the alert timeline (issue 23) ---------------------------------------


def _window(servers, *, start, hours=2, reason="kernel upgrade"):
    MaintenanceWindow.objects.create(servers=servers, starts_at=start, ends_at=start + timedelta(hours=hours),
                                     reason=reason, created_by="test", created_at=datetime.now(UTC))


def test_windows_page_lists_active_and_upcoming_windows_and_the_fleet_marks_silenced_servers(page, live_server,
                                                                                            no_models):
    with own_connection():
        names = hot_fleet(4, hot=0)
        now = datetime.now(UTC)
        _window("ppdb*", start=now - timedelta(minutes=30))
        _window("ppweb001", start=now + timedelta(hours=3), reason="disk swap")
        fleet_predict()

        page.goto(f"{live_server.url}/dashboard/windows/")
        active = page.locator("#windows-active tr[data-window]")
        upcoming = page.locator("#windows-upcoming tr[data-window]")
        assert active.count() == 1 and upcoming.count() == 1
        assert sorted(active.first.locator("a.server-link").all_inner_texts()) == [n for n in names if "db" in n]
        assert "disk swap" in upcoming.first.inner_text()
        page.screenshot(path=str(ARTIFACTS / "dashboard-windows.png"), full_page=True)

        page.goto(f"{live_server.url}/dashboard/")
        silenced = page.locator("#servers tr[data-server]:has([data-silenced])").evaluate_all(
            "rows => rows.map(r => r.dataset.server)")
        assert sorted(silenced) == [n for n in names if "db" in n]


@pytest.fixture
def _hysteresis_at_once(settings):
    settings.TFT_ALERT_OPEN_AFTER_CRITICAL = settings.TFT_ALERT_RESOLVE_AFTER_CRITICAL = 1


def test_server_page_shows_the_alert_timeline_with_the_forecast_that_raised_it(page, live_server, no_models,
                                                                               _hysteresis_at_once):
    with own_connection():
        names = hot_fleet(2, hot=1)
        fleet_predict()
        _window(names[0], start=datetime.now(UTC) - timedelta(minutes=1))
        fleet_predict()  # the window silences (resolves) the open alert

        page.goto(f"{live_server.url}/dashboard/servers/{names[0]}/")
        rows = page.locator("#alert-timeline tr[data-transition]")
        kinds = rows.evaluate_all("rows => rows.map(r => r.dataset.transition)")
        assert kinds[-1] == "opened" and "silenced" in kinds  # newest first
        assert re.search(rf"{names[0]}: \w+ p\d0 forecast peaks", rows.last.inner_text())
        page.screenshot(path=str(ARTIFACTS / "dashboard-timeline.png"), full_page=True)
def test_the_fleet_page_draws_the_probability_reliability_chart(page, live_server, no_models):
    from tests.dashboard.test_probability_panel import resolved_outcomes

    with own_connection():
        names = hot_fleet(2, hot=0)
        fleet_predict()
        resolved_outcomes(names[0])
        page.reload()

        chart = page.locator('#probability-reliability figure[data-window="8h"] svg')
        chart.wait_for()
        box = chart.bounding_box()
        assert box is not None and box["width"] > 200 and box["height"] > 200
        # Each bin is a drawn circle inside the plot, where it belongs: x the probability we gave, y 1 − what happened.
        circles = chart.locator("circle.bin")
        assert circles.count() == 2
        frame = chart.locator("rect.frame").bounding_box()
        dots = sorted((c.bounding_box() for c in circles.all()), key=lambda b: b["x"])
        centres = [((d["x"] + d["width"] / 2 - frame["x"]) / frame["width"],
                    1 - (d["y"] + d["height"] / 2 - frame["y"]) / frame["height"]) for d in dots]  # fmt: skip
        assert centres[0] == pytest.approx((0.02, 0.02), abs=0.02)
        assert centres[1] == pytest.approx((0.20, 0.18), abs=0.02)
        fill = circles.first.evaluate("c => getComputedStyle(c).fill")
        assert fill not in ("none", "rgba(0, 0, 0, 0)")
        text = page.locator('#probability-reliability figure[data-window="8h"]').inner_text()
        assert "Of the forecasts we gave 20 %, 18 % had an incident" in text
        page.screenshot(path=str(ARTIFACTS / "dashboard-probability-reliability.png"), full_page=True)
