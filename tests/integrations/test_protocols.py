"""The observability stack's own protocols with real senders and clients: a Debian Prometheus
remote_writes recording rules over a node_exporter-like exporter to our live server, the forecast
is made, and promtool reads its future points back through the Prometheus-compatible read API."""

import json
import shutil
import subprocess
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db.models import Sum

from forecasting.models import ServerForecast
from forecasting.runs.chunks import fleet_predict
from ingest.models import MetricBucket, MetricRecord
from tests.conftest import TEST_API_KEY, ingest_fleet

PROMTOOL = shutil.which("promtool")
WINDOW = "10s"  # 1-second scrapes: rate() over 10 s holds enough samples to extrapolate exactly
RULES = [
    ("tft:cpu_pct", f'100 * (1 - avg by (instance) (rate(node_cpu_seconds_total{{mode="idle"}}[{WINDOW}])))'),
    (
        "tft:mem_pct",
        "100 * (1 - avg by (instance) (node_memory_MemAvailable_bytes)"
        " / avg by (instance) (node_memory_MemTotal_bytes))",
    ),
    (
        "tft:disk_io_mb_s",
        f"sum by (instance) (rate(node_disk_read_bytes_total[{WINDOW}])"
        f" + rate(node_disk_written_bytes_total[{WINDOW}])) / 1048576",
    ),
    (
        "tft:latency_ms",
        "1000 * histogram_quantile(0.95, sum by (instance, le) "
        f"(rate(http_request_duration_seconds_bucket[{WINDOW}])))",
    ),
    # an info series: 1 for the state the host is in (here: heavy_load whenever cpu ≥ 80)
    ("tft:state", 'label_replace(tft:cpu_pct >= 80, "state", "heavy_load", "", "") * 0 + 1'),
]


