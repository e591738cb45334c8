"""``python -m bench.read_pages`` — GET /predictions/current page by page, and the dashboard's fleet page,
at a large fleet (issue 25).

Seeds its own database (``tftsite_bench_pages``): N servers and one complete prediction run whose
stored forecasts are the heuristic's served JSON for real simulated windows (the size a served
forecast has: about 8 KB a server). Then, in-process through Django's test client (the view, the
selector and the database, not the network), walks every page of the default size ``--reps`` times
and reports per-page latency (median, p99) and bytes, beside one whole-fleet body built the old way
(``predictions_current_json``: what the endpoint served before pages, 87 MB at 10,000 servers).

    .venv/bin/python -m bench.read_pages --servers 10000 --reps 3
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime, timedelta

from bench import common

DB = "tftsite_bench_pages"


def _database() -> None:
    import psycopg

    with psycopg.connect(common.pg_admin_dsn(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    env = common.bench_env()
    env["DATABASE_URL"] = env["DATABASE_URL"].rsplit("/", 1)[0] + "/" + DB
    env["TFT_DATA_DIR"] = str(common.DATA_DIR / DB)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(common.DATA_DIR / DB / "prometheus")
    os.makedirs(env["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)
    os.environ.update(env)


def _seed(servers: int) -> None:
    import numpy as np
    from django.core.management import call_command

    from forecasting.engine.heuristic import heuristic_quantiles
    from forecasting.engine.serving import peak_ratios, serve_forecasts
    from forecasting.engine.simulator import fleet_names, simulate_buckets
    from forecasting.engine.spec import DEFAULT_THRESHOLDS
    from forecasting.models import PredictionRun, ServerForecast
    from ingest.models import Server

    call_command("migrate", "--noinput", verbosity=0)
    call_command("collectstatic", "--noinput", verbosity=0)  # the dashboard's hashed asset names
    now = datetime.now(UTC)
    windows = simulate_buckets(servers=fleet_names(20), start=now - timedelta(days=1), end=now, seed=3)
    quantiles = np.stack([heuristic_quantiles(w) for w in windows])
    served = serve_forecasts(windows, quantiles, {m: dict(r) for m, r in DEFAULT_THRESHOLDS.items()})
    names = [f"srv{i:06d}" for i in range(servers)]
    Server.objects.bulk_create(
        [Server(name=n, profile="generic", first_seen=now, last_seen=now, last_received_at=now, record_count=500)
         for n in names], batch_size=2000)  # fmt: skip
    run = PredictionRun.objects.create(status=PredictionRun.Status.COMPLETE, started_at=now, finished_at=now,
                                       heartbeat_at=now, servers=servers, chunks_total=1, chunks_done=1)  # fmt: skip
    ids = dict(Server.objects.values_list("name", "id"))
    rows = []
    for i, name in enumerate(names):
        s = served[i % len(served)]
        # current=True: the forecast every reader serves (runs.selectors.served_forecasts)
        rows.append(ServerForecast(run=run, server_id=ids[name], method="heuristic", origin=now, encoder_steps=288,
                                   prob_30m=s.prob_30m, prob_8h=s.prob_8h, state="healthy", payload=s.payload,
                                   summary=s.summary, peak_ratio=peak_ratios(s.summary)[2], alert_candidates=[],
                                   explanation={}, current=True))  # fmt: skip
        if len(rows) == 1000:
            ServerForecast.objects.bulk_create(rows)
            rows = []
    ServerForecast.objects.bulk_create(rows)


def _walk(client) -> tuple[list[float], list[int]]:
    url, seconds, sizes = "/predictions/current", [], []
    while url:
        started = time.perf_counter()
        response = client.get(url)
        seconds.append(time.perf_counter() - started)
        assert response.status_code == 200, response.content[:300]
        sizes.append(len(response.content))
        url = response.get("Link", "").split(">")[0].lstrip("<") or None
    return seconds, sizes


def _staggered_run(share: int = 5) -> None:
    """A new complete run that re-forecasts one server in `share` (a staggered run: TFT_PREDICTION_STAGGER_RUNS),
    as the workers write it: the servers' previous forecasts stop being current, the new ones are."""
    from django.db import transaction

    from forecasting.models import PredictionRun, ServerForecast

    now = datetime.now(UTC)
    with transaction.atomic():
        run = PredictionRun.objects.create(status=PredictionRun.Status.COMPLETE, started_at=now, finished_at=now,
                                           heartbeat_at=now, servers=0, chunks_total=1, chunks_done=1)  # fmt: skip
        due = list(ServerForecast.objects.filter(current=True).order_by("?")
                   .values_list("id", flat=True)[: ServerForecast.objects.filter(current=True).count() // share])  # fmt: skip
        rows = list(ServerForecast.objects.filter(id__in=due))
        ServerForecast.objects.filter(id__in=due).update(current=False)
        for row in rows:
            row.pk, row.run, row.origin = None, run, now
        ServerForecast.objects.bulk_create(rows, batch_size=1000)
        PredictionRun.objects.filter(pk=run.pk).update(servers=len(rows))


def _fleet_page(reps: int) -> dict:
    """The dashboard's fleet page (200 rows a page, riskiest first) and a name search, logged in:
    the process's first view (its shown rows not yet in the process's memo, the template not yet
    compiled), then repeated views; then the first view after each of 3 staggered runs (a fifth of
    the fleet re-forecast: only their shown rows are completed again)."""
    from django.contrib.auth.models import User
    from django.test import Client

    User.objects.create_user("bench-viewer", password="bench-Passw0rd-long-enough")
    client = Client(HTTP_HOST="localhost")
    client.login(username="bench-viewer", password="bench-Passw0rd-long-enough")
    timings = {}
    for label, url in (("first", "/dashboard/"), ("page", "/dashboard/?page=7"), ("search", "/dashboard/?q=srv0099")):
        seconds = []
        for _ in range(1 if label == "first" else max(5, reps)):
            started = time.perf_counter()
            response = client.get(url)
            seconds.append(time.perf_counter() - started)
            assert response.status_code == 200, response.status_code
        timings[label] = seconds
    timings["after_staggered_run"] = []
    for _ in range(3):
        _staggered_run()
        started = time.perf_counter()
        response = client.get("/dashboard/")
        timings["after_staggered_run"].append(time.perf_counter() - started)
        assert response.status_code == 200, response.status_code
    return {
        "fleet_page_first_s": round(timings["first"][0], 3),
        "fleet_page_first_after_staggered_run_s": {
            k: v for k, v in common.summary(timings["after_staggered_run"], 4).items() if k != "reps"
        },
        "fleet_page_s": {k: v for k, v in common.summary(timings["page"], 4).items() if k != "reps"},
        "fleet_search_s": {k: v for k, v in common.summary(timings["search"], 4).items() if k != "reps"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    _database()
    import django

    django.setup()
    from django.conf import settings
    from django.test import Client

    from forecasting.runs.selectors import current_run, predictions_current_json

    _seed(args.servers)
    client = Client(HTTP_HOST="localhost")
    pages, sizes = [], []
    for _ in range(args.reps):
        seconds, sizes = _walk(client)
        pages += seconds
    # A walk that did not page through the whole fleet measured something else (e.g. no current forecasts).
    expected = -(-args.servers // settings.TFT_PREDICTIONS_PAGE_SIZE)
    if len(sizes) != expected:
        raise SystemExit(f"read_pages: a walk read {len(sizes)} pages, expected {expected} for {args.servers} servers")
    fleet = _fleet_page(args.reps)
    started = time.perf_counter()
    whole = predictions_current_json(current_run())
    whole_s = time.perf_counter() - started
    ordered = sorted(pages)
    result = {
        "servers": args.servers,
        "pages_per_walk": len(sizes),
        "page_s": {k: v for k, v in common.summary(pages, 4).items() if k != "reps"},
        "page_p99_s": round(common.percentile(ordered, 99), 4),
        "page_bytes_median": sorted(sizes)[len(sizes) // 2],
        "whole_fleet_body_s": round(whole_s, 3),
        **fleet,
        "whole_fleet_body_mb": round(len(whole) / 1e6, 1),
        "load_average": os.getloadavg(),
        "cpus": os.cpu_count(),
    }
    print(result)
    common.write_json(f"read_pages_{args.servers}", result)


if __name__ == "__main__":
    main()
