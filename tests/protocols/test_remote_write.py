"""POST /api/v1/write: remote_write bodies → contract records through the ingest write path."""

import base64
import random
import struct
from datetime import timedelta

import cramjam
import pytest
from django.core.cache import caches
from django.test import Client

from ingest.models import MetricRecord
from protocols.models import PendingRecord
from protocols.remote_write import WriteRequest
from protocols.services import pending_flush
from tests.conftest import TEST_API_KEY
from tests.protocols.conftest import CONTRACT, T0, server_series, write_request

pytestmark = pytest.mark.django_db


def test_four_series_of_one_instance_and_instant_form_one_record(post_write):
    body = write_request(server_series("ppdb001.example:9100", T0, state=None))
    response = post_write(body)
    assert response.status_code == 200, response.content
    assert response.json() | {} == {
        "status": "accepted",
        "samples": 4,
        "ignored": 0,
        "stored": 1,
        "duplicates": 0,
        "pending": 0,
        "filled": 0,
        "dropped": 0,
    }
    record = MetricRecord.objects.get()
    assert record.server.name == "ppdb001.example"  # the instance's port is stripped
    assert record.timestamp == T0 and record.state == "healthy"
    assert (record.cpu_pct, record.mem_pct, record.disk_io_mb_s, record.latency_ms) == tuple(CONTRACT.values())


def test_a_retried_write_stores_nothing_twice(post_write):
    body = write_request(server_series("ppdb001", T0) + server_series("ppdb002", T0))
    assert post_write(body).json()["stored"] == 2
    again = post_write(body)
    assert again.status_code == 200
    assert again.json()["stored"] == 0 and again.json()["duplicates"] == 2
    assert MetricRecord.objects.count() == 2


def test_server_name_label_recording_rule_names_and_state_info_series(post_write):
    series = server_series("ppweb003", T0, label="server_name", prefix="tft:")
    series.append(({"__name__": "tft:state", "server_name": "ppweb003", "state": "heavy_load"}, [(1.0, T0)]))
    series.append(({"__name__": "node_load1", "server_name": "ppweb003"}, [(3.0, T0)]))  # not ours: ignored
    response = post_write(write_request(series))
    assert response.json()["ignored"] == 1
    record = MetricRecord.objects.get()
    assert record.server.name == "ppweb003" and record.state == "heavy_load"


def test_staleness_markers_are_ignored_not_stored(post_write):
    stale = struct.unpack("<d", (0x7FF0000000000002).to_bytes(8, "little"))[0]  # Prometheus' StaleNaN
    series = [*server_series("ppdb001", T0), ({"__name__": "cpu_pct", "instance": "ppdb002"}, [(stale, T0)])]
    response = post_write(write_request(series))
    assert response.json()["ignored"] == 1 and response.json()["stored"] == 1
    assert PendingRecord.objects.count() == 0


def test_a_value_outside_the_contract_rejects_the_whole_write(post_write):
    body = write_request(server_series("ppdb001", T0) + server_series("ppdb002", T0, cpu_pct=150.0))
    response = post_write(body)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_samples"
    assert "ppdb002" in response.json()["errors"][0]["message"]
    assert MetricRecord.objects.count() == 0 and PendingRecord.objects.count() == 0


def test_a_series_naming_no_server_is_a_400(post_write):
    response = post_write(write_request([({"__name__": "cpu_pct"}, [(1.0, T0)])]))
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "server_name"


@pytest.mark.parametrize(
    "body",
    [
        b"not snappy at all",
        bytes(cramjam.snappy.compress_raw(b"\xff\xff\xff\xff garbage")),
        b"\xff\xff\xff\xff\xff\xff",
    ],
    ids=["not-snappy", "not-protobuf", "bad-length-header"],
)
def test_malformed_bodies_are_400_and_store_nothing(post_write, body):
    response = post_write(body)
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "malformed_body"
    assert MetricRecord.objects.count() == 0


def test_a_body_declaring_a_huge_decompressed_size_is_refused_before_decompressing(post_write, settings):
    settings.TFT_PROTOCOL_MAX_DECOMPRESSED_BYTES = 4096
    body = bytes(cramjam.snappy.compress_raw(b"\0" * 5000))  # 5000 in the header, a few bytes on the wire
    response = post_write(body)
    assert response.status_code == 413 and "5000" in response.json()["message"]


def test_a_body_over_the_upload_limit_is_413(post_write, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    response = post_write(b"x" * 2048)
    assert response.status_code == 413


def test_remote_write_2_is_refused_with_415(client):
    body = write_request(server_series("ppdb001", T0))
    response = client.post(
        "/api/v1/write",
        body,
        content_type="application/x-protobuf;proto=io.prometheus.write.v2.Request",
        HTTP_CONTENT_ENCODING="snappy",
    )
    assert response.status_code == 415


@pytest.mark.parametrize("auth", ["bearer", "basic", "basic-user-only", "x-api-key"])
def test_the_feed_key_is_taken_as_prometheus_sends_it(auth):
    headers = {
        "bearer": {"HTTP_AUTHORIZATION": f"Bearer {TEST_API_KEY}"},
        "basic": {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"prometheus:{TEST_API_KEY}".encode()).decode()},
        "basic-user-only": {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"{TEST_API_KEY}:".encode()).decode()},
        "x-api-key": {"HTTP_X_API_KEY": TEST_API_KEY},
    }[auth]
    response = Client(HTTP_HOST="localhost").post(
        "/api/v1/write", write_request(server_series("ppdb001", T0)), content_type="application/x-protobuf", **headers
    )
    assert response.status_code == 200, response.content


