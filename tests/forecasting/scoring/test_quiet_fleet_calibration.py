"""Issue 22's quiet-fleet target, driven through the real services on a compressed timeline: a
simulated fleet with no incidents injected (engine.simulator, incidents=False) is ingested
(ingest.services), forecast every 5 simulated minutes by the shipped model (runs.chunks), and every
pass resolves the served probabilities' outcomes and updates the live maps (scoring.services). After
a day of live calibration (a day of resolved outcomes in each window) the median server reads
P(8 h) ≤ 5 % and the fleet expects ≤ 1 incident within 8 h per 20 servers. The figures are logged (`-o log_cli=true`) for the report."""

import json
import logging
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from forecasting.engine.simulator import fleet_names, simulate_fleet_truth
from forecasting.engine.spec import METRICS, STATES, STEP_MINUTES
from forecasting.models import ProbabilityCalibration, ProbabilityOutcome, ServerForecast
from forecasting.runs.chunks import fleet_predict
from forecasting.scoring.selectors import probability_reliability
from forecasting.scoring.services import live_scoring_pass
from ingest.services import records_ingest
from ingest.validation import validate_records

pytestmark = [pytest.mark.slow, pytest.mark.django_db]
logger = logging.getLogger(__name__)

STEP = timedelta(minutes=STEP_MINUTES)
SERVERS = 20
HISTORY = timedelta(hours=24)
# A day of live calibration: a day of resolved outcomes in both windows, so the 8-hour window's first
# outcomes (8 h after the first live forecast) have a day of successors: 32 h of live running.
LIVE = timedelta(hours=32)


def _records(truth, k: int) -> list[dict]:
    """One record per server at bucket k (its mean is the simulated bucket mean)."""
    out = []
    for w in truth.windows:
        ts = w.start + k * STEP + timedelta(minutes=2)
        state = STATES[int(w.states[k])] if w.states[k] >= 0 else "healthy"
        out.append({"timestamp": ts.isoformat().replace("+00:00", "Z"), "server_name": w.server, "state": state,
                    **{m: round(float(w.values[k, j]), 4) for j, m in enumerate(METRICS)}})  # fmt: skip
    return out


def _ingest(truth, ks: range) -> None:
    batch = [r for k in ks for r in _records(truth, k)]
    clean, problems = validate_records(batch)
    assert not problems, problems[:3]
    records_ingest(records=clean)


def _run_figures(run) -> dict:
    p8h = np.array(ServerForecast.objects.filter(run=run).values_list("prob_8h", flat=True))
    p30 = np.array(ServerForecast.objects.filter(run=run).values_list("prob_30m", flat=True))
    return {"median_p8h": round(float(np.median(p8h)), 4), "max_p8h": round(float(p8h.max()), 4),
            "median_p30m": round(float(np.median(p30)), 4),
            "expected_8h": run.environment["expected_incidents_8h"],
            "expected_30m": run.environment["expected_incidents_30m"], "fleet_health": run.environment["fleet_health"]}


def test_a_quiet_fleet_reads_quiet_after_a_day_of_live_calibration(settings):
    settings.TFT_WARMUP_RECORDS = 150
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - HISTORY - LIVE - STEP
    start -= timedelta(minutes=start.minute % STEP_MINUTES)
    truth = simulate_fleet_truth(servers=fleet_names(SERVERS), start=start, end=now, seed=22, incidents=False)
    history = int(HISTORY / STEP)
    _ingest(truth, range(history))
    first = fleet_predict(now=start + history * STEP, explain="off")
    before = _run_figures(first)
    run = first
    for k in range(history, len(truth.windows[0].values)):
        _ingest(truth, range(k, k + 1))
        run = fleet_predict(now=start + (k + 1) * STEP, explain="off") or run
        live_scoring_pass()
    after = _run_figures(run)
    scores = probability_reliability(now=now)["windows"]
    maps = {f"{s}/{w}": [a, b, round(n)] for s, w, a, b, n in
            ProbabilityCalibration.objects.values_list("scope", "window", "a", "b", "outcomes")}  # fmt: skip
    figures = {
        "servers": SERVERS, "model": run.model_name, "tft_servers": run.tft_count, "before": before, "after": after,
        "outcomes": {w: {k: scores[w][k] for k in ("n", "events", "base_rate", "mean_prob", "brier", "skill", "auc")}
                     for w in scores},
        "maps": maps, "pending": ProbabilityOutcome.objects.filter(incident__isnull=True).count(),
    }  # fmt: skip
    logger.info("quiet fleet after a day of live calibration: %s", json.dumps(figures))
    print(json.dumps(figures))

    assert after["median_p8h"] <= 0.05
    assert after["expected_8h"] <= SERVERS / 20
