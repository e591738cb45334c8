"""pull_prometheus: series a real Prometheus scraped from a small exporter arrive in our tables."""

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command

from ingest.models import MetricRecord, Server
from ingest.prometheus_pull import PullConfig, derive_state, parse_duration, prometheus_backfill, server_name_for

pytestmark = pytest.mark.django_db


def test_pull_feeder_backfills_and_polls_through_the_ingest_path(prometheus_factory, exporter_factory):
    db_host = exporter_factory(cpu_busy=85.0, mem_used=75.0, disk_mb_s=3.0, histogram=True)
    web_host = exporter_factory(cpu_busy=10.0, mem_used=20.0, disk_mb_s=0.5, histogram=False)
    prometheus = prometheus_factory([{
        "job_name": "node",
        "static_configs": [{"targets": [f"127.0.0.1:{db_host.port}", f"127.0.0.1:{web_host.port}"]}],
    }])
    # rate() under-reads a window that holds the series' start, so wait until both series are older
    # than the backfill span plus the rate window (10 s + 10 s, with margin).
    prometheus.wait_for('count_over_time(node_cpu_seconds_total{mode="idle"}[30s]) >= 28', count=2, timeout=90)

    out = StringIO()
    call_command(
        "pull_prometheus",
        url=prometheus.url,
        instance=[f"127.0.0.1:{db_host.port}=ppdb101", f"127.0.0.1:{web_host.port}=ppweb102"],
        state=["ppweb102=maintenance"],
        default=["latency_ms=0"],  # ppweb102 has no latency histogram
        rate_window="10s",
        backfill="10s",
        step="5s",
        once=True,
        interval=5,
        stdout=out,
    )
    text = out.getvalue()
    assert "backfill done" in text and "poll " in text, text

    db = Server.objects.get(name="ppdb101")
    web = Server.objects.get(name="ppweb102")
    db_records = list(MetricRecord.objects.filter(server=db).order_by("timestamp"))
    assert len(db_records) >= 3, text  # backfill points 5 s apart, plus the live poll
    for r in db_records:
        assert r.cpu_pct == pytest.approx(85.0, abs=1.0)
        assert r.mem_pct == pytest.approx(75.0, abs=0.01)
        assert r.disk_io_mb_s == pytest.approx(3.0, rel=0.03)
        assert r.latency_ms == pytest.approx(19.5, abs=0.5)  # p95 inside the 10–20 ms bucket
        assert r.state == "heavy_load"  # derived: cpu ≥ 80
    web_records = list(MetricRecord.objects.filter(server=web))
    assert web_records and all(r.state == "maintenance" and r.latency_ms == 0 for r in web_records)
    assert all(r.cpu_pct == pytest.approx(10.0, abs=1.0) for r in web_records)
    assert db.record_count == len(db_records)  # the ingest path kept the server's counters

    # Idempotency: the same span read again stores nothing new.
    config = PullConfig(url=prometheus.url, instances={f"127.0.0.1:{db_host.port}": "ppdb101"},
                        defaults={"latency_ms": 0.0}, rate_window="10s")
    now = datetime.now(UTC)
    first = prometheus_backfill(config=config, span=timedelta(seconds=10), step=timedelta(seconds=5), now=now)
    again = prometheus_backfill(config=config, span=timedelta(seconds=10), step=timedelta(seconds=5), now=now)
    assert again.records == first.records > 0
    assert again.accepted == 0 and again.duplicates == first.records


def test_pull_rules():
    config = PullConfig(url="http://x", instances={"10.0.0.5:9100": "ppdb001"})
    assert server_name_for("10.0.0.5:9100", config) == "ppdb001"
    assert server_name_for("db-7.example.com:9100", config) == "db-7.example.com"
    assert server_name_for("node with space", config) == "node-with-space"
    assert derive_state({"cpu_pct": 96, "mem_pct": 10}) == "critical_issue"
    assert derive_state({"cpu_pct": 50, "mem_pct": 92}) == "heavy_load"
    assert derive_state({"cpu_pct": 2, "mem_pct": 30}) == "idle"
    assert derive_state({"cpu_pct": 40, "mem_pct": 30}) == "healthy"
    assert parse_duration("24h") == timedelta(hours=24)
    assert 'rate(my_latency_seconds_bucket[1m])' in PullConfig(
        url="x", latency_histogram="my_latency_seconds", rate_window="1m").promql("latency_ms")
