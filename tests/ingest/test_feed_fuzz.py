"""Property-based fuzzing of POST /feed/data and the read endpoints.

Every generated request must get a non-5xx answer; a 4xx is structured JSON naming index and field
where one applies, and a rejected request leaves the database untouched. Examples per test come
from TFT_FUZZ_EXAMPLES (default 1,700 × 3 tests). `make test` runs this file on PostgreSQL and again on
SQLite, each with its own seed, so CI draws 2 × 5,100 = 10,200 distinct cases (plus the fixed ones).
"""

import json
import math
import os
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from ingest.models import MetricBucket, MetricRecord
from tests.conftest import RECENT, make_record, post_feed

pytestmark = pytest.mark.django_db
EXAMPLES = int(os.environ.get("TFT_FUZZ_EXAMPLES", "1700"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])
# Fixed per database, different between them: the two passes of `make test` draw different cases.
SEED = {"postgresql": 27_001, "sqlite": 27_002}.get(connection.vendor, 27_000)
_NOW = datetime.now(UTC)
FIELDS = ("timestamp", "server_name", "cpu_pct", "mem_pct", "disk_io_mb_s", "latency_ms", "state")

junk = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=50), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
timestamps = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    # Around the window's edges (retention back, 5 minutes ahead) and inside it, where records are stored.
    st.datetimes(min_value=(_NOW - timedelta(days=16)).replace(tzinfo=None),
                 max_value=(_NOW + timedelta(hours=1)).replace(tzinfo=None),
                 timezones=st.sampled_from([UTC])).map(lambda d: d.isoformat()),
    st.integers(0, 300).map(lambda s: (_NOW - timedelta(hours=2, seconds=s)).isoformat()),  # a few buckets of one day
    st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0999-05-01T00:00:00"]),
    st.sampled_from(["2016-12-31T23:59:60Z", "2025-02-29T00:00:00", "0001-01-01T00:00:00", "9999-12-31T23:59:59+14:00",
                     "2025-10-13T16:00:00-23:59", "2025-10-13T16:00:00.000000001Z", "2025-10-13T16:00:00Z ",
                     "2025-10-13T16:00:00\x00", "2025-W42-1T16:00:00", "+002025-10-13T16:00:00"]),
    st.text(max_size=40),
)
names = st.one_of(
    st.from_regex(r"[a-z]{2,6}[0-9]{1,4}", fullmatch=True),
    st.text(max_size=80),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=300),
    st.sampled_from(["<script>alert(1)</script>", "a\u0000b", "NULL", "x" * 64, "x" * 65, "db 01", "ünïcödé", "\u202e"]),
)
metric_values = st.one_of(
    st.floats(min_value=0, max_value=100), st.floats(allow_nan=True, allow_infinity=True),
    # Finite values the rollup sums could not hold, and the maxima themselves.
    st.sampled_from([1e308, 1.7e308, 1.7976931348623157e308, 1e6, 1e6 + 1e-9, 8.64e7, 8.64e7 + 1e-7, 5e-324]),
    st.integers(min_value=-5, max_value=10**400), junk,
)
states = st.one_of(st.sampled_from(["healthy", "critical_issue", "idle", "offline"]), st.text(max_size=20), junk)


@st.composite
def records(draw):
    record = {}
    for field, strategy in zip(FIELDS, (timestamps, names, metric_values, metric_values, metric_values, metric_values,
                                        states), strict=True):
        choice = draw(st.integers(0, 9))
        if choice == 0:
            continue  # missing field
        record[field] = draw(junk) if choice == 1 else draw(strategy)
    if draw(st.booleans()):
        record[draw(st.text(max_size=10))] = draw(junk)  # extra field
    return record


def _check_response(response, n_before: int) -> None:
    assert response.status_code < 500, response.content[:500]
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    if response.status_code >= 400:
        assert isinstance(body.get("error"), str) and body.get("message")
        for problem in body.get("errors", []):
            assert set(problem) == {"index", "field", "message"}
        assert MetricRecord.objects.count() == n_before
    else:
        assert body["accepted"] + body["duplicates"] >= 1


@seed(SEED)
@FUZZ
@given(batch=st.lists(records(), min_size=0, max_size=8))
def test_fuzzed_records_never_cause_5xx_or_partial_writes(client, batch):
    before = MetricRecord.objects.count()

    response = post_feed(client, {"records": batch})

    _check_response(response, before)
    if response.status_code == 400 and response.json().get("error") == "invalid_records":
        indexes = {p["index"] for p in response.json()["errors"]}
        assert indexes <= set(range(len(batch)))


def _json_values():
    return st.recursive(
        st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=20),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
        max_leaves=20,
    )


@seed(SEED)
@FUZZ
@given(body=st.one_of(
    _json_values().map(json.dumps),
    st.dictionaries(st.sampled_from(["records", "Records", "record"]), _json_values(), max_size=2).map(json.dumps),
    st.text(max_size=200),
    st.binary(max_size=200),
    st.integers(1, 3000).map(lambda n: '{"records": ' + "[" * n + "]" * n + "}"),
    st.sampled_from(['{"records": [NaN]}', '{"records": [Infinity]}', '{"records": -Infinity}',
                     '{"records": [{"cpu_pct": NaN}]}', '{"records": [], "records": [1]}',
                     '{"records": [{"cpu_pct": 1, "cpu_pct": "x"}]}', "\ufeff{}", "", "null", "[]"]),
))
def test_fuzzed_bodies_never_cause_5xx(client, body):
    before = MetricRecord.objects.count()

    response = post_feed(client, body)

    _check_response(response, before)


@seed(SEED)
@FUZZ
@given(path=st.sampled_from(["/status", "/health", "/predictions/current", "/alerts/active"]),
       query=st.dictionaries(st.sampled_from(["servers", "server", "x"]), st.text(max_size=30), max_size=2),
       server=names)
def test_fuzzed_reads_never_cause_5xx(client, path, query, server):
    for target in (path, "/predictions/" + server):
        try:
            response = client.get(target, query)
        except UnicodeEncodeError:
            continue  # not a URL an HTTP client could send
        assert response.status_code < 500 or (response.status_code == 503 and "error" in response.json())


def test_ten_megabyte_body_is_refused_cleanly(client):
    record = make_record()
    record["server_name"] = "x" * (10 * 1024 * 1024)
    before = MetricRecord.objects.count()

    response = post_feed(client, {"records": [record]})

    _check_response(response, before)
    assert response.status_code in (400, 413)


def test_nested_too_deep_is_a_parse_error(client):
    response = post_feed(client, "[" * 200_000 + "]" * 200_000)

    assert response.status_code == 400
    assert response.json()["error"] == "parse_error"


def test_huge_numbers_and_infinity_literals_are_rejected(client):
    body = '{"records": [{"timestamp": "' + RECENT.isoformat() + '", "server_name": "a", "cpu_pct": 1e999, "mem_pct": 1, "disk_io_mb_s": 1, "latency_ms": 1, "state": "healthy"}]}'

    response = post_feed(client, body)

    assert response.status_code == 400
    assert response.json()["errors"] == [{"index": 0, "field": "cpu_pct", "message": "must be a finite number"}]
    assert MetricBucket.objects.count() == 0
    assert math.isinf(float("1e999"))
