"""engine.live_calibration: the live map starts at the identity, moves toward the observed rate, and
its histogram scores agree with engine.probability_scores."""

import numpy as np
import pytest

from forecasting.engine import live_calibration as lc
from forecasting.engine.probability_scores import probability_scores

WEIGHT = 100.0


def _fitted(prior_p: float, rate: float, n: int, seed: int = 0) -> float:
    """The map's output at `prior_p` after n outcomes of prior `prior_p` with incidents at `rate`."""
    rng = np.random.default_rng(seed)
    counts = lc.counts_add(lc.empty_counts(), np.full(n, prior_p), rng.random(n) < rate)
    return float(lc.map_apply(prior_p, lc.map_fit(counts, prior_weight=WEIGHT)))


def test_without_outcomes_the_map_is_the_identity():
    params = lc.map_fit(lc.empty_counts(), prior_weight=WEIGHT)
    assert params == pytest.approx(lc.IDENTITY)
    assert lc.map_apply(np.array([0.01, 0.3, 0.9]), params) == pytest.approx([0.01, 0.3, 0.9])


def test_a_few_outcomes_keep_the_map_near_its_prior():
    assert _fitted(0.25, 0.0, 20) > 0.2  # 20 quiet windows are no proof the model is wrong


@pytest.mark.parametrize(("rate", "direction"), [(0.0, -1), (0.01, -1), (0.6, 1)])
def test_many_outcomes_move_the_map_toward_the_observed_rate(rate, direction):
    few, many = _fitted(0.25, rate, 500), _fitted(0.25, rate, 20000)
    assert direction * (few - 0.25) > 0 and direction * (many - few) > 0
    assert abs(many - max(rate, 0.001)) < abs(few - rate)
    if rate >= 0.01:
        assert many == pytest.approx(rate, abs=0.03)


def test_the_map_keeps_the_ranking_it_learns():
    rng = np.random.default_rng(1)
    prior = rng.uniform(0.05, 0.6, 20000)
    events = rng.random(20000) < prior / 3  # the model is 3 × too high, but ranks right
    params = lc.map_fit(lc.counts_add(lc.empty_counts(), prior, events), prior_weight=WEIGHT)
    out = lc.map_apply(np.array([0.1, 0.3, 0.6]), params)
    assert np.all(np.diff(out) > 0)
    assert out == pytest.approx([0.1 / 3, 0.1, 0.2], abs=0.05)  # a logit-linear map, not an exact one


def test_a_profile_map_starts_at_the_fleets():
    fleet = (-2.0, 0.8)
    assert lc.map_fit(lc.empty_counts(), prior=fleet, prior_weight=WEIGHT) == pytest.approx(fleet)


def test_decay_halves_old_counts():
    counts = lc.counts_add(lc.empty_counts(), np.full(100, 0.2), np.zeros(100))
    decayed = lc.counts_add(counts, np.array([]), np.array([]), decay=0.5)
    assert lc.effective_outcomes(decayed) == pytest.approx(50)


def test_histogram_scores_agree_with_the_sample_scores():
    rng = np.random.default_rng(2)
    p = np.round(rng.uniform(0, 1, 3000), 3)
    e = rng.random(3000) < p
    cells = {}
    for pi, ei in zip(p, e, strict=True):
        cell = cells.setdefault((pi, bool(ei)), [0, 0.0, 0.0])
        cell[0] += 1
        cell[1] += pi
        cell[2] += pi * pi
    keys = list(cells)
    n = np.array([cells[k][0] for k in keys], dtype=float)
    got = lc.histogram_scores(np.array([k[0] for k in keys]), n, np.array([k[1] for k in keys], dtype=float),
                              np.array([cells[k][1] for k in keys]), np.array([cells[k][2] for k in keys]))  # fmt: skip
    want = probability_scores(p, e)
    for key in ("n", "events", "base_rate", "mean_prob", "brier", "skill", "auc"):
        assert got[key] == pytest.approx(want[key]), key
    assert [(r["bin"], r["n"]) for r in got["reliability"]] == [(r["bin"], r["n"]) for r in want["reliability"]]
    for mine, theirs in zip(got["reliability"], want["reliability"], strict=True):
        assert (mine["mean_prob"], mine["frequency"]) == pytest.approx((theirs["mean_prob"], theirs["frequency"]))


def test_a_fleet_without_incidents_lowers_every_server_but_keeps_the_models_ranking():
    prior = np.random.default_rng(4).uniform(0.1, 0.5, 5000)
    a, b = lc.map_fit(lc.counts_add(lc.empty_counts(), prior, np.zeros(5000)), prior_weight=WEIGHT)
    assert a < -1.0  # the fleet's rate is far below the model's
    assert abs(b - 1.0) < 0.15  # no incident says nothing about how servers rank
