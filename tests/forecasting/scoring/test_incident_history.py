"""A server's own incident history (IncidentHistory): fed by resolved outcomes, read as the event
model's history inputs (forecasting.scoring.probabilities / selectors)."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from forecasting.engine import event_model as em
from forecasting.models import IncidentHistory, ProbabilityOutcome
from forecasting.scoring.probabilities import incident_histories_add, probability_outcomes_resolve
from forecasting.scoring.selectors import incident_history_inputs
from ingest.models import Server
from tests.conftest import ingest_fleet

pytestmark = pytest.mark.django_db

STEP = timedelta(minutes=5)
CRITICAL = [90.0, 95.0, 500.0, 200.0]
NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)


def _server(name: str = "ppdb001") -> Server:
    ingest_fleet([name], buckets=30, end=datetime.now(UTC) - timedelta(hours=12))
    return Server.objects.get(name=name)


def test_a_resolved_incident_enters_its_servers_history():
    server = _server()
    origin = server.last_seen.replace(second=0, microsecond=0) + STEP
    ProbabilityOutcome.objects.create(server=server, window="30m", origin=origin, profile="database", prob_prior=0.1,
                                      prob_served=0.1, critical=CRITICAL, created_at=datetime.now(UTC))  # fmt: skip
    values = [40.0, 95.0, 95.0, *([40.0] * 20)]
    ingest_fleet({"ppdb001": {"cpu_pct": lambda i: values[i]}}, buckets=len(values), end=origin + STEP * len(values))

    probability_outcomes_resolve()

    row = IncidentHistory.objects.get(server=server, window="30m")
    assert (row.hours, row.events_hours) == pytest.approx((5 / 60, 5 / 60))


def test_history_sums_decay_with_their_half_life():
    server = _server()
    ids = np.array([server.pk])
    incident_histories_add(server_ids=ids, windows=["8h"], incident=np.array([True]), now=NOW)
    later = NOW + timedelta(hours=em.HISTORY_HALF_LIFE_HOURS)

    incident_histories_add(server_ids=ids, windows=["8h"], incident=np.array([False]), now=later)

    row = IncidentHistory.objects.get(server=server, window="8h")
    assert (row.hours, row.events_hours) == pytest.approx((5 / 120 + 5 / 60, 5 / 120))


def test_the_inputs_of_a_server_without_history_are_zero_and_others_are_decayed_to_now():
    quiet, busy = _server("ppdb001"), _server("ppdb002")
    incident_histories_add(server_ids=np.array([busy.pk] * 24), windows=["8h"] * 24,
                           incident=np.array([True] * 12 + [False] * 12), now=NOW)  # fmt: skip

    inputs = incident_history_inputs(server_ids=[quiet.pk, busy.pk], now=NOW + timedelta(hours=72))

    assert inputs["8h"][0].tolist() == [0.0, 0.0]
    np.testing.assert_allclose(inputs["8h"][1], em.history_inputs(np.array([0.5]), np.array([1.0]), "8h")[0])
    assert inputs["8h"][1, 0] > 0  # half its windows had an incident: far above the 5 % prior