def test_a_wrong_or_missing_key_is_refused(anon_client):
    body = write_request(server_series("ppdb001", T0))
    assert anon_client.post("/api/v1/write", body, content_type="application/x-protobuf").status_code == 401
    wrong = anon_client.post(
        "/api/v1/write", body, content_type="application/x-protobuf", HTTP_AUTHORIZATION="Bearer nope"
    )
    assert wrong.status_code == 403
    assert MetricRecord.objects.count() == 0


def test_metrics_split_over_two_writes_complete_one_record(post_write):
    first = post_write(write_request(server_series("ppdb001", T0, latency_ms=None, disk_io_mb_s=None)))
    assert first.json()["pending"] == 1 and MetricRecord.objects.count() == 0
    second = post_write(write_request(server_series("ppdb001", T0, cpu_pct=None, mem_pct=None)))
    assert second.json()["stored"] == 1
    assert PendingRecord.objects.count() == 0
    assert MetricRecord.objects.get().latency_ms == CONTRACT["latency_ms"]


def test_a_record_missing_a_metric_past_the_wait_takes_the_last_known_value(post_write, settings):
    post_write(write_request(server_series("ppdb001", T0)))
    later = T0 + timedelta(seconds=5)
    post_write(write_request(server_series("ppdb001", later, latency_ms=None, cpu_pct=50.0)))
    assert MetricRecord.objects.count() == 1
    result = pending_flush(
        now=PendingRecord.objects.get().created_at + timedelta(seconds=settings.TFT_PROTOCOL_WAIT_SECONDS + 1)
    )
    assert result.filled == 1 and result.stored == 1
    record = MetricRecord.objects.get(timestamp=later)
    assert record.cpu_pct == 50.0 and record.latency_ms == CONTRACT["latency_ms"]


def test_a_record_missing_a_metric_with_no_history_is_dropped_and_counted(post_write, settings):
    from prometheus_client import REGISTRY

    before = REGISTRY.get_sample_value("tft_protocol_records_total", {"outcome": "dropped"}) or 0
    post_write(write_request(server_series("ppnew001", T0, latency_ms=None)))
    result = pending_flush(
        now=PendingRecord.objects.get().created_at + timedelta(seconds=settings.TFT_PROTOCOL_WAIT_SECONDS + 1)
    )
    assert result.dropped == 1 and result.stored == 0
    assert MetricRecord.objects.count() == 0 and PendingRecord.objects.count() == 0
    assert REGISTRY.get_sample_value("tft_protocol_records_total", {"outcome": "dropped"}) == before + 1


def test_drop_mode_drops_an_incomplete_record_even_with_history(post_write, settings):
    settings.TFT_PROTOCOL_INCOMPLETE = "drop"
    post_write(write_request(server_series("ppdb001", T0)))
    post_write(write_request(server_series("ppdb001", T0 + timedelta(seconds=5), latency_ms=None)))
    result = pending_flush(
        now=PendingRecord.objects.get().created_at + timedelta(seconds=settings.TFT_PROTOCOL_WAIT_SECONDS + 1)
    )
    assert result.dropped == 1 and MetricRecord.objects.count() == 1


def test_a_record_still_within_its_wait_is_kept(post_write):
    post_write(write_request(server_series("ppdb001", T0, latency_ms=None)))
    result = pending_flush()
    assert result.dropped == result.filled == 0 and PendingRecord.objects.count() == 1


@pytest.mark.parametrize("ms", [0, -1, 2**62], ids=["epoch", "negative", "year-146-million"])
def test_sample_times_outside_1970_to_9999_are_a_400(post_write, ms):
    request = WriteRequest()
    series = request.timeseries.add()
    series.labels.add(name="__name__", value="cpu_pct")
    series.labels.add(name="instance", value="ppdb001")
    series.samples.add(value=1.0, timestamp=ms)
    response = post_write(bytes(cramjam.snappy.compress_raw(request.SerializeToString())))
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "timestamp"


def test_random_bodies_never_get_a_5xx(post_write):
    rng = random.Random(26)
    valid = WriteRequest.FromString(bytes(cramjam.snappy.decompress_raw(write_request(server_series("ppdb001", T0)))))
    raw = bytearray(valid.SerializeToString())
    for _ in range(300):
        mutated = bytearray(raw)
        for _ in range(rng.randint(1, 8)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        response = post_write(bytes(cramjam.snappy.compress_raw(bytes(mutated))))
        assert response.status_code in (200, 400), (response.status_code, response.content)


def test_over_the_feed_rate_limit_is_429_with_retry_after(post_write, settings):
    caches["ratelimit"].clear()  # this minute's count so far is other tests'
    settings.TFT_RATE_LIMIT_FEED_PER_MINUTE = 2
    codes = [
        post_write(write_request(server_series("ppdb001", T0 + timedelta(seconds=i)))).status_code for i in range(3)
    ]
    assert codes == [200, 200, 429]
    response = post_write(write_request(server_series("ppdb001", T0 + timedelta(seconds=9))))
    assert 1 <= int(response["Retry-After"]) <= 60
    assert MetricRecord.objects.count() == 2


def test_more_records_in_one_write_than_the_feed_takes_is_413(post_write, settings):
    settings.TFT_MAX_BATCH_RECORDS = 3
    body = write_request([s for n in range(4) for s in server_series(f"ppdb00{n}", T0)])
    response = post_write(body)
    assert response.status_code == 413 and "max_samples_per_send" in response.json()["message"]
    assert MetricRecord.objects.count() == 0
