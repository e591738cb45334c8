"""The fleet page in pages of FLEET_PAGE_ROWS rows, riskiest first, with a server-name search."""

import re
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from dashboard import selectors
from forecasting.engine.serving import peak_ratios
from forecasting.models import PredictionRun, ServerForecast
from forecasting.runs.chunks import fleet_predict
from forecasting.runs.selectors import current_run
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
    selectors._details_memo.clear()
    viewer_client.get("/dashboard/")
    assert len(selectors._details_memo) == 3  # the sparklines and heatmap cells of the 3 rows shown, not all 7

    body = viewer_client.get("/dashboard/?page=2").content.decode()

    assert len(selectors._details_memo) == 6 and body.count("<polyline points=") == 3
    assert all(row.spark for row in selectors._details_memo.values())


def _replace_forecast(name: str, **changes) -> PredictionRun:
    """A new complete run whose one forecast replaces `name`'s current one, with `changes`."""
    replaced = ServerForecast.objects.get(current=True, server__name=name)
    ServerForecast.objects.filter(pk=replaced.pk).update(current=False)
    now = datetime.now(UTC)
    run = PredictionRun.objects.create(status=PredictionRun.Status.COMPLETE, started_at=now, finished_at=now,
                                       heartbeat_at=now, servers=1, chunks_total=1, chunks_done=1)  # fmt: skip
    replaced.pk, replaced.run, replaced.current = None, run, True
    for field, value in changes.items():
        setattr(replaced, field, value)
    replaced.save()
    return run


def test_a_run_reranks_the_rows_and_keeps_the_other_forecasts_shown_rows(viewer_client, seven_servers):
    viewer_client.get("/dashboard/?page=2")
    shown_before = dict(selectors._details_memo)
    name = seven_servers[3]
    run = _replace_forecast(name, prob_8h=0.99)

    rows = selectors._run_rows(run, "/dashboard/servers/")

    assert rows[0].name == name and rows[0].prob_8h == 0.99  # the riskiest now
    others = [k for k, row in shown_before.items() if row.name != name]
    assert others and all(selectors._details_memo[k] is shown_before[k] for k in others)


def test_the_order_reads_no_forecast_summary(seven_servers):
    with CaptureQueriesContext(connection) as queries:
        selectors._run_rows(current_run(), "/s/")

    assert queries.captured_queries and not any('"summary"' in q["sql"] for q in queries.captured_queries)


def test_a_forecast_stored_without_a_peak_ratio_is_ranked_from_its_summary(seven_servers):
    hot = ServerForecast.objects.get(current=True, server__name=seven_servers[0])
    expected = peak_ratios(hot.summary)[2]
    ServerForecast.objects.filter(current=True).update(peak_ratio=None)  # rows from before migration 0021
    selectors._rows_memo.clear()

    rows = {r.name: r for r in selectors._run_rows(current_run(), "/s/")}

    assert expected > 0 and rows[seven_servers[0]].peak_ratio == expected
