"""GET /status: the contract's fields, the model's metrics only on request, stale servers counted."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from forecasting.models import ModelVersion
from forecasting.runs.chunks import fleet_predict
from tests.conftest import ingest_fleet, series

pytestmark = pytest.mark.django_db
MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.fixture
def active_model_with_history():
    """The shipped model's real metrics (its training history) on the active version."""
    metrics_file = next(MODELS.glob("*/metrics.json"))
    return ModelVersion.objects.create(
        name=metrics_file.parent.name, path=str(metrics_file.parent), created_at=datetime.now(UTC),
        metrics=json.loads(metrics_file.read_text()), is_active=True,
    )


def test_default_status_leaves_out_the_training_history(client, active_model_with_history):
    response = client.get("/status")

    body = response.json()
    assert body["model"]["active_version"] == active_model_with_history.name
    assert "metrics" not in body["model"]
    # No training history (kilobytes per epoch list): what is left is status, readiness and the
    # fleet's accuracy block.
    assert len(response.content) < 3000
    assert len(client.get("/status?model=1").content) > len(response.content) + 1000


def test_model_flag_adds_the_training_metrics(client, active_model_with_history):
    body = client.get("/status?model=1").json()

    assert body["model"]["metrics"] == active_model_with_history.metrics


def test_status_counts_stale_servers(client, no_models, settings):
    settings.TFT_STALE_AFTER_MINUTES = 15
    ingest_fleet(["ppdb001"])
    ingest_fleet(["ppdb002", "ppdb003"], end=datetime.now(UTC) - timedelta(hours=1))
    fleet_predict()

    predictions = client.get("/status").json()["predictions"]

    assert predictions["servers"] == 3
    assert predictions["stale_servers"] == 2


def test_servers_flag_adds_per_server_readiness(client, feed):
    feed(series("ppdb001", n=3))

    body = client.get("/status?servers=1").json()

    assert [(s["server"], s["records"]) for s in body["servers"]] == [("ppdb001", 3)]
