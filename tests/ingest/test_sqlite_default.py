"""With no environment set, the service runs on SQLite (WAL) and the embedded broker."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import series

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def bare_env(tmp_path):
    # Nothing but what a shell on a bare machine has: no DATABASE_URL, broker, key or DEBUG.
    return {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "TFT_DATA_DIR": str(tmp_path / "var")}


def _manage(env, *args, timeout=120):
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
def test_feed_status_and_rollups_work_with_no_environment(bare_env):
    migrate = _manage(bare_env, "migrate", "-v0")
    assert migrate.returncode == 0, migrate.stderr
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=ROOT,
        env=bare_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        body = json.dumps({"records": series("ppdb001", n=120)}).encode()
        request = urllib.request.Request(base + "/feed/data", body, {"Content-Type": "application/json"})
        fed = json.load(urllib.request.urlopen(request, timeout=10))
        status = json.load(urllib.request.urlopen(base + "/status", timeout=10))
    finally:
        server.terminate()
        server.wait(timeout=10)

    assert fed["accepted"] == 120
    assert status["window_size"] == 120
    assert status["warmup"]["current_size"] == 120
    code = (
        "from ingest.models import MetricBucket as B;from django.db import connection as c;"
        "print(c.vendor, c.cursor().execute('PRAGMA journal_mode').fetchone()[0], "
        "[(b.count, round(b.mean('cpu_pct'), 3)) for b in B.objects.order_by('bucket_start')])"
    )
    shell = _manage(bare_env, "shell", "-c", code)
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.strip().splitlines()[-1] == "sqlite wal [(60, 45.2), (60, 45.2)]"