def _wait(check, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _prometheus_writing_to(url: str, *, prometheus_factory, exporter_factory, tmp_path, server: str):
    """An exporter (cpu 85 %, mem 75 %, 3 MB/s, latencies 10–20 ms) scraped every second as `server:9100`,
    the recording rules above, and remote_write of the contract's series only to `url`."""
    exporter = exporter_factory(cpu_busy=85.0, mem_used=75.0, disk_mb_s=3.0, histogram=True)
    rules = tmp_path / "tft-rules.yml"
    rules.write_text(
        json.dumps(
            {"groups": [{"name": "tft", "interval": "1s", "rules": [{"record": r, "expr": e} for r, e in RULES]}]}
        )
    )
    return prometheus_factory(
        [
            {
                "job_name": "node",
                "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}],
                # the instance a real node_exporter would have: the port is stripped into server_name
                "relabel_configs": [{"target_label": "instance", "replacement": f"{server}:9100"}],
            }
        ],
        extra={
            "rule_files": [str(rules)],
            "remote_write": [
                {
                    "url": url,
                    "authorization": {"type": "Bearer", "credentials": TEST_API_KEY},
                    # Only the contract's series leave Prometheus (README "Observability protocols").
                    "write_relabel_configs": [
                        {
                            "source_labels": ["__name__"],
                            "action": "keep",
                            "regex": "tft:(cpu_pct|mem_pct|disk_io_mb_s|latency_ms|state)",
                        }
                    ],
                    "queue_config": {"batch_send_deadline": "1s", "min_backoff": "100ms", "max_backoff": "1s"},
                }
            ],
        },
    )


@pytest.mark.django_db(transaction=True)
def test_prometheus_remote_write_feeds_records_and_promtool_reads_the_forecast(
    live_server, settings, no_models, prometheus_factory, exporter_factory, tmp_path
):
    settings.TFT_READ_REQUIRES_KEY = True
    # History so the server is past warm-up and has a forecast; the live samples continue it.
    ingest_fleet(["ppdb101"], end=datetime.now(UTC) - timedelta(minutes=5))
    _prometheus_writing_to(
        f"{live_server.url}/api/v1/write",
        prometheus_factory=prometheus_factory,
        exporter_factory=exporter_factory,
        tmp_path=tmp_path,
        server="ppdb101",
    )
    started = datetime.now(UTC) - timedelta(minutes=1)
    live_records = MetricRecord.objects.filter(server__name="ppdb101", timestamp__gte=started).order_by("timestamp")
    first = _wait(live_records.first, timeout=90, what="a remote-written record")
    # rate() under-reads a window holding the series' start: judge the records once it is full.
    settled = live_records.filter(timestamp__gte=first.timestamp + timedelta(seconds=12))
    live = _wait(lambda: list(settled[:3]) if settled.count() >= 3 else None, timeout=90, what="3 settled records")
    for record in live:
        assert record.cpu_pct == pytest.approx(85.0, abs=1.0)
        assert record.mem_pct == pytest.approx(75.0, abs=0.01)
        assert record.disk_io_mb_s == pytest.approx(3.0, rel=0.03)
        assert record.latency_ms == pytest.approx(19.5, abs=0.5)  # p95 inside the 10–20 ms bucket

    # The state comes from the tft:state info series; a batch cut between a record's metrics and its
    # state leaves that record at the default (README: the ordering caveat), so most, not all.
    states = [record.state for record in live]
    assert states.count("heavy_load") >= 2 and set(states) <= {"heavy_load", "healthy"}, states

    run = fleet_predict()
    assert run is not None and run.status == "complete"
    forecast = ServerForecast.objects.get(run=run, server__name="ppdb101")
    p50 = json.loads(forecast.payload)["cpu_pct"]["p50"]

    now = int(time.time())
    query = 'tft_forecast{server_name="ppdb101", metric="cpu_pct", quantile="0.5"}'
    out = subprocess.run(
        [
            PROMTOOL,
            "query",
            "range",
            "-o",
            "json",
            f"--header=X-API-Key={TEST_API_KEY}",
            f"--start={now - 3600}",
            f"--end={now + 8 * 3600}",
            "--step=5m",
            f"{live_server.url}/prometheus",
            query,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    (series,) = json.loads(out.stdout)
    assert series["metric"] == {
        "__name__": "tft_forecast",
        "server_name": "ppdb101",
        "metric": "cpu_pct",
        "quantile": "0.5",
    }
    future = [(t, float(v)) for t, v in series["values"] if t > now]
    assert len(future) >= 90  # 8 h of 5-minute steps, less the part of the first step already begun
    origin = forecast.origin.timestamp()
    for t, v in future:
        step = int((t - origin) // 300)
        assert v == pytest.approx(p50[step])

    refused = subprocess.run(
        [PROMTOOL, "query", "instant", live_server.url + "/prometheus", query],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0  # no read key


class _LosingProxy:
    """Forwards each remote_write request to our server, then answers the sender 503 for `lose` of them
    once records flow (after the first `after`), as if the answer had been lost: Prometheus sends the
    same samples again."""

    def __init__(self, target: str, *, after: int, lose: int):
        self.target, self.after, self.lose, self.answers, self.lock = target, after, lose, [], threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                forwarded = urllib.request.Request(owner.target, data=body, headers=headers, method="POST")
                with urllib.request.urlopen(forwarded, timeout=30) as response:
                    answer = json.loads(response.read())
                with owner.lock:
                    owner.answers.append(answer)
                    lost = len(owner.answers) > owner.after and owner.lose > 0
                    owner.lose -= lost
                self.send_response(503 if lost else 200)
                self.send_header("Retry-After", "1")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/api/v1/write"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.django_db(transaction=True)
def test_prometheus_retrying_a_write_whose_answer_was_lost_stores_nothing_twice(
    live_server, prometheus_factory, exporter_factory, tmp_path
):
    proxy = _LosingProxy(f"{live_server.url}/api/v1/write", after=4, lose=3)
    try:
        _prometheus_writing_to(
            proxy.url,
            prometheus_factory=prometheus_factory,
            exporter_factory=exporter_factory,
            tmp_path=tmp_path,
            server="ppweb102",
        )
        _wait(lambda: len(proxy.answers) >= 12, timeout=90, what="12 remote_write requests")
    finally:
        proxy.close()
    assert sum(a["duplicates"] for a in proxy.answers) > 0, proxy.answers  # the retries reached us: duplicates
    records = MetricRecord.objects.filter(server__name="ppweb102").count()
    assert records > 0
    assert MetricBucket.objects.filter(server__name="ppweb102").aggregate(n=Sum("count"))["n"] == records
