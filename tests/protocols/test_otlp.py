"""POST /v1/metrics: the OpenTelemetry Python SDK and its OTLP/HTTP exporter, sending to our live
server, get records stored; JSON and malformed bodies through the test client."""

import gzip
import json
from datetime import UTC, datetime

import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExportResult, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from ingest.models import MetricRecord
from tests.conftest import RECENT, TEST_API_KEY
from tests.protocols.conftest import CONTRACT

VALUES = {**CONTRACT, "cpu_pct": 91.5}


def _export(url: str, *, host: str, values: dict, compression=Compression.NoCompression, state: str = "heavy_load"):
    """One collection of four observable gauges, exported by the SDK's own OTLP/HTTP exporter."""
    exporter = OTLPMetricExporter(
        endpoint=f"{url}/v1/metrics",
        headers={"Authorization": f"Bearer {TEST_API_KEY}"},
        compression=compression,
        timeout=30,
    )
    results = []
    export = exporter.export

    def recording_export(*args, **kwargs):
        results.append(export(*args, **kwargs))
        return results[-1]

    exporter.export = recording_export
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"host.name": host}))
    meter = provider.get_meter("tftsite-test")
    for name, value in values.items():
        meter.create_observable_gauge(name, callbacks=[lambda _options, v=value: [Observation(v, {"state": state})]])
    meter.create_observable_gauge("process.runtime.gc_count", callbacks=[lambda _o: [Observation(3)]])  # not ours
    provider.force_flush()
    provider.shutdown()
    return results


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip], ids=["plain", "gzip"])
def test_the_opentelemetry_sdk_exporter_gets_records_stored(live_server, compression):
    results = _export(live_server.url, host="ppweb201", values=VALUES, compression=compression)
    assert results and all(r == MetricExportResult.SUCCESS for r in results)
    records = list(MetricRecord.objects.filter(server__name="ppweb201"))  # force_flush, and shutdown's own export
    assert 1 <= len(records) <= len(results)
    for record in records:
        assert (record.cpu_pct, record.mem_pct, record.disk_io_mb_s, record.latency_ms) == tuple(VALUES.values())
        assert record.state == "heavy_load"
        assert abs((datetime.now(UTC) - record.timestamp).total_seconds()) < 60


def _json_body(server: str, ts_ns: int, **values) -> dict:
    metrics = [
        {"name": name, "gauge": {"dataPoints": [{"timeUnixNano": str(ts_ns), "asDouble": value}]}}
        for name, value in values.items()
    ]
    return {
        "resourceMetrics": [
            {
                "resource": {"attributes": [{"key": "host.name", "value": {"stringValue": server}}]},
                "scopeMetrics": [{"metrics": metrics}],
            }
        ]
    }


T_NS = int(RECENT.timestamp()) * 10**9


@pytest.mark.django_db
def test_json_bodies_are_read_and_bad_points_reported_as_partial_success(client):
    body = _json_body("ppdb301", T_NS, **CONTRACT)
    bad = _json_body("ppdb302", T_NS, **{**CONTRACT, "mem_pct": 180.0})
    body["resourceMetrics"] += bad["resourceMetrics"]
    response = client.post("/v1/metrics", json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.content
    partial = response.json()["partialSuccess"]
    assert partial["rejectedDataPoints"] == "4" and "ppdb302" in partial["errorMessage"]
    assert list(MetricRecord.objects.values_list("server__name", flat=True)) == ["ppdb301"]


@pytest.mark.django_db
def test_a_gzip_json_body_is_inflated(client):
    data = gzip.compress(json.dumps(_json_body("ppdb303", T_NS, **CONTRACT)).encode())
    response = client.post("/v1/metrics", data, content_type="application/json", HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 200 and response.json() == {}
    assert MetricRecord.objects.filter(server__name="ppdb303").count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "content_type", "encoding"),
    [
        (b"\x0a\xff\xff", "application/x-protobuf", "identity"),
        (b"{not json", "application/json", "identity"),
        (b"not gzip", "application/x-protobuf", "gzip"),
    ],
    ids=["protobuf", "json", "gzip"],
)
def test_malformed_bodies_are_400(client, body, content_type, encoding):
    response = client.post("/v1/metrics", body, content_type=content_type, HTTP_CONTENT_ENCODING=encoding)
    assert response.status_code == 400 and response.json()["error"] == "malformed_body"
    assert MetricRecord.objects.count() == 0


@pytest.mark.django_db
def test_a_gzip_bomb_stops_at_the_decompressed_limit(client, settings):
    settings.TFT_PROTOCOL_MAX_DECOMPRESSED_BYTES = 64 * 1024
    bomb = gzip.compress(b"\0" * (10 * 1024 * 1024))  # 10 MB of zeros in about 10 KB
    response = client.post("/v1/metrics", bomb, content_type="application/x-protobuf", HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 413


@pytest.mark.django_db
def test_one_collection_straddling_a_second_boundary_is_one_record(client):
    body = _json_body("ppdb304", T_NS, cpu_pct=1.0, mem_pct=2.0)
    later = _json_body("ppdb304", T_NS - 1000 + 10**9, disk_io_mb_s=3.0, latency_ms=4.0)  # 1 µs before the next second
    body["resourceMetrics"][0]["scopeMetrics"] += later["resourceMetrics"][0]["scopeMetrics"]
    body["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["gauge"]["dataPoints"][0]["timeUnixNano"] = str(
        T_NS + 10**9 - 2000
    )
    response = client.post("/v1/metrics", json.dumps(body), content_type="application/json")
    assert response.status_code == 200
    record = MetricRecord.objects.get(server__name="ppdb304")
    assert (record.cpu_pct, record.latency_ms) == (1.0, 4.0)


@pytest.mark.django_db
def test_points_without_a_time_are_rejected_not_dated_1970(client):
    body = _json_body("ppdb305", 0, **CONTRACT)
    response = client.post("/v1/metrics", json.dumps(body), content_type="application/json")
    assert response.status_code == 200
    assert response.json()["partialSuccess"]["rejectedDataPoints"] == "4"
    assert MetricRecord.objects.count() == 0


@pytest.mark.django_db
def test_sums_count_and_a_points_server_name_attribute_wins_over_the_resource(client):
    body = _json_body("collector-7", T_NS, **CONTRACT)
    for metric in body["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]:
        point = metric["gauge"]["dataPoints"][0]
        point["attributes"] = [{"key": "server_name", "value": {"stringValue": "ppdb306"}}]
        metric["sum"] = {"dataPoints": [point], "aggregationTemporality": 2}
        del metric["gauge"]
    histogram = {"name": "latency_ms", "histogram": {"dataPoints": [{"timeUnixNano": str(T_NS), "count": "1"}]}}
    body["resourceMetrics"][0]["scopeMetrics"][0]["metrics"].append(histogram)
    response = client.post("/v1/metrics", json.dumps(body), content_type="application/json")
    assert response.status_code == 200
    assert response.json()["partialSuccess"]["rejectedDataPoints"] == "1"  # the histogram of a contract metric
    assert list(MetricRecord.objects.values_list("server__name", flat=True)) == ["ppdb306"]
