import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connections

from ingest.models import MetricRecord
from tests.conftest import TEST_API_KEY, make_record, post_feed

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_feed_without_key_is_401(anon_client):
    response = post_feed(anon_client, {"records": [make_record()]})

    assert response.status_code == 401
    assert "X-API-Key" in response.json()["message"]
    assert MetricRecord.objects.count() == 0


@pytest.mark.django_db
def test_feed_with_wrong_key_is_403(anon_client):
    response = post_feed(anon_client, {"records": [make_record()]}, HTTP_X_API_KEY=TEST_API_KEY + "x")

    assert response.status_code == 403
    assert response.json()["error"] == "invalid_api_key"


@pytest.mark.django_db
def test_feed_with_right_key_is_accepted(anon_client):
    response = post_feed(anon_client, {"records": [make_record()]}, HTTP_X_API_KEY=TEST_API_KEY)

    assert response.status_code == 200


@pytest.mark.django_db
def test_feed_without_configured_key_is_refused_when_debug_is_off(anon_client, settings):
    settings.DEBUG = False
    settings.TFT_API_KEY = ""

    response = post_feed(anon_client, {"records": [make_record()]})

    assert response.status_code == 403
    assert "TFT_API_KEY" in response.json()["message"]


@pytest.fixture
def dead_database(postgres_only):
    """Point the default connection at a closed port."""
    conn = connections["default"]
    saved = dict(conn.settings_dict)
    conn.close()
    conn.settings_dict.update(HOST="127.0.0.1", PORT="1", OPTIONS={**saved["OPTIONS"], "connect_timeout": "2"})
    yield
    conn.close()
    conn.settings_dict.clear()
    conn.settings_dict.update(saved)


@pytest.mark.django_db(transaction=True)
def test_health_is_503_naming_the_database_when_it_is_down(anon_client, dead_database):
    response = anon_client.get("/health")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["failed"] == ["database"]
    assert body["checks"]["database"]["ok"] is False


@pytest.mark.django_db(transaction=True)
def test_health_says_the_database_is_unavailable_without_its_error_text(anon_client, dead_database, caplog):
    body = anon_client.get("/health").json()

    assert body["checks"]["database"] == {"ok": False, "error": "database unavailable"}
    assert "127.0.0.1" not in json.dumps(body) and "port" not in json.dumps(body)
    logged = [r for r in caplog.records if r.name == "ingest.selectors"]
    assert logged and "port 1" in str(logged[0].exc_info[1])  # the detail is in the log


@pytest.mark.django_db(transaction=True)
def test_feed_is_503_with_retry_after_when_the_database_is_down(client, dead_database):
    response = post_feed(client, {"records": [make_record()]})

    assert response.status_code == 503
    assert response["Retry-After"].isdigit()
    assert response.json()["error"] == "database_unavailable"


def test_web_process_does_not_import_torch_or_pandas():
    code = (
        "import os,sys;os.environ.setdefault('DJANGO_SETTINGS_MODULE','tftsite.settings');"
        "import django;django.setup();import tftsite.urls;import ingest.api;import forecasting.runs.selectors;import forecasting.admin;import tftsite.views;"
        "import forecasting.prometheus;import dashboard.views;import dashboard.selectors;"
        "print('torch' in sys.modules, 'pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)

    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-2:] == ["False", "False"]
