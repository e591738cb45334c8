"""The served incident probabilities scored live: GET /probabilities/reliability, /status and /metrics."""

from datetime import UTC, datetime, timedelta

import pytest

from forecasting import prometheus
from forecasting.models import ProbabilityOutcome
from ingest.models import Server
from tests.conftest import ingest_fleet
from tests.integrations.test_schema_conformance import conforms, schema  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db


@pytest.fixture
def outcomes():
    """100 resolved 8-hour outcomes: 80 served at 0.05 with 4 incidents, 20 served at 0.25 with 5."""
    ingest_fleet(["ppdb001"], buckets=3)
    server = Server.objects.get(name="ppdb001")
    now = datetime.now(UTC)
    rows = []
    for k in range(100):
        p, incident = (0.05, k < 4) if k < 80 else (0.25, k >= 95)
        rows.append(ProbabilityOutcome(server=server, window="8h", origin=now - timedelta(hours=9, minutes=5 * k),
                                       profile="database", prob_prior=p, prob_served=p, critical=[90, 95, 500, 200],
                                       incident=incident, created_at=now, resolved_at=now))  # fmt: skip
    ProbabilityOutcome.objects.bulk_create(rows)


def test_the_reliability_table_says_how_often_each_probability_came_true(client, outcomes):
    body = client.get("/probabilities/reliability").json()

    w = body["windows"]["8h"]
    assert (w["n"], w["events"], w["base_rate"]) == (100, 9, pytest.approx(0.09))
    assert [(r["bin"], r["n"], r["frequency"]) for r in w["reliability"]] == [
        ("0.0-0.1", 80, pytest.approx(0.05)),
        ("0.2-0.3", 20, pytest.approx(0.25)),
    ]
    brier = (4 * 0.95**2 + 76 * 0.05**2 + 5 * 0.75**2 + 15 * 0.25**2) / 100
    assert w["brier"] == pytest.approx(brier)
    assert w["skill"] == pytest.approx(1 - brier / (0.09 * 0.91))
    assert w["auc"] == pytest.approx((5 * 76 + 0.5 * (4 * 76 + 5 * 15)) / (9 * 91))
    assert body["windows"]["30m"]["n"] == 0 and body["windows"]["30m"]["brier"] is None


def test_the_reliability_endpoint_conforms(schema, client, outcomes):  # noqa: F811
    conforms(schema, "/probabilities/reliability", "get", client.get("/probabilities/reliability"))


def test_status_carries_the_probability_scores(schema, client, outcomes):  # noqa: F811
    response = client.get("/status")
    body = response.json()["probabilities"]
    assert set(body["windows"]) == {"30m", "8h"}
    assert {"brier", "skill", "auc", "base_rate", "reliability", "map", "pending"} <= set(body["windows"]["8h"])
    conforms(schema, "/status", "get", response)


def test_metrics_export_the_probability_scores(outcomes):
    text = prometheus.metrics_text().decode()
    assert 'tft_probability_n{window="8h"} 100.0' in text
    assert 'tft_probability_events{window="8h"} 9.0' in text
    assert 'tft_probability_reliability_frequency{bin="0.2-0.3",window="8h"} 0.25' in text
    assert 'tft_probability_skill{window="8h"}' in text
    assert 'tft_probability_skill{window="30m"}' not in text  # nothing resolved: left out, not NaN
