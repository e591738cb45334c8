"""Incident-probability outcomes (forecasting.scoring.probabilities): recorded by the store step,
resolved against engine.incidents once the window has passed, idempotent, bounded, pruned; the live
maps they feed."""

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import numpy as np
import pytest

from forecasting.models import MaintenanceWindow, ProbabilityCalibration, ProbabilityOutcome
from forecasting.runs.chunks import fleet_predict
from forecasting.scoring.probabilities import (
    live_probabilities_apply,
    probability_maps_update,
    probability_outcomes_prune,
    probability_outcomes_resolve,
)
from forecasting.scoring.services import live_scoring_pass
from ingest.models import Server
from tests.conftest import ingest_fleet

pytestmark = pytest.mark.django_db

STEP = timedelta(minutes=5)
CRITICAL = [90.0, 95.0, 500.0, 200.0]  # cpu, mem, disk, latency


def _history(name: str = "ppdb001", hours_ago: float = 10) -> datetime:
    """A flat healthy history ending `hours_ago` ago; returns the origin after it."""
    ingest_fleet([name], buckets=30, end=datetime.now(UTC) - timedelta(hours=hours_ago))
    return Server.objects.get(name=name).last_seen.replace(second=0) + STEP - timedelta(minutes=1)


def _outcome(name: str, origin: datetime, window: str = "30m", prior: float = 0.2) -> ProbabilityOutcome:
    return ProbabilityOutcome.objects.create(
        server=Server.objects.get(name=name),
        window=window,
        origin=origin,
        profile="database",
        prob_prior=prior,
        prob_served=prior,
        critical=CRITICAL,
        created_at=datetime.now(UTC),
    )


def _after(name: str, origin: datetime, cpu: list[float], *, state: str = "healthy", then: int = 100) -> None:
    """Buckets from the origin: `cpu` values, then `then` flat healthy ones (the window passes)."""
    values = [*cpu, *([40.0] * then)]
    states = [state] * len(cpu) + ["healthy"] * then
    ingest_fleet(
        {name: {"cpu_pct": lambda i: values[i], "state": lambda i: states[i]}},
        buckets=len(values),
        end=origin + STEP * len(values),
    )


def _origin_bucket(name: str) -> datetime:
    server = Server.objects.get(name=name)
    return server.last_seen.replace(second=0, microsecond=0) + STEP


def test_the_store_step_keeps_one_outcome_per_server_window_and_origin(no_models):
    ingest_fleet(["ppdb001", "ppweb001"])
    fleet_predict()
    fleet_predict()  # the same origins again

    rows = ProbabilityOutcome.objects.all()
    assert sorted(rows.values_list("window", flat=True)) == ["30m", "30m", "8h", "8h"]
    assert all(r.incident is None and len(r.critical) == 4 for r in rows)


@pytest.mark.parametrize(("cpu", "incident"), [([40, 40, 95, 40], False), ([40, 40, 95, 95], True)])
def test_a_threshold_incident_needs_min_buckets_in_a_row(cpu, incident):
    ingest_fleet(["ppdb001"], buckets=30, end=datetime.now(UTC) - timedelta(hours=12))
    origin = _origin_bucket("ppdb001")
    _outcome("ppdb001", origin)
    _after("ppdb001", origin, cpu)

    assert probability_outcomes_resolve().resolved == 1
    assert ProbabilityOutcome.objects.get().incident is incident


def test_a_reported_incident_is_a_bucket_in_an_incident_state():
    ingest_fleet(["ppdb001"], buckets=30, end=datetime.now(UTC) - timedelta(hours=12))
    origin = _origin_bucket("ppdb001")
    _outcome("ppdb001", origin)
    _after("ppdb001", origin, [40, 40, 40], state="critical_issue")

    probability_outcomes_resolve()

    assert ProbabilityOutcome.objects.get().incident is True


def test_an_incident_after_the_window_is_not_in_it():
    ingest_fleet(["ppdb001"], buckets=30, end=datetime.now(UTC) - timedelta(hours=12))
    origin = _origin_bucket("ppdb001")
    _outcome("ppdb001", origin, "30m")
    _outcome("ppdb001", origin, "8h")
    _after("ppdb001", origin, [40] * 10 + [99, 99])

    probability_outcomes_resolve()

    assert dict(ProbabilityOutcome.objects.values_list("window", "incident")) == {"30m": False, "8h": True}


def test_an_outcome_in_a_maintenance_window_is_left_out():
    ingest_fleet(["ppdb001", "ppdb002"], buckets=30, end=datetime.now(UTC) - timedelta(hours=12))
    origins = {name: _origin_bucket(name) for name in ("ppdb001", "ppdb002")}
    for name, origin in origins.items():
        _outcome(name, origin)
        _after(name, origin, [40, 95, 95])
    start = origins["ppdb001"] + STEP
    MaintenanceWindow.objects.create(servers="ppdb001", starts_at=start, ends_at=start + timedelta(hours=1),
                                     reason="disk swap", created_by="test", created_at=start)  # fmt: skip

    result = probability_outcomes_resolve()

    assert (result.resolved, result.incidents) == (1, 1)
    assert list(ProbabilityOutcome.objects.values_list("server__name", "incident")) == [("ppdb002", True)]


def test_an_outcome_with_a_maintenance_state_bucket_is_left_out():
    ingest_fleet(["ppdb001", "ppdb002"], buckets=30, end=datetime.now(UTC) - timedelta(hours=12))
    origins = {name: _origin_bucket(name) for name in ("ppdb001", "ppdb002")}
    for name, origin in origins.items():
        _outcome(name, origin)
    _after("ppdb001", origins["ppdb001"], [40, 95, 95], state="maintenance")  # an operator at work
    _after("ppdb002", origins["ppdb002"], [40, 95, 95])

    result = probability_outcomes_resolve()

    assert (result.resolved, result.incidents) == (1, 1)
    assert list(ProbabilityOutcome.objects.values_list("server__name", "incident")) == [("ppdb002", True)]


