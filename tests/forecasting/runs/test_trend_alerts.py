"""A prediction run serves the trend rule (TFT_ALERT_TREND) on each server's recent values: a metric
climbing toward its critical limit opens the server's trend warning, even where the forecast stays
below its limits."""

import pytest

from forecasting.engine.alert_rules import TREND_RULE
from forecasting.models import Alert
from forecasting.runs.chunks import fleet_predict
from tests.conftest import ingest_fleet

pytestmark = pytest.mark.django_db


def _climbing_cpu(i: int) -> float:
    """40 for 140 buckets, then +1.2 a bucket for the last 20 (64 at the end: below the warning
    limit, 85); the line through the last 2 h passes critical (95) within 4 h, the fallback
    forecast (which damps a trend) stays below warning."""
    return 40.0 + max(0, i - 139) * 1.2


@pytest.fixture
def climbing(no_models, settings):
    settings.TFT_ALERT_OPEN_AFTER_WARNING = 1
    ingest_fleet({"web1": {"cpu_pct": _climbing_cpu}, "web2": {}})


def _trend_alerts():
    return list(Alert.objects.filter(rule=TREND_RULE).values_list("server__name", "metric", "severity", "message"))


def test_a_climbing_metric_opens_a_trend_warning(climbing):
    fleet_predict()
    ((server, metric, severity, message),) = _trend_alerts()
    assert (server, metric, severity) == ("web1", "trend", "warning")
    assert message.startswith("web1: cpu_pct trending to its critical limit 95.0 in ")


def test_no_trend_warning_when_the_rule_is_off(climbing, settings):
    settings.TFT_ALERT_TREND = False
    fleet_predict()
    assert _trend_alerts() == []
