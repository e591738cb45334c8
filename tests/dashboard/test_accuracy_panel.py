"""The dashboard's live accuracy: a line under each fan chart and the fleet panel."""

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from dashboard.selectors import accuracy_line, band_accuracy_line, blend_line, fleet_overview, server_detail
from forecasting.models import ForecastScore, ServerForecast
from forecasting.runs.chunks import fleet_predict
from ingest.models import Server
from tests.conftest import ingest_fleet
from tests.forecasting.scoring.test_accuracy_api import scored_fleet  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db


def test_server_page_has_an_accuracy_line_under_the_cpu_chart(scored_fleet):  # noqa: F811
    charts = {chart.metric: chart for chart in server_detail(name="ppdb001")["charts"]}

    assert "× naive" in charts["cpu_pct"].accuracy and "inside the 80% band" in charts["cpu_pct"].accuracy


def test_fleet_page_has_the_fleet_accuracy_sentence(scored_fleet):  # noqa: F811
    assert "inside the 80% band" in fleet_overview(server_prefix="/dashboard/servers/")["accuracy"]


def test_accuracy_line_reads_mase_ratio_and_coverage():
    line = accuracy_line({"mase": 0.8, "mase_vs_naive": 0.8, "coverage_80": 0.79, "n": 1152})

    assert line == "last 24 h: MASE 0.80, 0.80 × naive, 79% inside the 80% band (1,152 targets)"


def test_accuracy_line_says_when_nothing_is_scored_yet():
    assert "no forecast scored yet" in accuracy_line({"n": 0})


def test_fleet_panel_breaks_the_accuracy_down_by_horizon_band(scored_fleet):  # noqa: F811
    bands = fleet_overview(server_prefix="/dashboard/servers/")["accuracy_bands"]

    assert bands.startswith("0–30 min: ") and "× naive" in bands.split(" · ")[0]
    assert "2–8 h: not scored yet" in bands  # the forecast was made 1 h ago: its 2–8 h band is not observed


def test_band_line_reads_each_band_or_says_it_is_not_scored_yet():
    line = band_accuracy_line({
        "0-30m": {"mase_vs_naive": 1.11, "coverage_80": 0.69, "n": 2400},
        "30m-2h": {"n": 0},
    })

    assert line == "0–30 min: 1.11 × naive, 69% inside · 30 min–2 h: not scored yet"


def test_band_line_puts_the_raw_tfts_ratio_beside_the_served_one():
    line = band_accuracy_line({"0-30m": {"mase_vs_naive": 0.98, "coverage_80": 0.8, "n": 60,
                                         "raw": {"mase_vs_naive": 1.3, "n": 60}}})  # fmt: skip

    assert line == "0–30 min: 0.98 × naive (raw TFT 1.30 × naive), 80% inside"


def test_blend_line_reads_the_weights_of_each_band():
    line = blend_line({"model": [0.62, 0.9, 1.0], "last_value": [0.38, 0.1, 0.0]})

    assert line == "0–30 min: 62% TFT, 38% last value · 30 min–2 h: 90% TFT, 10% last value · 2–8 h: 100% TFT, 0% last value"


def _scores(name: str, kind: str, abs_err: float) -> None:
    """24 h of cpu_pct scores at 0-30m: 60 targets, naive error 60."""
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    ForecastScore.objects.create(server=Server.objects.get(name=name), metric="cpu_pct", band="0-30m", hour=hour,
                                 n=60, abs_err=abs_err, naive_abs_err=60.0, scale=30.0, inside=48, kind=kind,
                                 model_name="tft_model_x")  # fmt: skip


def _text(response) -> str:
    assert response.status_code == 200
    return response.content.decode()


def test_server_page_shows_the_served_and_the_raw_tfts_ratio_per_band(viewer_client, no_models):
    ingest_fleet(["ppdb001"])
    fleet_predict()
    _scores("ppdb001", "served", 54.0)
    _scores("ppdb001", "raw", 78.0)

    body = _text(viewer_client.get("/dashboard/servers/ppdb001/"))

    line = re.search(r'id="accuracy-bands-cpu_pct">(.*?)</p>', body, re.S).group(1)
    assert "0–30 min: 0.90 × naive (raw TFT 1.30 × naive), 80% inside" in line


def test_fleet_page_shows_the_served_and_the_raw_tfts_ratio_per_band(viewer_client, no_models):
    ingest_fleet(["ppdb001"])
    fleet_predict()
    _scores("ppdb001", "served", 54.0)
    _scores("ppdb001", "raw", 78.0)

    body = _text(viewer_client.get("/dashboard/"))

    line = re.search(r'id="accuracy-bands">(.*?)</p>', body, re.S).group(1)
    assert "0–30 min: 0.90 × naive (raw TFT 1.30 × naive), 80% inside" in line


def test_server_page_shows_the_blend_weights_in_force(viewer_client):
    ingest_fleet(["ppdb001"])
    fleet_predict()  # the committed model, its folder's blend.json
    blend = json.loads(ServerForecast.objects.get().payload)["mem_pct"]["blend"]

    body = _text(viewer_client.get("/dashboard/servers/ppdb001/"))

    line = re.search(r'id="blend-mem_pct">(.*?)</p>', body, re.S).group(1)
    assert f"0–30 min: {round(100 * blend['model'][0])}% TFT, {round(100 * blend['last_value'][0])}% last value" in line
    assert blend["model"][0] < 1.0  # the fitted blend leans on the last value somewhere: the line is not trivial
