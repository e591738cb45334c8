"""GET /autoscale/v1/peak: the number KEDA's metrics-api scaler reads."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from forecasting.models import ServerForecast
from forecasting.runs.chunks import fleet_predict
from tests.conftest import ingest_fleet

pytestmark = pytest.mark.django_db


@pytest.fixture
def run(no_models):
    ingest_fleet({"ppdb001": {"mem_pct": lambda i: 50.0 + i * 0.2}, "ppdb002": {}, "ppweb001": {}})
    run = fleet_predict()
    assert run is not None and run.status == "complete"
    return run


def _peak(name: str, metric: str, quantile: str, minutes: int) -> float:
    forecast = ServerForecast.objects.get(server__name=name)
    values = json.loads(forecast.payload)[metric][quantile]
    now, step = datetime.now(UTC), timedelta(minutes=5)
    return max(
        v
        for i, v in enumerate(values)
        if forecast.origin + i * step < now + timedelta(minutes=minutes) and forecast.origin + (i + 1) * step > now
    )


def test_one_servers_p90_peak_within_the_next_minutes(client, run):
    response = client.get("/autoscale/v1/peak", {"server": "ppdb001", "metric": "mem_pct", "minutes": 60})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["value"] == pytest.approx(_peak("ppdb001", "mem_pct", "p90", 60))
    assert body["servers"] == 1 and body["quantile"] == "0.9"


def test_a_groups_peaks_are_combined(client, run):
    peaks = [_peak(name, "mem_pct", "p50", 30) for name in ("ppdb001", "ppdb002")]
    top = client.get("/autoscale/v1/peak", {"profile": "database", "metric": "mem_pct", "quantile": "0.5"}).json()
    assert top["value"] == pytest.approx(max(peaks)) and top["servers"] == 2
    total = client.get(
        "/autoscale/v1/peak", {"profile": "database", "metric": "mem_pct", "quantile": "0.5", "aggregate": "sum"}
    ).json()
    assert total["value"] == pytest.approx(sum(peaks))


def test_bad_parameters_and_unknown_servers(client, run):
    assert client.get("/autoscale/v1/peak", {"metric": "temperature"}).status_code == 400
    assert client.get("/autoscale/v1/peak", {"minutes": 9999}).status_code == 400
    assert client.get("/autoscale/v1/peak", {"server": "nosuch001"}).status_code == 404
