"""The dashboard's live accuracy: a line under each fan chart and the fleet panel."""

import pytest

from dashboard.selectors import accuracy_line, band_accuracy_line, fleet_overview, server_detail
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