def test_an_outcome_waits_until_its_window_has_passed():
    ingest_fleet(["ppdb001"], buckets=30, end=datetime.now(UTC) - timedelta(hours=12))
    origin = _origin_bucket("ppdb001")
    _outcome("ppdb001", origin, "8h")
    _after("ppdb001", origin, [40] * 20, then=0)  # 100 minutes of an 8-hour window

    assert probability_outcomes_resolve().resolved == 0
    assert ProbabilityOutcome.objects.get().incident is None


def test_resolving_twice_changes_nothing():
    ingest_fleet(["ppdb001"], buckets=30, end=datetime.now(UTC) - timedelta(hours=12))
    origin = _origin_bucket("ppdb001")
    _outcome("ppdb001", origin)
    _after("ppdb001", origin, [40, 95, 95])
    probability_outcomes_resolve()
    rows = list(ProbabilityOutcome.objects.values_list("pk", "incident", "resolved_at"))
    maps = list(ProbabilityCalibration.objects.values_list("scope", "window", "counts", "a", "b"))

    again = probability_outcomes_resolve()

    assert again.resolved == 0
    assert list(ProbabilityOutcome.objects.values_list("pk", "incident", "resolved_at")) == rows
    assert list(ProbabilityCalibration.objects.values_list("scope", "window", "counts", "a", "b")) == maps


def test_a_pass_resolves_at_most_its_limit_oldest_first():
    ingest_fleet(["ppdb001"], buckets=30, end=datetime.now(UTC) - timedelta(hours=12))
    origin = _origin_bucket("ppdb001")
    for k in range(5):
        _outcome("ppdb001", origin + k * STEP)
    _after("ppdb001", origin, [40] * 5)

    assert probability_outcomes_resolve(limit=3).resolved == 3
    resolved = ProbabilityOutcome.objects.filter(incident__isnull=False).values_list("origin", flat=True)
    assert sorted(resolved) == [origin + k * STEP for k in range(3)]
    assert probability_outcomes_resolve(limit=3).resolved == 2


def test_the_scoring_task_resolves_outcomes_and_feeds_the_maps():
    ingest_fleet(["ppdb001"], buckets=30, end=datetime.now(UTC) - timedelta(hours=12))
    origin = _origin_bucket("ppdb001")
    _outcome("ppdb001", origin)
    _after("ppdb001", origin, [40] * 3)

    live_scoring_pass()

    assert ProbabilityOutcome.objects.get().incident is False
    scopes = set(ProbabilityCalibration.objects.values_list("scope", "window"))
    assert scopes == {("fleet", "30m"), ("database", "30m")}
    assert ProbabilityCalibration.objects.get(scope="fleet").outcomes == pytest.approx(1)


def test_retention_prunes_old_outcomes(settings):
    ingest_fleet(["ppdb001"], buckets=5)
    old = datetime.now(UTC) - timedelta(days=settings.TFT_SCORE_RETENTION_DAYS + 1)
    _outcome("ppdb001", old)
    _outcome("ppdb001", datetime.now(UTC) - timedelta(hours=1))

    assert probability_outcomes_prune() == 1
    assert ProbabilityOutcome.objects.count() == 1


def _served(p: float, n: int = 1) -> list:
    return [SimpleNamespace(prob_30m=p, prob_8h=p) for _ in range(n)]


@pytest.mark.parametrize(("rate", "direction"), [(0.0, -1), (0.7, 1)])
def test_the_served_probabilities_move_toward_the_fleets_observed_rate(rate, direction):
    rng = np.random.default_rng(3)
    scored = _served(0.25)
    live_probabilities_apply(profiles=["web"], scored=scored)
    assert scored[0].prob_8h == 0.25  # no outcomes yet: the model's probability is served
    n = 5000
    probability_maps_update(profiles=["web"] * n, windows=["8h"] * n, priors=np.full(n, 0.25),
                            incident=(rng.random(n) < rate).astype(float))  # fmt: skip

    scored = _served(0.25)
    priors = live_probabilities_apply(profiles=["web"], scored=scored)

    assert priors["8h"][0] == 0.25 and scored[0].prob_30m == 0.25  # the 30-minute map has no outcomes
    assert direction * (scored[0].prob_8h - 0.25) > 0.1


def test_a_profile_with_enough_outcomes_gets_its_own_map(settings):
    settings.TFT_PROBABILITY_PROFILE_MIN_OUTCOMES = 1000
    n = 3000
    probability_maps_update(profiles=["web"] * n + ["database"] * n, windows=["8h"] * (2 * n),
                            priors=np.full(2 * n, 0.25), incident=np.r_[np.ones(n), np.zeros(n)])  # fmt: skip
    scored = _served(0.25, 3)
    live_probabilities_apply(profiles=["web", "database", "batch"], scored=scored)
    web, database, batch = (s.prob_8h for s in scored)
    assert web > batch > database  # batch has no outcomes: it reads the fleet's map


def test_the_databases_relative_limits_are_the_engines_defaults():
    """Rows seeded by migration 0003 (critical 2 × p95) follow the engine's 3 × (migration 0012)."""
    from forecasting.alerts.selectors import alert_thresholds
    from forecasting.engine.spec import DEFAULT_THRESHOLDS

    assert alert_thresholds() == DEFAULT_THRESHOLDS
