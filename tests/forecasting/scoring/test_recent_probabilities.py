"""A server's usual incident probability (forecasting.scoring.selectors.recent_incident_probabilities):
the incident_prob rule's "rise above its usual" reads it from the kept probabilities; server_incident_rule says
what the rule compares now (the server page)."""

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from forecasting.models import ProbabilityOutcome
from forecasting.scoring.selectors import recent_incident_probabilities, server_incident_rule
from ingest.models import Server
from tests.conftest import ingest_fleet

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)


def _kept(server, *, n, prior, served, window="8h", start=NOW):
    ProbabilityOutcome.objects.bulk_create(
        ProbabilityOutcome(server=server, window=window, origin=start - timedelta(minutes=5 * (k + 1)),
                           profile="database", prob_prior=prior, prob_served=served, critical=[90.0] * 4,
                           created_at=NOW)
        for k in range(n)
    )


def test_the_usual_is_the_mean_of_the_last_day_once_six_hours_are_kept():
    ingest_fleet(["ppdb001", "ppdb002", "ppdb003"], buckets=12)
    a, b, c = (Server.objects.get(name=n) for n in ("ppdb001", "ppdb002", "ppdb003"))
    _kept(a, n=72, prior=0.2, served=0.1)  # six hours
    _kept(a, n=12, prior=0.9, served=0.9, start=NOW - timedelta(hours=24))  # before the last day
    _kept(a, n=72, prior=0.9, served=0.9, window="30m")
    _kept(b, n=71, prior=0.2, served=0.1)  # not yet six hours

    model = recent_incident_probabilities(server_ids=[a.pk, b.pk, c.pk], window="8h", served=False, now=NOW)
    served = recent_incident_probabilities(server_ids=[a.pk], window="8h", served=True, now=NOW)

    assert model[0] == pytest.approx(0.2) and math.isnan(model[1]) and math.isnan(model[2])
    np.testing.assert_allclose(served, [0.1])


def test_the_incident_rule_waits_while_it_learns_the_servers_usual():
    ingest_fleet(["ppdb001"], buckets=12)
    server = Server.objects.get(name="ppdb001")
    _kept(server, n=30, prior=0.2, served=0.1)

    rule = server_incident_rule(server_id=server.pk, now=NOW)

    assert rule["threshold"] is None and rule["usual"] is None
    assert rule["usual_hours"] == pytest.approx(2.5) and rule["need_hours"] == 6.0


def test_the_incident_rule_opens_at_the_rise_above_the_usual_once_known(settings):
    settings.TFT_ALERT_INCIDENT_PROB_SOURCE, settings.TFT_ALERT_INCIDENT_PROB_RISE = "served", 3.0
    ingest_fleet(["ppdb001"], buckets=12)
    server = Server.objects.get(name="ppdb001")
    _kept(server, n=72, prior=0.2, served=0.1)

    rule = server_incident_rule(server_id=server.pk, now=NOW)

    assert rule["source"] == "served" and rule["usual"] == pytest.approx(0.1)
    assert rule["threshold"] == pytest.approx(0.3)


def test_the_incident_rule_is_none_when_the_alert_is_off(settings):
    settings.TFT_ALERT_INCIDENT_PROB = False
    ingest_fleet(["ppdb001"], buckets=12)

    assert server_incident_rule(server_id=Server.objects.get(name="ppdb001").pk, now=NOW) is None
