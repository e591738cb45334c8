"""Server render time of each dashboard page with 20 and 200 servers, 24 h of history each and a
full stored run. The figures are logged and written to test-artifacts/dashboard-render-times.json.

The target is 300 ms per page with 200 servers (DASHBOARD_RENDER_BUDGET_MS overrides it on a
machine known to be slower). The assertion uses the best of 9 renders, which is the page's own cost;
the median is recorded beside it. The fleet page caches its per-run table in each process, so it is
measured twice: as usual, and as the first request after a run (cache cleared before each render).
The query-count test in test_views.py is the load-independent guarantee.
"""

import json
import logging
import os
import statistics
import time
from pathlib import Path

import pytest
from django.core.cache import cache

from forecasting.models import Alert
from forecasting.runs.chunks import fleet_predict
from tests.dashboard.conftest import hot_fleet

pytestmark = [pytest.mark.slow, pytest.mark.django_db]
logger = logging.getLogger(__name__)
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
BUDGET_MS = float(os.environ.get("DASHBOARD_RENDER_BUDGET_MS", "300"))
REPEATS = 9


def _timings_ms(client, path: str, *, cold: bool = False) -> dict:
    client.get(path)  # warm the template cache and the database's
    times = []
    for _ in range(REPEATS):
        if cold:
            cache.clear()  # as for the first request after a run: the fleet rows are computed afresh
        started = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, path
    # The best of the repeats is the page's own cost; the median adds what the neighbours' load costs.
    return {"min": round(min(times), 1), "median": round(statistics.median(times), 1)}


@pytest.mark.parametrize("servers", [20, 200])
def test_pages_render_within_budget(viewer_client, no_models, servers):
    names = hot_fleet(servers, hot=max(1, servers // 10), buckets=288)
    run = fleet_predict()
    assert run.servers == servers
    assert Alert.objects.exists()

    pages = {
        "fleet": "/dashboard/",
        "server": f"/dashboard/servers/{names[0]}/",
        "alerts": "/dashboard/alerts/?state=all",
        "poll": "/dashboard/poll.json",
    }
    measured = {name: _timings_ms(viewer_client, path) for name, path in pages.items()}
    measured["fleet_first_after_run"] = _timings_ms(viewer_client, pages["fleet"], cold=True)
    logger.info("dashboard render times", extra={"servers": servers, "ms": measured})

    ARTIFACTS.mkdir(exist_ok=True)
    out = ARTIFACTS / "dashboard-render-times.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    results[str(servers)] = measured
    out.write_text(json.dumps(results, indent=2, sort_keys=True))
    for name, ms in measured.items():
        # The first render after a run is once per run and process; on a CPU shared with training
        # jobs it swings several-fold, so it only guards against a gross regression.
        budget = BUDGET_MS * (4 if name == "fleet_first_after_run" else 1)
        assert ms["min"] <= budget, f"{name} page took {ms} ms with {servers} servers"
