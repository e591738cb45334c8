"""Helpers for the protocol tests: WriteRequest bodies built with the protobuf runtime (the real
senders, Prometheus and the OpenTelemetry SDK, are in tests/integrations and test_otlp)."""

from datetime import datetime

import cramjam
import pytest

from protocols.remote_write import WriteRequest
from tests.conftest import RECENT, TEST_API_KEY

T0 = RECENT  # within the feed's retention window (yesterday 16:00 UTC)
CONTRACT = {"cpu_pct": 45.2, "mem_pct": 67.8, "disk_io_mb_s": 123.4, "latency_ms": 12.5}


def write_request(series: list[tuple[dict, list[tuple[float, datetime]]]]) -> bytes:
    """[(labels, [(value, time)])] → the snappy-compressed body Prometheus sends."""
    request = WriteRequest()
    for labels, samples in series:
        ts = request.timeseries.add()
        for name, value in sorted(labels.items()):
            ts.labels.add(name=name, value=value)
        for value, at in samples:
            ts.samples.add(value=value, timestamp=int(at.timestamp() * 1000))
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


def server_series(server: str, at: datetime, *, label: str = "instance", prefix: str = "", **values) -> list:
    values = {**CONTRACT, **values}
    return [
        ({"__name__": prefix + metric, label: server, "job": "node"}, [(value, at)])
        for metric, value in values.items()
        if value is not None
    ]


@pytest.fixture
def post_write(client):
    def post(body: bytes, **headers):
        headers.setdefault("HTTP_CONTENT_ENCODING", "snappy")
        return client.post("/api/v1/write", body, content_type="application/x-protobuf", **headers)

    return post


__all__ = ["TEST_API_KEY"]
