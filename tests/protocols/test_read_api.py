"""The Prometheus-compatible read API under /prometheus: history from the rollups, the current
forecast at its future timestamps, Prometheus' response and error shapes."""

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client

from forecasting.models import ServerForecast
from forecasting.runs.chunks import fleet_predict
from ingest.models import MetricBucket
from tests.conftest import TEST_API_KEY, ingest_fleet

pytestmark = pytest.mark.django_db
API = "/prometheus/api/v1"


@pytest.fixture
def fleet(no_models):
    ingest_fleet({"ppdb001": {"cpu_pct": lambda i: 30.0 + (i % 7)}, "ppweb001": {}})
    run = fleet_predict()
    assert run is not None and run.status == "complete"
    return run


def _ok(response) -> object:
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "success"
    return body["data"]


def test_query_range_returns_the_forecast_at_its_future_timestamps(client, fleet):
    forecast = ServerForecast.objects.get(run=fleet, server__name="ppdb001")
    p90 = json.loads(forecast.payload)["mem_pct"]["p90"]
    origin = forecast.origin.timestamp()
    end = origin + 8 * 3600
    data = _ok(
        client.get(
            f"{API}/query_range",
            {
                "query": 'tft_forecast{server_name="ppdb001",metric="mem_pct",quantile="0.9"}',
                "start": origin,
                "end": end,
                "step": "5m",
            },
        )
    )
    assert data["resultType"] == "matrix"
    (series,) = data["result"]
    assert series["metric"] == {
        "__name__": "tft_forecast",
        "server_name": "ppdb001",
        "metric": "mem_pct",
        "quantile": "0.9",
    }
    assert [float(v) for _, v in series["values"]] == pytest.approx(p90)
    assert series["values"][-1][0] == origin + (len(p90) - 1) * 300


def test_history_comes_from_the_rollups(client, fleet):
    bucket = MetricBucket.objects.filter(server__name="ppdb001").order_by("-bucket_start").first()
    at = bucket.bucket_start.timestamp()
    data = _ok(
        client.get(f"{API}/query", {"query": 'tft_observed{server_name="ppdb001",metric="cpu_pct"}', "time": at + 60})
    )
    values = {s["metric"]["stat"]: float(s["value"][1]) for s in data["result"]}
    assert values == {"mean": pytest.approx(bucket.cpu_pct_sum / bucket.count), "max": bucket.cpu_pct_max}


def test_instant_query_sees_the_incident_probability(client, fleet):
    forecast = ServerForecast.objects.get(run=fleet, server__name="ppweb001")
    data = _ok(
        client.post(
            f"{API}/query",
            {
                "query": 'tft_incident_probability{server_name=~"ppweb.*",window="8h"}',
                "time": fleet.finished_at.timestamp() + 30,
            },
        )
    )  # Grafana POSTs forms
    (series,) = data["result"]
    assert float(series["value"][1]) == pytest.approx(forecast.prob_8h)


def test_nothing_is_seen_more_than_the_lookback_after_the_last_sample(client, fleet):
    at = fleet.finished_at + timedelta(minutes=6)
    data = _ok(client.get(f"{API}/query", {"query": "tft_incident_probability", "time": at.timestamp()}))
    assert data["result"] == []


def test_series_labels_and_label_values(client, fleet):
    series = _ok(
        client.get(
            f"{API}/series",
            {
                "match[]": [
                    'tft_forecast{server_name="ppweb001",metric="cpu_pct"}',
                    "tft_incident_probability{window='30m'}",
                ]
            },
        )
    )
    assert len(series) == 3 + 2  # three quantiles, two servers' 30-minute probabilities
    assert {"__name__", "server_name", "metric", "quantile", "stat", "window"} <= set(_ok(client.get(f"{API}/labels")))
    assert _ok(client.get(f"{API}/label/server_name/values")) == ["ppdb001", "ppweb001"]
    assert _ok(client.get(f"{API}/label/__name__/values")) == [
        "tft_forecast",
        "tft_incident_probability",
        "tft_observed",
    ]
    assert _ok(client.get(f"{API}/label/quantile/values")) == ["0.1", "0.5", "0.9"]
    assert _ok(client.get(f"{API}/status/buildinfo"))["version"]


