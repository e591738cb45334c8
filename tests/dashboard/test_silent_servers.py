"""The fleet page counts silent servers out of warm-up and lists them as silent."""

from datetime import UTC, datetime, timedelta

import pytest

from ingest.services import records_ingest
from ingest.validation import validate_records
from tests.conftest import RECENT, make_record, series

pytestmark = pytest.mark.django_db


def _store(records, *, received_at):
    clean, problems = validate_records(records)
    assert not problems
    records_ingest(records=clean, received_at=received_at)


def test_a_stray_name_is_listed_as_silent_not_as_warming_up(viewer_client, settings):
    settings.TFT_WARMUP_RECORDS = 5
    now = datetime.now(UTC)
    _store([make_record("ppdb0001", ts=RECENT)], received_at=now - timedelta(hours=4))
    _store(series("ppdb001", n=5) + series("ppweb001", n=5), received_at=now)

    body = viewer_client.get("/dashboard/").content.decode()

    assert 'id="warmup"' not in body
    assert 'id="silent"' in body and "ppdb0001" in body
    assert '<div class="value" id="tile-ready">2 / 2</div>' in body


def test_a_fleet_that_all_went_silent_is_not_shown_as_having_no_data(viewer_client):
    _store(series("ppdb001", n=3), received_at=datetime.now(UTC) - timedelta(hours=4))

    body = viewer_client.get("/dashboard/").content.decode()

    assert 'id="empty-no-data"' not in body
    assert 'id="silent"' in body
