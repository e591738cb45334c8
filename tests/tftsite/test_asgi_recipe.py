"""The production web recipe (bin/run, README "Production"): gunicorn's ASGI worker on tftsite.asgi
serves the feed and the reads through the psycopg pool, and clients that trickle their request
cannot hold the worker. A real gunicorn on a free loopback port, on this test's database."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime

import pytest
from django.db import connection

from ingest.models import MetricRecord

pytestmark = pytest.mark.django_db(transaction=True)
KEY = "asgi-recipe-key"
# As bin/run, with one worker: one slow client too many would show.
RECIPE = ["tftsite.asgi:application", "--worker-class", "asgi", "--workers", "1", "--timeout", "30"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def web(postgres_only, tmp_path):
    db = connection.settings_dict
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        "DEBUG": "false",
        "DJANGO_SECRET_KEY": "test-only-secret-for-the-asgi-recipe-0123456789",
        "ALLOWED_HOSTS": "127.0.0.1",
        "TFT_API_KEY": KEY,
        "TFT_DATA_DIR": str(tmp_path),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "CELERY_BROKER_URL": "",
    }
    log = (tmp_path / "gunicorn.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", *RECIPE, "--bind", f"127.0.0.1:{port}"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(base + "/health", timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((tmp_path / "gunicorn.log").read_text()[-3000:]) from None
            time.sleep(0.3)
    yield base, port
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


def _feed(base: str, server: str) -> int:
    record = {
        "timestamp": datetime.now(UTC).isoformat(),
        "server_name": server,
        "cpu_pct": 40.0,
        "mem_pct": 50.0,
        "disk_io_mb_s": 1.0,
        "latency_ms": 10.0,
        "state": "healthy",
    }
    request = urllib.request.Request(
        base + "/feed/data",
        data=json.dumps({"records": [record]}).encode(),
        headers={"Content-Type": "application/json", "X-API-Key": KEY},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status


def test_the_asgi_recipe_feeds_and_reads_through_the_pool(web):
    base, _ = web

    assert _feed(base, "ppasgi001") == 200
    status = json.loads(urllib.request.urlopen(base + "/status", timeout=5).read())

    assert MetricRecord.objects.filter(server__name="ppasgi001").count() == 1
    assert status["tick_count"] >= 1
    with connection.cursor() as cursor:  # the worker's pool, not one connection per request
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [connection.settings_dict["NAME"]],
        )
        assert cursor.fetchone()[0] <= 8


def test_clients_trickling_their_request_do_not_hold_the_worker(web):
    base, port = web
    stalled = []
    for _ in range(20):  # each sends half a request line and waits
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        stalled.append(sock)
    try:
        started = time.monotonic()
        assert _feed(base, "ppasgi002") == 200
        assert time.monotonic() - started < 5
    finally:
        for sock in stalled:
            sock.close()
