"""The fleet page in pages of FLEET_PAGE_ROWS rows, riskiest first, with a server-name search."""

import importlib
import re
from datetime import UTC, datetime

import pytest
from django.apps import apps as django_apps
from django.db import connection
from django.test.utils import CaptureQueriesContext

from dashboard import selectors
from forecasting.engine.serving import peak_ratios
from forecasting.models import PredictionRun, ServerForecast
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
    _replace_forecast(name, prob_8h=0.99)

    first = _rows(viewer_client.get("/dashboard/"))
    viewer_client.get("/dashboard/?page=2")

    assert first[0] == name  # the riskiest now
    others = [k for k, row in shown_before.items() if row.name != name]
    assert others and all(selectors._details_memo[k] is shown_before[k] for k in others)


def test_a_page_is_ordered_and_counted_by_the_database_without_summaries(seven_servers):
    with CaptureQueriesContext(connection) as queries:
        table = selectors._ranked_page(page=2, query="", now=datetime.now(UTC))

    sql = [q["sql"] for q in queries.captured_queries]
    assert len(sql) == 2 and "LIMIT 3" in sql[1] and "ORDER BY" in sql[1]  # the page's 3 rows, not all 7
    assert not any('"summary"' in q for q in sql)
    assert (table["total_rows"], table["matched"], table["pages"], len(table["rows"])) == (7, 7, 3, 3)
    assert [r.prob_8h for r in table["rows"]] == sorted((r.prob_8h for r in table["rows"]), reverse=True)


def test_the_memo_of_shown_rows_keeps_the_most_recently_shown(viewer_client, seven_servers, monkeypatch):
    monkeypatch.setattr(selectors, "DETAILS_KEPT", 4)
    selectors._details_memo.clear()

    for page in (1, 2, 3, 1):
        viewer_client.get(f"/dashboard/?page={page}")

    assert len(selectors._details_memo) == 4
    first_page = {ServerForecast.objects.get(current=True, server__name=n).pk for n in _rows(viewer_client.get("/dashboard/"))}
    assert first_page <= {forecast_id for _, forecast_id in selectors._details_memo}


def test_forecasts_stored_without_a_peak_ratio_get_it_from_their_summary_by_migration(seven_servers):
    backfill = importlib.import_module("forecasting.migrations.0022_serverforecast_peak_ratio_backfill")
    hot = ServerForecast.objects.get(current=True, server__name=seven_servers[0])
    expected = peak_ratios(hot.summary)[2]
    ServerForecast.objects.update(peak_ratio=None)  # rows from before migration 0021

    backfill._backfill(django_apps, None)

    assert expected > 0 and ServerForecast.objects.get(pk=hot.pk).peak_ratio == expected
    assert not ServerForecast.objects.filter(peak_ratio__isnull=True).exists()
