"""Named API keys, read keys, rate limits, body limits, CORS, security headers, deploy checks."""

import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.cache import caches

from access.keys import named_keys
from access.models import ApiKey
from access.services import api_key_create, api_key_revoke
from ingest.models import MetricRecord
from tests.conftest import RECENT, make_record, post_feed

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_caches():
    named_keys.clear()
    caches["ratelimit"].clear()
    yield
    named_keys.clear()


def test_named_key_is_stored_hashed_and_accepted(anon_client):
    _, raw = api_key_create(name="feeder-1")

    response = post_feed(anon_client, {"records": [make_record()]}, HTTP_X_API_KEY=raw)

    assert response.status_code == 200
    stored = ApiKey.objects.get(name="feeder-1")
    assert raw not in (stored.key_hash, stored.prefix)
    assert stored.key_hash == __import__("hashlib").sha256(raw.encode()).hexdigest()
    assert stored.last_used_at is not None


def test_revoked_key_is_refused(anon_client):
    key, raw = api_key_create(name="feeder-2")
    api_key_revoke(key_id=key.pk)

    response = post_feed(anon_client, {"records": [make_record()]}, HTTP_X_API_KEY=raw)

    assert response.status_code == 403


def test_read_only_key_cannot_feed(anon_client):
    _, raw = api_key_create(name="grafana", can_feed=False)

    assert post_feed(anon_client, {"records": [make_record()]}, HTTP_X_API_KEY=raw).status_code == 403


def test_reads_are_open_by_default(anon_client):
    assert anon_client.get("/status").status_code == 200


def test_reads_need_a_key_when_configured(anon_client, settings):
    settings.TFT_READ_REQUIRES_KEY = True
    _, raw = api_key_create(name="dash", can_feed=False)

    assert anon_client.get("/status").status_code == 401
    assert anon_client.get("/predictions/current").status_code == 401
    assert anon_client.get("/status", HTTP_X_API_KEY=raw).status_code == 200
    assert anon_client.get("/health").status_code == 200  # load balancers never need a key


def test_feed_rate_limit_answers_429_with_retry_after(client, settings):
    settings.TFT_RATE_LIMIT_FEED_PER_MINUTE = 3
    codes = [post_feed(client, {"records": [make_record(ts=RECENT + timedelta(seconds=i))]}).status_code for i in range(4)]

    assert codes == [200, 200, 200, 429]
    response = post_feed(client, {"records": [make_record(ts=RECENT + timedelta(seconds=9))]})
    assert 1 <= int(response["Retry-After"]) <= 60
    assert response.json()["error"] == "throttled"
    assert MetricRecord.objects.count() == 3


def test_body_over_the_limit_is_413(client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2048
    body = '{"records": [' + ",".join(['{"x": "' + "a" * 100 + '"}'] * 30) + "]}"

    response = post_feed(client, body)

    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"


def test_cors_is_closed_by_default(anon_client):
    response = anon_client.get("/status", HTTP_ORIGIN="https://evil.example")

    assert "Access-Control-Allow-Origin" not in response


def test_cors_allow_list_opens_it_to_listed_origins(anon_client, settings):
    settings.TFT_CORS_ALLOWED_ORIGINS = ["https://grafana.example"]

    allowed = anon_client.get("/status", HTTP_ORIGIN="https://grafana.example")
    preflight = anon_client.options("/feed/data", HTTP_ORIGIN="https://grafana.example",
                                    HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST")
    other = anon_client.get("/status", HTTP_ORIGIN="https://evil.example")

    assert allowed["Access-Control-Allow-Origin"] == "https://grafana.example"
    assert preflight.status_code == 204 and "X-API-Key" in preflight["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Origin" not in other


def test_security_headers_are_set(anon_client):
    response = anon_client.get("/status")

    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


def test_check_deploy_is_clean_under_production_settings():
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        "DATABASE_URL": os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tftsite"),
        "DEBUG": "false",
        "DJANGO_SECRET_KEY": "x" * 20 + "production-like-secret-key-with-enough-entropy-123456",
        "ALLOWED_HOSTS": "tftsite.example.com",
        "TFT_API_KEY": "k",
        "TFT_HTTPS": "true",
    }
    out = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=120)

    assert out.returncode == 0, out.stdout + out.stderr
    assert "no issues" in out.stdout


def test_no_pickle_or_joblib_loading_anywhere_in_the_code():
    pattern = re.compile(r"^\s*(import pickle|from pickle|import joblib|from joblib|import dill|import cloudpickle)"
                         r"|torch\.load\(|pickle\.loads?\(", re.MULTILINE)
    offenders = []
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).parts
        if parts[0] in {".venv", "var", "tests", "node_modules"}:
            continue
        if pattern.search(path.read_text(encoding="utf-8")):
            offenders.append(str(path.relative_to(ROOT)))

    assert offenders == []
