"""docs/grafana/tftsite.json: every query the dashboard sends is one the read API answers with data."""

import json
from pathlib import Path

import pytest

from forecasting.runs.chunks import fleet_predict
from tests.conftest import ingest_fleet

pytestmark = pytest.mark.django_db
DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "tftsite.json"


def test_every_panel_query_returns_series(client, no_models):
    ingest_fleet(["ppdb001"])
    run = fleet_predict()
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {"$server": "ppdb001", "$metric": "cpu_pct"}
    start, end = run.finished_at.timestamp() - 6 * 3600, run.finished_at.timestamp() + 8 * 3600
    queries = [t for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(queries) >= 6
    for target in queries:
        expr = target["expr"]
        for name, value in variables.items():
            expr = expr.replace(name, value)
        if target.get("instant"):
            response = client.get("/prometheus/api/v1/query", {"query": expr, "time": run.finished_at.timestamp()})
        else:
            response = client.get(
                "/prometheus/api/v1/query_range", {"query": expr, "start": start, "end": end, "step": "300"}
            )
        assert response.status_code == 200, (expr, response.content)
        assert response.json()["data"]["result"], expr
    server_variable = next(v for v in dashboard["templating"]["list"] if v["name"] == "server")
    assert server_variable["definition"] == "label_values(tft_forecast, server_name)"
    values = client.get("/prometheus/api/v1/label/server_name/values", {"match[]": "tft_forecast"}).json()["data"]
    assert values == ["ppdb001"]
