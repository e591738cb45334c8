"""Shared fixtures. Tests run against the database that DATABASE_URL names (PostgreSQL under
`make test`), or the embedded SQLite default when it is unset."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test import Client

TEST_API_KEY = "test-feed-key"
# The default record time: yesterday 16:00 UTC. The feed accepts records from TFT_RETENTION_DAYS
# back to 5 minutes ahead, so the guide's fixed 2025-10-13 would be refused; fixed within a run so
# tests can compare with it.
RECENT = (datetime.now(UTC) - timedelta(days=1)).replace(hour=16, minute=0, second=0, microsecond=0)


@pytest.fixture(autouse=True)
def _feed_key(settings):
    # Production behaviour in tests: a key is configured and required.
    settings.TFT_API_KEY = TEST_API_KEY
    # The lockout after repeated wrong keys or logins is per client address, and every test client
    # is 127.0.0.1: the tests of the lockout itself turn it on (tests/tftsite/test_lockout.py).
    settings.TFT_API_KEY_MAX_FAILURES = 0
    settings.TFT_LOGIN_MAX_FAILURES = 0
    # Tests read /status and /metrics right after changing what they show: no body cache (its own
    # tests turn it on, tests/tftsite/test_read_limits.py).
    settings.TFT_READ_CACHE_SECONDS = 0
    settings.TFT_RATE_LIMIT_HEAVY_READ_PER_MINUTE = 0
    settings.TFT_RATE_LIMIT_METRICS_PER_MINUTE = 0


@pytest.fixture(autouse=True)
def _alerts_open_at_once(settings):
    """Alerts open on the first run predicting them and resolve on the first that does not (K = M = 1),
    so tests about what an alert says need one run; the hysteresis' own tests set their K and M
    (tests/forecasting/alerts)."""
    for name in ("OPEN_AFTER", "RESOLVE_AFTER"):
        for severity in ("WARNING", "CRITICAL"):
            setattr(settings, f"TFT_ALERT_{name}_{severity}", 1)


@pytest.fixture(autouse=True)
def _fresh_server_counts(monkeypatch):
    """The feed response's server counts are kept per process for a moment (ingest.selectors.
    feed_totals); each test starts from its own database, so none reuses another test's counts."""
    monkeypatch.setattr("ingest.selectors._server_counts", None)


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
    ts = ts or RECENT
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
    start = start or RECENT
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


def ingest_fleet(servers: dict[str, dict] | list[str], *, buckets: int = 160, end: datetime | None = None,
                 every: timedelta = timedelta(minutes=5)) -> datetime:
    """Store `buckets` records per server, one per step, ending just before `end` (default now).

    `servers` maps a name to per-metric callables i → value (or constants); a list gives flat,
    healthy servers. Returns the last timestamp.
    """
    from ingest.services import records_ingest
    from ingest.validation import validate_records

    end = (end or datetime.now(UTC)).replace(second=0, microsecond=0)
    if isinstance(servers, list):
        servers = {name: {} for name in servers}
    records = []
    for name, shape in servers.items():
        for i in range(buckets):
            values = {"cpu_pct": 40.0, "mem_pct": 50.0, "disk_io_mb_s": 30.0, "latency_ms": 10.0, "state": "healthy"}
            for key, fn in shape.items():
                values[key] = fn(i) if callable(fn) else fn
            records.append(make_record(name, end - (buckets - i) * every, cpu=values["cpu_pct"], mem=values["mem_pct"],
                                       disk=values["disk_io_mb_s"], latency=values["latency_ms"],
                                       state=values["state"]))
    clean, problems = validate_records(records)
    assert not problems, problems[:3]
    records_ingest(records=clean)
    return end - every


def ingest_as_received(records: list[dict]):
    """Validate each record against the contract as of its own timestamp, then store them all: for
    tests of storage and retention that need records which have aged out of the feed's window since
    they arrived (the window itself is tested in tests/ingest/test_feed_window.py)."""
    from ingest.services import records_ingest
    from ingest.validation import parse_timestamp, timestamp_window, validate_record

    clean = []
    for index, raw in enumerate(records):
        record, problems = validate_record(raw, index, window=timestamp_window(now=parse_timestamp(raw["timestamp"])))
        assert not problems, problems
        clean.append(record)
    return records_ingest(records=clean)


@pytest.fixture
def no_models(settings, tmp_path):
    """An empty models folder: every forecast falls back to the heuristic."""
    settings.TFT_MODELS_DIR = tmp_path / "no-models"
    settings.TFT_MODELS_DIR.mkdir()
    return settings.TFT_MODELS_DIR
