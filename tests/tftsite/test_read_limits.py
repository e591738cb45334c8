"""Heavy reads cannot starve the feed (issue 27): /predictions/current, /status and /metrics have their
own per-client limits (429 with Retry-After) besides the read limit, and /status and /metrics serve a
body cached for a few seconds, keyed on the current run."""

import re

import pytest
from django.core.cache import caches

from forecasting.runs.chunks import fleet_predict
from tests.conftest import ingest_fleet, make_record, post_feed

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_caches():
    caches["ratelimit"].clear()
    caches["default"].clear()
    yield
    caches["default"].clear()


@pytest.fixture
def fleet_with_a_run(no_models):
    ingest_fleet(["ppdb001", "ppweb002"])
    return fleet_predict()


@pytest.mark.parametrize("path", ["/status", "/predictions/current"])
def test_heavy_reads_have_their_own_limit(client, settings, fleet_with_a_run, path):
    settings.TFT_RATE_LIMIT_HEAVY_READ_PER_MINUTE = 2

    codes = [client.get(path).status_code for _ in range(3)]
    refused = client.get(path)

    assert codes == [200, 200, 429] and 1 <= int(refused["Retry-After"]) <= 60
    assert refused.json()["error"] == "throttled"
    # Light reads and the feed are not counted against it.
    assert client.get("/alerts/active").status_code == 200
    assert post_feed(client, {"records": [make_record()]}).status_code == 200


def test_metrics_scrapes_have_their_own_limit(client, settings):
    settings.TFT_RATE_LIMIT_METRICS_PER_MINUTE = 2

    codes = [client.get("/metrics").status_code for _ in range(3)]
    refused = client.get("/metrics")

    assert codes == [200, 200, 429] and 1 <= int(refused["Retry-After"]) <= 61
    assert client.get("/status").status_code == 200


def _batches(text: str) -> float:
    return float(re.search(r"^tft_feed_batches_total (\S+)$", text, re.M).group(1))


def test_status_is_served_from_the_cache_until_it_expires_or_the_run_changes(client, settings, fleet_with_a_run):
    settings.TFT_READ_CACHE_SECONDS = 60
    first = client.get("/status").json()

    assert post_feed(client, {"records": [make_record(server="ppnew003")]}).status_code == 200
    cached = client.get("/status").json()
    with_servers = client.get("/status?servers=1").json()  # another variant: rendered on its own
    fleet_predict()  # a new run: the next read renders again
    fresh = client.get("/status").json()

    assert cached == first
    assert with_servers["tick_count"] == first["tick_count"] + 1 and "servers" in with_servers
    assert fresh["tick_count"] == first["tick_count"] + 1
    assert fresh["predictions"]["run_id"] != first["predictions"]["run_id"]


def test_metrics_are_served_from_the_cache_until_the_run_changes(client, settings, fleet_with_a_run):
    settings.TFT_READ_CACHE_SECONDS = 60
    first = client.get("/metrics").content.decode()

    post_feed(client, {"records": [make_record(server="ppnew003")]})
    cached = client.get("/metrics").content.decode()
    fleet_predict()
    fresh = client.get("/metrics").content.decode()

    assert cached == first
    assert _batches(fresh) == _batches(first) + 1


def test_without_the_cache_every_read_is_fresh(client, settings, fleet_with_a_run):
    settings.TFT_READ_CACHE_SECONDS = 0
    first = client.get("/status").json()

    post_feed(client, {"records": [make_record(server="ppnew003")]})

    assert client.get("/status").json()["tick_count"] == first["tick_count"] + 1
