"""simulate_fleet: the feeder and backfill command, against the real ingest path."""

import io
import json
import urllib.error
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from forecasting.engine.simulator import (
    fleet_names,
    simulate_buckets,
    simulate_records,
)
from tests.forecasting.engine.test_simulator import START


def test_feeder_retries_on_503_and_sends_the_api_key(monkeypatch):
    from forecasting.management.commands import simulate_fleet

    calls = []

    class Response(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def fake_urlopen(request, timeout):
        calls.append(request)
        if len(calls) == 1:
            raise urllib.error.HTTPError(request.full_url, 503, "down", {"Retry-After": "0"}, io.BytesIO(b""))
        if len(calls) == 2:
            raise urllib.error.URLError("connection refused")
        return Response(b'{"status": "accepted"}')

    monkeypatch.setattr(simulate_fleet.urllib.request, "urlopen", fake_urlopen)
    monkeypatch.setattr(simulate_fleet.time, "sleep", lambda s: None)
    feeder = simulate_fleet.Feeder("http://feed.example:8000/", "k123")
    records = next(simulate_records(servers=fleet_names(3), start=START, end=START + timedelta(seconds=5)))
    assert feeder.post(records) == {"status": "accepted"}
    assert len(calls) == 3
    assert calls[-1].full_url == "http://feed.example:8000/feed/data"
    assert calls[-1].get_header("X-api-key") == "k123"
    assert json.loads(calls[-1].data)["records"] == records
    assert feeder.posted_records == 3


@pytest.mark.django_db
def test_ingested_records_roll_up_to_the_simulated_buckets(feed):
    from forecasting.windows import server_histories

    servers = fleet_names(6)[::2]
    # recent times, so retention and clock checks in ingest accept them
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    end = start + timedelta(hours=1)
    batch: list[dict] = []
    for tick in simulate_records(servers=servers, start=start, end=end, interval_seconds=15, seed=2):
        batch.extend(tick)
        if len(batch) >= 2000:
            feed(batch)
            batch = []
    if batch:
        feed(batch)
    expected = {w.server: w for w in simulate_buckets(servers=servers, start=start, end=end, seed=2)}
    got = {w.server: w for w in server_histories(keep_silenced=True)}  # the raw roll-up
    assert set(got) == set(servers)
    for server, w in got.items():
        assert w.start == expected[server].start
        np.testing.assert_allclose(w.values, expected[server].values, atol=0.006, rtol=1e-5)
        np.testing.assert_array_equal(w.states, expected[server].states)


@pytest.mark.django_db
def test_backfill_command_posts_thinned_history_in_batches(client, monkeypatch):
    from django.core.management import call_command

    from forecasting.management.commands import simulate_fleet
    from ingest.models import MetricRecord, Server
    from tests.conftest import post_feed

    sizes = []

    def post_via_client(self, records):
        sizes.append(len(records))
        response = post_feed(client, {"records": records})
        assert response.status_code == 200, response.content
        self.posted_records += len(records)
        self.posted_batches += 1
        return response.json()

    monkeypatch.setattr(simulate_fleet.Feeder, "post", post_via_client)
    out = io.StringIO()
    call_command(
        "simulate_fleet", "--servers", "3", "--backfill", "1h", "--backfill-interval", "60",
        "--batch-size", "50", stdout=out,
    )  # fmt: skip
    assert sizes == [50, 50, 50, 30]  # 60 ticks × 3 servers
    assert sorted(Server.objects.values_list("name", flat=True)) == sorted(fleet_names(3))
    assert MetricRecord.objects.count() == 180
    assert "posted 180 records in 4 requests" in out.getvalue()


def test_command_needs_backfill_or_live():
    from django.core.management import call_command
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="nothing to do"):
        call_command("simulate_fleet")