def test_a_constant_expression_is_a_scalar_for_grafanas_connection_test(client):
    data = _ok(client.get(f"{API}/query", {"query": "1+1", "time": "1700000000"}))
    assert data == {"resultType": "scalar", "result": [1700000000.0, "2.0"]}


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"query": 'rate(tft_observed{server_name="a"}[5m])'}, "only vector selectors"),
        ({"query": 'sum(tft_forecast{server_name="a"})'}, "only vector selectors"),
        ({"query": '{server_name=""}'}, "non-empty matcher"),
        ({"query": 'tft_forecast{server_name=~"("}'}, "invalid regular expression"),
        ({}, '"query"'),
        ({"query": "tft_forecast", "time": "yesterday"}, '"time"'),
    ],
)
def test_unsupported_or_bad_queries_get_prometheus_errors(client, params, fragment):
    response = client.get(f"{API}/query", params)
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "error" and body["errorType"] == "bad_data" and fragment in body["error"]


def test_query_range_limits(client):
    now = datetime.now(UTC).timestamp()
    too_fine = client.get(
        f"{API}/query_range", {"query": "tft_forecast", "start": now, "end": now + 86400, "step": "1s"}
    )
    assert too_fine.status_code == 400 and "11,000 points" in too_fine.json()["error"]
    bad_step = client.get(f"{API}/query_range", {"query": "tft_forecast", "start": now, "end": now, "step": "-5"})
    assert bad_step.status_code == 400


def test_too_many_samples_is_an_execution_error(client, fleet, settings):
    settings.TFT_PROTOCOL_MAX_SAMPLES = 1000
    now = datetime.now(UTC).timestamp()
    response = client.get(
        f"{API}/query_range", {"query": '{__name__=~"tft_.*"}', "start": now, "end": now + 3600, "step": "60"}
    )
    assert response.status_code == 422 and response.json()["errorType"] == "execution"


def test_read_keys_when_reads_need_one(settings, fleet):
    settings.TFT_READ_REQUIRES_KEY = True
    anonymous = Client(HTTP_HOST="localhost").get(f"{API}/query", {"query": "1"})
    assert anonymous.status_code == 401 and anonymous.json()["status"] == "error"
    basic = "Basic " + base64.b64encode(f"grafana:{TEST_API_KEY}".encode()).decode()
    granted = Client(HTTP_HOST="localhost", HTTP_AUTHORIZATION=basic).get(f"{API}/query", {"query": "1"})
    assert granted.status_code == 200


@pytest.mark.parametrize("time", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "1e20", "NaN"])
def test_times_outside_the_supported_range_are_bad_data(client, time):
    response = client.get(f"{API}/query_range", {"query": "tft_forecast", "start": time, "end": time, "step": "60"})
    assert response.status_code == 400 and response.json()["errorType"] == "bad_data"


def test_history_over_too_long_a_range_is_refused_before_reading_it(client, fleet, settings):
    settings.TFT_PROTOCOL_MAX_SAMPLES = 1000
    now = datetime.now(UTC).timestamp()
    response = client.get(
        f"{API}/query_range",
        {"query": 'tft_observed{metric="cpu_pct",stat="max"}', "start": now - 30 * 86400, "end": now, "step": "1d"},
    )
    assert response.status_code == 422 and "rollup buckets" in response.json()["error"]


@pytest.mark.parametrize("regex", ["(a+)+$", "(a|aa)*b", "(x)\\\\1"])
def test_regexes_that_could_backtrack_for_ever_are_refused(client, regex):
    response = client.get(f"{API}/series", {"match[]": f'tft_forecast{{server_name=~"{regex}"}}'})
    assert response.status_code == 400 and "not supported" in response.json()["error"]


def test_everyday_regexes_work(client, fleet):
    data = _ok(
        client.get(
            f"{API}/series", {"match[]": 'tft_incident_probability{server_name=~"(ppdb|ppweb).*",window=~"30m|8h"}'}
        )
    )
    assert len(data) == 4
