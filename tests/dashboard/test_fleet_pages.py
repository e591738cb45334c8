"""The fleet page in pages of FLEET_PAGE_ROWS rows, riskiest first, with a server-name search."""

import re

import pytest

from dashboard import selectors
from forecasting.runs.chunks import fleet_predict
from tests.dashboard.conftest import hot_fleet

pytestmark = pytest.mark.django_db


def _rows(response) -> list[str]:
    return re.findall(r'<tr data-server="([^"]+)">', response.content.decode())


@pytest.fixture
def seven_servers(no_models, monkeypatch):
    monkeypatch.setattr(selectors, "FLEET_PAGE_ROWS", 3)
    names = hot_fleet(7, hot=1)
    fleet_predict()
    return names


def test_the_first_page_holds_the_riskiest_rows_and_a_next_link(viewer_client, seven_servers):
    response = viewer_client.get("/dashboard/")
    body = response.content.decode()
    assert len(_rows(response)) == 3 and _rows(response)[0] == "ppdb000"
    assert 'rel="next" href="?page=2"' in body and "page 1 of 3" in body
    assert body.count("<polyline points=") == 3  # the heatmap and sparklines follow the page


def test_the_pages_together_show_every_server_once(viewer_client, seven_servers):
    shown = [name for page in (1, 2, 3) for name in _rows(viewer_client.get(f"/dashboard/?page={page}"))]
    assert sorted(shown) == seven_servers


def test_a_page_past_the_end_shows_the_last_page(viewer_client, seven_servers):
    assert len(_rows(viewer_client.get("/dashboard/?page=99"))) == 1


def test_search_finds_a_server_on_any_page(viewer_client, seven_servers):
    last = _rows(viewer_client.get("/dashboard/?page=3"))[0]
    assert _rows(viewer_client.get(f"/dashboard/?q={last.upper()}")) == [last]


def test_a_search_without_match_says_so(viewer_client, seven_servers):
    body = viewer_client.get("/dashboard/?q=nosuchbox").content.decode()
    assert 'id="no-match"' in body and "The last run forecast no servers" not in body


def test_only_the_shown_rows_payloads_are_read(viewer_client, seven_servers):
    viewer_client.get("/dashboard/")  # this run's rows and first page, built once per process
    (details,) = selectors._details_memo.values()
    assert len(details) == 3  # the sparklines and heatmap cells of the 3 rows shown, not all 7

    body = viewer_client.get("/dashboard/?page=2").content.decode()

    assert len(details) == 6 and body.count("<polyline points=") == 3
    assert all(spark for _, spark in details.values())
