"""GET /metrics: scraped by a real Prometheus, and PromQL returns our forecast gauges."""

import json
import logging
from urllib.parse import urlparse

import pytest
from django.test import Client

from forecasting.models import ServerForecast
from forecasting.prometheus import HORIZON_STEPS
from forecasting.runs.chunks import fleet_predict
from tests.conftest import ingest_fleet

logger = logging.getLogger(__name__)
METRICS_KEY = "metrics-test-key"


def _rising_mem(i):
    return 60.0 + i * 0.2


@pytest.mark.django_db(transaction=True)
def test_prometheus_scrapes_forecasts(live_server, settings, no_models, prometheus_factory):
    settings.TFT_METRICS_API_KEY = METRICS_KEY
    ingest_fleet({"ppdb001": {"mem_pct": _rising_mem}, "ppweb001": {}})
    run = fleet_predict()
    assert run is not None and run.status == "complete"
    forecast = ServerForecast.objects.get(run=run, server__name="ppdb001")
    payload = json.loads(forecast.payload)

    target = urlparse(live_server.url).netloc
    prometheus = prometheus_factory([{
        "job_name": "tftsite",
        "metrics_path": "/metrics",
        "authorization": {"type": "Bearer", "credentials": METRICS_KEY},
        "static_configs": [{"targets": [target]}],
    }])

    query = 'tft_forecast{server="ppdb001", metric="mem_pct", quantile="0.5", horizon="1h"}'
    result = prometheus.wait_for(query)
    value = float(result[0]["value"][1])
    logger.info("PromQL %s → %s", query, result)  # visible with -s: the example in the report
    assert value == pytest.approx(payload["mem_pct"]["p50"][HORIZON_STEPS["1h"] - 1])

    # Every horizon and quantile of one server and metric: 4 × 3 series with the stored values.
    series = prometheus.query('tft_forecast{server="ppdb001", metric="mem_pct"}')
    assert len(series) == 12
    for s in series:
        key = {"0.1": "p10", "0.5": "p50", "0.9": "p90"}[s["metric"]["quantile"]]
        expected = payload["mem_pct"][key][HORIZON_STEPS[s["metric"]["horizon"]] - 1]
        assert float(s["value"][1]) == pytest.approx(expected)
    peak = prometheus.query('tft_forecast_peak{server="ppdb001", metric="mem_pct", quantile="0.9"}')
    assert float(peak[0]["value"][1]) == pytest.approx(max(payload["mem_pct"]["p90"]))
    prob = prometheus.query('tft_incident_probability{server="ppdb001", window="8h"}')
    assert float(prob[0]["value"][1]) == pytest.approx(forecast.prob_8h)
    fleet = prometheus.query('tft_fleet_incident_probability{window="8h"}')
    assert float(fleet[0]["value"][1]) == pytest.approx(run.environment["prob_8h"])
    # The rising memory raised an alert (one per server and metric, at its highest severity); the
    # alert gauge and an alert-rule-style query see it.
    alerts = prometheus.query('tft_alert_active{server="ppdb001", metric="mem_pct"}')
    assert len(alerts) == 1 and alerts[0]["metric"]["severity"] in {"warning", "critical"}
    ahead = prometheus.query('max by (server) (tft_forecast{metric="mem_pct", quantile="0.9", horizon=~"30m|1h"}) > 85')
    assert [a["metric"]["server"] for a in ahead] == ["ppdb001"]
    # Service metrics: a fallback run (no model), two servers, the feed counter from the database.
    assert float(prometheus.query("tft_prediction_fallback_servers")[0]["value"][1]) == 2
    assert float(prometheus.query('tft_servers{status="tracked"}')[0]["value"][1]) == 2
    assert float(prometheus.query("tft_feed_batches_total")[0]["value"][1]) >= 1
    assert prometheus.query('up{job="tftsite"} == 1')


@pytest.mark.django_db
def test_metrics_key_protection_and_feed_counters(settings, client):
    settings.TFT_METRICS_API_KEY = METRICS_KEY
    anon = Client(HTTP_HOST="localhost")
    assert anon.get("/metrics").status_code == 401
    assert anon.get("/metrics", HTTP_X_API_KEY="wrong").status_code == 401
    ok = anon.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {METRICS_KEY}")
    assert ok.status_code == 200
    assert ok["Content-Type"].startswith("text/plain; version=0.0.4")
    assert anon.get("/metrics", HTTP_X_API_KEY=METRICS_KEY).status_code == 200

    def counter(text: str, name: str, label: str) -> float:
        for line in text.splitlines():
            if (line.startswith(f"{name}{{") or line.startswith(f"{name} ")) and label in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = anon.get("/metrics", HTTP_X_API_KEY=METRICS_KEY).content.decode()
    from tests.conftest import post_feed, series

    assert post_feed(client, {"records": series("ppdb001", 3)}).status_code == 200
    assert post_feed(client, {"records": series("ppdb001", 3)}).status_code == 200  # all duplicates
    bad = series("ppdb001", 2)
    bad[1]["cpu_pct"] = 140
    assert post_feed(client, {"records": bad}).status_code == 400
    after = anon.get("/metrics", HTTP_X_API_KEY=METRICS_KEY).content.decode()

    assert counter(after, "tft_feed_records_total", 'outcome="accepted"') - counter(
        before, "tft_feed_records_total", 'outcome="accepted"') == 3
    assert counter(after, "tft_feed_records_total", 'outcome="duplicate"') - counter(
        before, "tft_feed_records_total", 'outcome="duplicate"') == 3
    assert counter(after, "tft_feed_records_total", 'outcome="rejected"') - counter(
        before, "tft_feed_records_total", 'outcome="rejected"') == 1
    assert counter(after, "tft_feed_request_duration_seconds_count", "") - counter(
        before, "tft_feed_request_duration_seconds_count", "") == 3
    assert "tft_records_stored 3.0" in after


@pytest.mark.django_db
def test_metrics_is_fast_for_a_large_fleet(settings, django_assert_max_num_queries, no_models):
    """1,000 servers' forecasts: a fixed number of queries, and the forecast part is cached per run."""
    import time

    from forecasting import prometheus

    settings.TFT_WARMUP_RECORDS = 12  # a short history keeps the set-up quick; the forecasts are real
    ingest_fleet([f"ppweb{i:04d}" for i in range(1000)], buckets=24)
    fleet_predict()
    # 13th: the scored targets per kind × model version (issue 24); 14th: whether any feed increments
    # wait to be folded in (issue 25: readers fold first; one query whatever the fleet size)
    with django_assert_max_num_queries(14):
        started = time.perf_counter()
        text = prometheus.metrics_text()
        first = time.perf_counter() - started
    assert text.count(b"tft_forecast{") == 1000 * 48
    started = time.perf_counter()
    prometheus.metrics_text()
    cached = time.perf_counter() - started
    logger.info("metrics for 1,000 servers: %.3f s first (per run), %.3f s cached", first, cached)
    assert cached < first
    assert cached < 1.0, cached


def test_label_values_are_escaped_when_needed():
    from forecasting.prometheus import _label

    assert _label("ppdb001") == "ppdb001"
    assert _label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
