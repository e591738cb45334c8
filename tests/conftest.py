"""Shared fixtures. Tests run against the database that DATABASE_URL names (PostgreSQL under
`make test`), or the embedded SQLite default when it is unset."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test import Client

TEST_API_KEY = "test-feed-key"


@pytest.fixture(autouse=True)
def _feed_key(settings):
    # Production behaviour in tests: a key is configured and required.
    settings.TFT_API_KEY = TEST_API_KEY


@pytest.fixture
def dev_mode(settings):
    """`make run`'s local mode: DEBUG on, no API key, so the guide's examples work verbatim."""
    settings.DEBUG = True
    settings.TFT_API_KEY = ""


@pytest.fixture
def client() -> Client:
    return Client(HTTP_HOST="localhost", HTTP_X_API_KEY=TEST_API_KEY)


@pytest.fixture
def anon_client() -> Client:
    return Client(HTTP_HOST="localhost")


def make_record(server="ppdb001", ts=None, *, cpu=45.2, mem=67.8, disk=123.4, latency=12.5, state="healthy"):
    ts = ts or datetime(2025, 10, 13, 16, 0, tzinfo=UTC)
    return {
        "timestamp": ts.isoformat().replace("+00:00", "Z") if isinstance(ts, datetime) else ts,
        "server_name": server,
        "cpu_pct": cpu,
        "mem_pct": mem,
        "disk_io_mb_s": disk,
        "latency_ms": latency,
        "state": state,
    }


def series(server="ppdb001", n=10, *, start=None, every=timedelta(seconds=5), **kwargs) -> list[dict]:
    start = start or datetime(2025, 10, 13, 16, 0, tzinfo=UTC)
    return [make_record(server, start + i * every, **kwargs) for i in range(n)]


def post_feed(client: Client, body, **extra):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post("/feed/data", data, content_type=extra.pop("content_type", "application/json"), **extra)


@pytest.fixture
def feed(client):
    def _feed(records):
        response = post_feed(client, {"records": records})
        assert response.status_code == 200, response.content
        return response.json()

    return _feed


@pytest.fixture
def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
