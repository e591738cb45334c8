"""A server from which nothing has arrived for TFT_SERVER_SILENT_AFTER_MINUTES is silent: counted out
of the fleet's warm-up (and of servers_tracked) and listed as silent, until its next batch."""

from datetime import UTC, datetime, timedelta

import pytest

from ingest.selectors import fleet_readiness, server_readiness_list
from ingest.services import records_ingest
from ingest.validation import validate_records
from tests.conftest import RECENT, make_record, post_feed, series

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _small_warmup(settings):
    settings.TFT_WARMUP_RECORDS = 5
    settings.TFT_SERVER_SILENT_AFTER_MINUTES = 180


def _store(records, *, received_at):
    clean, problems = validate_records(records)
    assert not problems
    records_ingest(records=clean, received_at=received_at)


@pytest.fixture
def fleet_with_a_stray():
    """Two ready servers feeding now, and two stray records of a mistyped name that arrived 4 h ago."""
    now = datetime.now(UTC)
    _store(
        [make_record("ppdb0001", ts=RECENT), make_record("ppdb0001", ts=RECENT + timedelta(seconds=5))],
        received_at=now - timedelta(hours=4),
    )
    _store(series("ppdb001", n=5) + series("ppweb001", n=5), received_at=now)


def test_stray_records_of_a_silent_name_do_not_hold_the_fleet_in_warmup(fleet_with_a_stray):
    readiness = fleet_readiness()

    assert (readiness.tracked, readiness.ready, readiness.silent) == (2, 2, 1)
    assert readiness.is_warmed_up


def test_a_name_that_fed_recently_still_holds_warmup(settings, fleet_with_a_stray):
    settings.TFT_SERVER_SILENT_AFTER_MINUTES = 5 * 60  # the stray's 4 h are not silence yet

    readiness = fleet_readiness()

    assert (readiness.tracked, readiness.ready, readiness.silent) == (3, 2, 0)
    assert not readiness.is_warmed_up


def test_status_counts_the_silent_server_out_and_lists_it_as_silent(client, fleet_with_a_stray):
    body = client.get("/status?servers=1").json()

    assert body["warmup"]["is_warmed_up"] and body["servers_tracked"] == 2
    assert body["servers_silent"] == 1
    assert "1 silent, counted out" in body["warmup"]["message"]
    assert {s["server"]: s["silent"] for s in body["servers"]} == {
        "ppdb0001": True,
        "ppdb001": False,
        "ppweb001": False,
    }


def test_the_feed_response_reports_warmup_complete_despite_the_stray(client, fleet_with_a_stray):
    body = post_feed(client, {"records": series("ppdb001", n=1, start=RECENT + timedelta(minutes=1))}).json()

    assert (body["servers_tracked"], body["servers_ready"], body["warmup_complete"]) == (2, 2, True)


def test_a_silent_server_counts_again_with_its_next_batch(client, fleet_with_a_stray):
    assert (
        post_feed(client, {"records": [make_record("ppdb0001", ts=RECENT + timedelta(minutes=1))]}).status_code == 200
    )

    readiness = fleet_readiness()

    assert (readiness.tracked, readiness.ready, readiness.silent) == (3, 2, 0)
    assert not [s for s in server_readiness_list() if s["silent"]]


def test_a_fleet_that_all_went_silent_says_so(client):
    _store(series("ppdb001", n=5), received_at=datetime.now(UTC) - timedelta(hours=4))

    warmup = client.get("/status").json()["warmup"]

    assert not warmup["is_warmed_up"]
    assert warmup["message"] == "No data for 180 minutes: all 1 servers silent"
