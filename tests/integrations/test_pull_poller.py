"""pull_prometheus's live poller (issue 27): a database outage or an unreachable Prometheus costs
failed ticks, not the poller, and the instants missed meanwhile are read again from Prometheus once
it recovers. Real components: the Debian prometheus binary, PostgreSQL refusing connections."""

import signal
import time

import psycopg
import pytest
from django.db import connection

from ingest.models import MetricRecord
from ingest.prometheus_poller import PullPoller
from ingest.prometheus_pull import PullConfig

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def database_outage(postgres_only):
    """outage(True) makes PostgreSQL refuse this test database (connections cut, new ones refused);
    outage(False) lets it back in. Always let back in at teardown."""
    name = connection.settings_dict["NAME"]
    params = {k: v for k, v in connection.get_connection_params().items() if k in {"host", "port", "user", "password"}}
    admin = psycopg.connect(dbname="postgres", autocommit=True, **params)

    def outage(down: bool) -> None:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {"false" if down else "true"}')
        if down:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name])

    yield outage
    outage(False)
    admin.close()


def _stored_instants(server: str) -> list[int]:
    return [
        int(r.timestamp())
        for r in MetricRecord.objects.filter(server__name=server)
        .order_by("timestamp")
        .values_list("timestamp", flat=True)
    ]


def test_the_poller_survives_database_and_network_errors_and_backfills_what_it_missed(
    prometheus_factory, exporter_factory, database_outage
):
    exporter = exporter_factory(cpu_busy=50.0, mem_used=40.0, disk_mb_s=1.0, histogram=False)
    prometheus = prometheus_factory(
        [{"job_name": "node", "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}]}]
    )
    prometheus.wait_for('count_over_time(node_cpu_seconds_total{mode="idle"}[40s]) >= 35', timeout=120)
    config = PullConfig(
        url=prometheus.url,
        instances={f"127.0.0.1:{exporter.port}": "ppdb201"},
        defaults={"latency_ms": 0.0},
        rate_window="10s",
        timeout=1.0,
    )
    poller = PullPoller(config=config, interval=2)
    t0 = int(time.time()) // 2 * 2 - 16  # every instant below is in the past: Prometheus holds it

    assert poller.tick(now=t0).accepted == 1

    database_outage(True)  # PostgreSQL cuts our connection and refuses new ones
    assert poller.tick(now=t0 + 2) is None and poller.tick(now=t0 + 4) is None
    assert poller.failures == 2 and poller.backoff_seconds() == 4 and "Error" in poller.last_error
    database_outage(False)
    assert poller.tick(now=t0 + 6).accepted == 3  # t0+2 and t0+4 read again, with t0+6

    prometheus.process.send_signal(signal.SIGSTOP)  # Prometheus hangs: queries time out
    try:
        assert poller.tick(now=t0 + 8) is None and "PrometheusError" in poller.last_error
    finally:
        prometheus.process.send_signal(signal.SIGCONT)
    assert poller.tick(now=t0 + 10).accepted == 2

    assert _stored_instants("ppdb201") == list(range(t0, t0 + 12, 2))  # nothing lost, nothing twice
    assert all(r.cpu_pct == pytest.approx(50.0, abs=1.0) for r in MetricRecord.objects.all())


def test_a_gap_longer_than_the_backfill_limit_is_read_from_the_limit_on(prometheus_factory, exporter_factory, settings):
    exporter = exporter_factory(cpu_busy=20.0, mem_used=30.0, disk_mb_s=1.0, histogram=False)
    prometheus = prometheus_factory(
        [{"job_name": "node", "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}]}]
    )
    prometheus.wait_for('count_over_time(node_cpu_seconds_total{mode="idle"}[30s]) >= 25', timeout=120)
    settings.TFT_PULL_MAX_BACKFILL_SECONDS = 10  # Prometheus holds 30 s and more
    config = PullConfig(
        url=prometheus.url,
        instances={f"127.0.0.1:{exporter.port}": "ppdb202"},
        defaults={"latency_ms": 0.0},
        rate_window="10s",
    )
    now = int(time.time()) // 2 * 2 - 4
    poller = PullPoller(config=config, interval=2, last_stored=now - 3600)  # stored an hour ago

    result = poller.tick(now=now)

    assert _stored_instants("ppdb202") == list(range(now - 10, now + 2, 2))  # not the 20 s before
    assert result.accepted == 6 and poller.last_stored == now
