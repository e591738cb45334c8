"""Fields beyond the contract's 7: accepted (forward compatibility), not stored, reported."""

from datetime import timedelta

import pytest

from ingest.models import MetricRecord
from ingest.validation import MAX_IGNORED_NAMES
from tests.conftest import RECENT, make_record, post_feed

pytestmark = pytest.mark.django_db


def test_a_record_with_unknown_fields_is_accepted(client):
    record = {**make_record(), "host_id": "i-0abc", "region": "eu-west-1"}

    response = post_feed(client, {"records": [record]})

    assert response.status_code == 200, response.content
    assert MetricRecord.objects.count() == 1


def test_unknown_fields_are_counted_once_per_record_carrying_them(client):
    records = [{**make_record(ts=RECENT + timedelta(seconds=i)), "host_id": "x"} for i in range(3)]
    records[0]["region"] = "eu"

    body = post_feed(client, {"records": records}).json()

    assert body["ignored_fields"] == {"count": 4, "names": ["host_id", "region"]}


def test_a_batch_of_contract_records_reports_no_ignored_fields(client):
    body = post_feed(client, {"records": [make_record()]}).json()

    assert body["ignored_fields"] == {"count": 0, "names": []}


def test_ignored_field_names_are_capped(client):
    record = {**make_record(), **{f"extra_{i:02d}": i for i in range(MAX_IGNORED_NAMES + 5)}}

    body = post_feed(client, {"records": [record]}).json()

    assert body["ignored_fields"]["count"] == MAX_IGNORED_NAMES + 5
    assert body["ignored_fields"]["names"] == [f"extra_{i:02d}" for i in range(MAX_IGNORED_NAMES)]


def test_a_long_ignored_field_name_is_cut(client):
    record = {**make_record(), "x" * 5000: 1}

    names = post_feed(client, {"records": [record]}).json()["ignored_fields"]["names"]

    assert names == ["x" * 64]


def test_a_rejected_batch_does_not_report_ignored_fields(client):
    record = {**make_record(cpu=101.0), "host_id": "x"}

    body = post_feed(client, {"records": [record]}).json()

    assert body["error"] == "invalid_records"
    assert "ignored_fields" not in body
