"""GET /predictions/current in pages: a fleet above TFT_PREDICTIONS_PAGE_SIZE, or ?limit= / ?cursor=."""

import pytest

from forecasting.runs.chunks import fleet_predict
from tests.conftest import ingest_fleet

pytestmark = pytest.mark.django_db
SERVERS = ["ppdb001", "ppdb002", "ppml001", "ppweb001", "ppweb002"]


@pytest.fixture
def five_servers(no_models):
    ingest_fleet({name: ({"cpu_pct": 97.0} if name == "ppweb002" else {}) for name in SERVERS})
    return fleet_predict()


def _pages(client, url: str) -> list[dict]:
    pages = []
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.content
        pages.append(response.json())
        url = pages[-1].get("next")
        assert (response.get("Link") is not None) == bool(url)
    return pages


def test_a_fleet_within_the_page_size_gets_the_guides_body(client, five_servers):
    body = client.get("/predictions/current").json()
    assert set(body) == {"predictions", "alerts", "environment", "metadata"}
    assert sorted(body["predictions"]) == SERVERS


def test_limit_pages_through_every_server_once_in_name_order(client, five_servers):
    pages = _pages(client, "/predictions/current?limit=2")
    assert [sorted(p["predictions"]) for p in pages] == [SERVERS[:2], SERVERS[2:4], SERVERS[4:]]
    assert [p["metadata"]["page"]["servers"] for p in pages] == [2, 2, 1]


def test_a_fleet_above_the_page_size_gets_its_first_page_and_a_next_link(client, five_servers, settings):
    settings.TFT_PREDICTIONS_PAGE_SIZE = 3
    response = client.get("/predictions/current")
    body = response.json()
    assert sorted(body["predictions"]) == SERVERS[:3]
    assert body["next"].split("://", 1)[1].split("/", 1)[1].startswith("predictions/current?cursor=")
    assert response["Link"] == f'<{body["next"]}>; rel="next"'
    assert body["environment"]["total_servers"] == 5  # the environment is always the fleet's


def test_a_page_carries_only_its_servers_alerts(client, five_servers):
    first, *_, last = _pages(client, "/predictions/current?limit=2")
    assert first["alerts"] == []
    assert {a["server"] for a in last["alerts"]} == {"ppweb002"}


def test_guide_names_keep_their_page_and_next(client, five_servers):
    body = client.get("/predictions/current?limit=4&names=guide").json()
    assert "cpu_percent" in body["predictions"]["ppdb001"]
    assert "names=guide" in body["next"] and "limit=4" in body["next"]


@pytest.mark.parametrize("query", ["limit=0", "limit=x", "limit=1001", "limit=-1"])
def test_a_bad_limit_is_a_400_naming_it(client, five_servers, query):
    response = client.get(f"/predictions/current?{query}")
    assert response.status_code == 400
    assert response.json()["message"].startswith("limit:")


@pytest.mark.parametrize("cursor", ["%%%", "Zm9vIGJhcg", "4pyTIMOgIGxhIG1vZGU"])  # not base64, "foo bar", not a name
def test_a_bad_cursor_is_a_400_naming_it(client, five_servers, cursor):
    response = client.get(f"/predictions/current?cursor={cursor}")
    assert response.status_code == 400
    assert response.json()["message"].startswith("cursor:")
