"""End to end on the real services: Postgres, Redis, a Celery worker process with beat, the TFT."""

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from django.db import connection

from forecasting.engine.simulator import fleet_names, simulate_records
from forecasting.models import PredictionRun
from tests.conftest import post_feed

ROOT = Path(__file__).resolve().parents[3]
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def broker():
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    client.flushdb()
    yield REDIS_URL
    client.flushdb()


@pytest.fixture
def worker(broker, tmp_path, postgres_only):
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        "CELERY_BROKER_URL": broker,
        "TFT_PREDICTION_INTERVAL_SECONDS": "5",
        "TFT_DATA_DIR": str(tmp_path),
        "TFT_DEVICE": "cpu",
    }
    log = open(tmp_path / "worker.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tftsite", "worker", "--beat", "-Q", "celery,gpu", "-c", "1",
         "--loglevel", "info", "-s", str(tmp_path / "beat-schedule")],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    yield tmp_path / "worker.log"
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_beat_runs_tft_forecasts_for_a_fed_fleet(client, worker):
    servers = fleet_names(6)
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    records = [r for batch in simulate_records(servers=servers, start=end - timedelta(hours=14), end=end,
                                               interval_seconds=300, seed=3) for r in batch]
    for i in range(0, len(records), 500):
        assert post_feed(client, {"records": records[i : i + 500]}).status_code == 200

    deadline = time.monotonic() + 240
    run = None
    while time.monotonic() < deadline:
        run = PredictionRun.objects.filter(status="complete", servers=len(servers)).first()
        if run:
            break
        time.sleep(1)
    assert run is not None, worker.read_text()[-3000:]

    body = client.get("/predictions/current").json()
    assert set(body["predictions"]) == set(servers)
    assert set(body["metadata"]["methods"].values()) == {"tft"}, body["metadata"].get("fallback_reasons")
    for forecast in body["predictions"].values():
        assert len(forecast["cpu_pct"]["p50"]) == 96
    assert body["metadata"]["model_version"].startswith("tft_model_")
    assert json.dumps(body)
