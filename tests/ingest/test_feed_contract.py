"""The guide's examples against POST /feed/data and GET /status: verbatim but for the date.

The guide dates them 2025-10-13; the feed accepts records within the retention window only
(TFT_RETENTION_DAYS back), so they are moved to yesterday (tests.conftest.RECENT) and nothing else
changes. test_the_guide_date_is_outside_the_window checks the verbatim date's answer.
"""

import json

import pytest

from ingest.models import MetricRecord
from tests.conftest import RECENT, post_feed

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("dev_mode")]

QUICK_START = """{
    "records": [
      {
        "timestamp": "2025-10-13T16:00:00",
        "server_name": "ppdb001",
        "cpu_pct": 45.2,
        "mem_pct": 67.8,
        "disk_io_mb_s": 123.4,
        "latency_ms": 12.5,
        "state": "healthy"
      }
    ]
  }"""

EXAMPLE_1 = """{
  "records": [
    {
      "timestamp": "2025-10-13T16:00:00.000Z",
      "server_name": "ppweb001",
      "cpu_pct": 35.4,
      "mem_pct": 55.2,
      "disk_io_mb_s": 45.6,
      "latency_ms": 8.3,
      "state": "healthy"
    }
  ]
}"""

EXAMPLE_2 = """{
  "records": [
    {
      "timestamp": "2025-10-13T16:00:00",
      "server_name": "ppml0001",
      "cpu_pct": 78.5,
      "mem_pct": 82.1,
      "disk_io_mb_s": 234.5,
      "latency_ms": 45.2,
      "state": "heavy_load"
    },
    {
      "timestamp": "2025-10-13T16:00:00",
      "server_name": "ppml0002",
      "cpu_pct": 81.2,
      "mem_pct": 79.8,
      "disk_io_mb_s": 198.7,
      "latency_ms": 52.1,
      "state": "heavy_load"
    },
    {
      "timestamp": "2025-10-13T16:00:00",
      "server_name": "ppdb001",
      "cpu_pct": 45.2,
      "mem_pct": 67.8,
      "disk_io_mb_s": 123.4,
      "latency_ms": 12.5,
      "state": "healthy"
    }
  ]
}"""

EXAMPLE_3 = """{
  "records": [
    {
      "timestamp": "2025-10-13T16:05:30",
      "server_name": "ppweb003",
      "cpu_pct": 98.7,
      "mem_pct": 94.2,
      "disk_io_mb_s": 567.8,
      "latency_ms": 234.5,
      "state": "critical_issue"
    }
  ]
}"""

EXAMPLE_4 = """{
  "records": [
    {
      "timestamp": "2025-10-13T02:00:00",
      "server_name": "ppdb002",
      "cpu_pct": 5.2,
      "mem_pct": 45.1,
      "disk_io_mb_s": 12.3,
      "latency_ms": 0.0,
      "state": "maintenance"
    }
  ]
}"""

GUIDE_DATE = "2025-10-13"
QUICK_START, EXAMPLE_1, EXAMPLE_2, EXAMPLE_3, EXAMPLE_4 = (
    body.replace(GUIDE_DATE, RECENT.date().isoformat()) for body in (QUICK_START, EXAMPLE_1, EXAMPLE_2, EXAMPLE_3, EXAMPLE_4)
)


@pytest.mark.parametrize(
    "body",
    [QUICK_START, EXAMPLE_1, EXAMPLE_2, EXAMPLE_3, EXAMPLE_4],
    ids=["quick-start", "example-1", "example-2", "example-3", "example-4"],
)
def test_guide_example_is_accepted_verbatim(anon_client, body):
    response = post_feed(anon_client, body)

    assert response.status_code == 200, response.content
    payload = response.json()
    assert payload["status"] == "accepted"
    assert payload["accepted"] == len(json.loads(body)["records"])
    assert MetricRecord.objects.count() == payload["accepted"]


def test_feed_response_has_the_contract_fields(anon_client):
    payload = post_feed(anon_client, QUICK_START).json()

    for key in ("status", "tick", "window_size", "servers_tracked", "servers_ready", "warmup_complete"):
        assert key in payload
    assert payload["tick"] == 1
    assert payload["window_size"] == 1
    assert payload["servers_tracked"] == 1
    assert payload["servers_ready"] == 0
    assert payload["warmup_complete"] is False
    assert payload["duplicates"] == 0


def test_status_after_quick_start_matches_the_guide(anon_client):
    post_feed(anon_client, QUICK_START)

    status = anon_client.get("/status").json()

    assert status["running"] is True
    assert status["tick_count"] == 1
    assert status["window_size"] == 1
    assert status["warmup"] == {
        "is_warmed_up": False,
        "progress_percent": 0,
        "threshold": 150,
        "current_size": 1,
        "required_size": 150,
        "message": "Warming up: 0/1 servers ready",
    }


def test_health_has_the_contract_shape(anon_client):
    body = anon_client.get("/health").json()

    assert body["status"] == "healthy"
    assert body["running"] is True
    assert body["service"]
