"""Every validation rule rejects the batch with index and field, and stores nothing."""

from datetime import UTC, datetime, timedelta

import pytest

from ingest.models import MetricBucket, MetricRecord, Server
from tests.conftest import RECENT, make_record, post_feed

DAY = RECENT.date().isoformat()

pytestmark = pytest.mark.django_db


def _reject(client, records, status=400):
    response = post_feed(client, {"records": records})
    assert response.status_code == status, response.content
    assert MetricRecord.objects.count() == 0
    assert MetricBucket.objects.count() == 0
    assert Server.objects.count() == 0
    return response.json()


def _problem(body, index, field):
    return [e for e in body["errors"] if e["index"] == index and e["field"] == field]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cpu_pct", 100.5),
        ("cpu_pct", -1),
        ("mem_pct", 101),
        ("disk_io_mb_s", -0.1),
        ("latency_ms", -5),
        ("cpu_pct", "45.2"),
        ("mem_pct", None),
        ("latency_ms", True),
        ("disk_io_mb_s", 10**400),
        ("timestamp", "yesterday"),
        ("timestamp", "2025-10-13"),
        ("timestamp", "2025-13-01T00:00:00"),
        ("timestamp", 1697212800),
        ("server_name", ""),
        ("server_name", "x" * 65),
        ("server_name", "<script>alert(1)</script>"),
        ("server_name", "db 01"),
        ("server_name", 42),
        ("state", "exploded"),
        ("state", "HEALTHY"),
    ],
)
def test_invalid_value_is_rejected_with_index_and_field(client, field, value):
    bad = make_record("ppdb002")
    bad[field] = value
    body = _reject(client, [make_record(), bad])

    assert _problem(body, 1, field), body
    assert not _problem(body, 0, field)


@pytest.mark.parametrize(
    "field", ["timestamp", "server_name", "cpu_pct", "mem_pct", "disk_io_mb_s", "latency_ms", "state"]
)
def test_missing_field_is_rejected(client, field):
    bad = make_record()
    del bad[field]
    body = _reject(client, [bad])

    assert _problem(body, 0, field)[0]["message"] == "is required"


def test_unknown_state_lists_the_valid_states(client):
    body = _reject(client, [make_record(state="broken")])

    message = _problem(body, 0, "state")[0]["message"]
    for state in (
        "critical_issue",
        "healthy",
        "heavy_load",
        "idle",
        "maintenance",
        "morning_spike",
        "offline",
        "recovery",
    ):
        assert state in message


def test_every_problem_of_every_record_is_listed(client):
    first = make_record(cpu=500)
    second = make_record("ppweb001", state="nope", mem=-2)
    body = _reject(client, [first, make_record("ok1"), second])

    assert {(e["index"], e["field"]) for e in body["errors"]} == {(0, "cpu_pct"), (2, "state"), (2, "mem_pct")}


def test_timestamp_more_than_five_minutes_ahead_is_rejected(client):
    future = datetime.now(UTC) + timedelta(minutes=6)
    body = _reject(client, [make_record(ts=future)])

    assert "future" in _problem(body, 0, "timestamp")[0]["message"]


def test_a_bad_timestamp_shared_by_several_records_is_reported_on_each(client):
    future = (datetime.now(UTC) + timedelta(minutes=6)).isoformat()
    records = [make_record("ppdb001", future), make_record("ppdb002"), make_record("ppdb003", future)]
    body = _reject(client, records)

    assert {(e["index"], e["field"]) for e in body["errors"]} == {(0, "timestamp"), (2, "timestamp")}


def test_timestamp_a_little_ahead_is_accepted(client):
    response = post_feed(client, {"records": [make_record(ts=datetime.now(UTC) + timedelta(minutes=4))]})

    assert response.status_code == 200


def test_nan_token_in_json_is_rejected(client):
    body = '{"records": [{"timestamp": "2025-10-13T16:00:00", "server_name": "a", "cpu_pct": NaN, "mem_pct": 1, "disk_io_mb_s": 1, "latency_ms": 1, "state": "healthy"}]}'
    response = post_feed(client, body)

    assert response.status_code == 400
    assert MetricRecord.objects.count() == 0


def test_malformed_json_is_a_clear_400(client):
    response = post_feed(client, '{"records": [')

    assert response.status_code == 400
    assert response.json()["error"] == "parse_error"


def test_wrong_content_type_is_415(client):
    response = post_feed(client, "records=1", content_type="text/plain")

    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"


@pytest.mark.parametrize("body", [{}, {"records": []}, {"records": {}}, {"records": None}, [], '"text"'])
def test_missing_or_empty_records_is_400(client, body):
    response = post_feed(client, body)

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "records"


def test_record_that_is_not_an_object_is_rejected(client):
    body = _reject(client, [make_record(), "not a record"])

    assert _problem(body, 1, "record")


def test_too_many_records_is_413(client, settings):
    settings.TFT_MAX_BATCH_RECORDS = 3
    body = _reject(client, [make_record(f"s{i}") for i in range(4)], status=413)

    assert body["error"] == "batch_too_large"


@pytest.mark.parametrize(
    "timestamp",
    [
        f"{DAY}T16:00:00",
        f"{DAY}T16:00:00Z",
        f"{DAY}T16:00:00.123456Z",
        f"{DAY}T18:00:00+02:00",
        f"{DAY} 16:00:00",
        f"{DAY}T16:00:00.5",
    ],
)
def test_iso_timestamps_are_read_as_utc(client, timestamp):
    response = post_feed(client, {"records": [make_record(ts=timestamp)]})

    assert response.status_code == 200, response.content
    stored = MetricRecord.objects.get().timestamp
    assert stored.replace(microsecond=0) == RECENT


def test_extra_fields_are_ignored(client):
    record = make_record()
    record["hostname"] = "ignored"

    assert post_feed(client, {"records": [record]}).status_code == 200
