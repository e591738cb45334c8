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


def test_a_firmer_slope_prior_keeps_the_slope_nearer_the_models():
    rng = np.random.default_rng(5)
    prior = rng.uniform(0.05, 0.6, 20000)
    events = rng.random(20000) < 0.15  # the model ranks nothing: a free slope flattens toward 0
    counts = lc.counts_add(lc.empty_counts(), prior, events)
    _, free = lc.map_fit(counts, prior_weight=WEIGHT, slope_factor=1.0)
    _, firm = lc.map_fit(counts, prior_weight=WEIGHT, slope_factor=1000.0)
    assert free < 0.5 < 0.95 < firm


# --- The online replay of the service's maps (the backtest's "served") -------------------------------

HOUR = 3600.0


def _replay(events: np.ndarray, *, prior_p: float = 0.2, profiles=None, cfg=None) -> np.ndarray:
    """A fleet of 20 servers, one origin an hour for 20 days, 8 h windows."""
    n = len(events)
    times = np.repeat(np.arange(n // 20) * HOUR, 20)
    return lc.live_map_replay(times=times, closes=times + 9 * HOUR, profiles=profiles if profiles is not None
                              else np.full(n, "web"), p_prior=np.full(n, prior_p), events=events,
                              cfg=cfg or lc.LiveMapConfig())  # fmt: skip


def test_the_replayed_map_moves_toward_an_injected_base_rate():
    rng = np.random.default_rng(1)
    n = 20 * 24 * 20
    low = _replay((rng.random(n) < 0.02).astype(float))
    high = _replay((rng.random(n) < 0.6).astype(float))
    assert low[:20] == pytest.approx(0.2) and high[:20] == pytest.approx(0.2)  # nothing known yet: the prior
    assert low[-20:].mean() < 0.06 and high[-20:].mean() > 0.45


def test_the_replay_has_no_look_ahead():
    rng = np.random.default_rng(2)
    n = 20 * 24 * 5
    events = (rng.random(n) < 0.3).astype(float)
    served = _replay(events)
    times = np.repeat(np.arange(n // 20) * HOUR, 20)
    origin = 20 * 50  # an origin 50 h in: outcomes closing after it must not change what it is served
    changed = events.copy()
    changed[times + 9 * HOUR > times[origin]] = 1.0 - changed[times + 9 * HOUR > times[origin]]
    again = _replay(changed)
    assert again[: origin + 20] == pytest.approx(served[: origin + 20])
    assert again[-1] != pytest.approx(served[-1])  # later origins do see them


def test_an_outcome_joins_the_map_at_the_first_refit_after_its_window_closes():
    one = lc.live_map_replay(times=np.array([0.0, 9 * HOUR, 9 * HOUR + 1]), closes=np.array([9 * HOUR + 1, 1e9, 1e9]),
                             profiles=np.array(["web"] * 3), p_prior=np.full(3, 0.2), events=np.array([1.0, 0, 0]))  # fmt: skip
    assert one[1] == pytest.approx(0.2)  # closed after 9 h, refit at 10 h
    assert one[2] == pytest.approx(0.2)
    later = lc.live_map_replay(times=np.array([0.0, 10 * HOUR]), closes=np.array([9 * HOUR + 1, 1e9]),
                               profiles=np.array(["web"] * 2), p_prior=np.full(2, 0.2), events=np.array([1.0, 0]))  # fmt: skip
    assert later[1] > 0.2


def test_the_replay_serves_each_origin_what_map_serve_gives_for_the_maps_in_force():
    rng = np.random.default_rng(6)
    n = 20 * 24 * 3
    times = np.repeat(np.arange(n // 20) * HOUR, 20)
    profiles = np.tile(np.array(["web"] * 10 + ["db"] * 10), n // 20)
    prior = rng.uniform(0.01, 0.6, n)
    events = (rng.random(n) < prior / 2).astype(float)
    cfg = lc.LiveMapConfig(profile_min_outcomes=200)
    served = lc.live_map_replay(times=times, closes=times + 9 * HOUR, profiles=profiles, p_prior=prior, events=events,
                                cfg=cfg)  # fmt: skip
    states: dict = {}
    for hour in range(n // 20):  # the service's passes, one an hour: outcomes closed by then, then serve
        now = hour * HOUR
        closed = np.flatnonzero((times + 9 * HOUR > now - HOUR) & (times + 9 * HOUR <= now))
        if len(closed):
            states.update(lc.fleet_pass(states, profiles[closed], prior[closed], events[closed], now_s=now, cfg=cfg))
        maps = {scope: st.params for scope, st in states.items() if lc.in_force(scope, st.outcomes, cfg)}
        for i in np.flatnonzero(times == now):
            want = lc.map_serve(prior[i], profiles[i], maps)
            assert served[i] == pytest.approx(prior[i] if want is None else want, abs=1e-12)


def test_a_profile_reads_its_own_map_once_it_has_enough_outcomes():
    rng = np.random.default_rng(3)
    n = 20 * 24 * 20
    profiles = np.tile(np.array(["web"] * 10 + ["db"] * 10), n // 20)
    events = np.where(profiles == "web", rng.random(n) < 0.6, rng.random(n) < 0.02).astype(float)
    cfg = lc.LiveMapConfig(profile_min_outcomes=500)
    served = _replay(events, profiles=profiles, cfg=cfg)
    last = slice(n - 20, n)
    pooled = _replay(events, profiles=profiles, cfg=lc.LiveMapConfig(profile_min_outcomes=10**9))
    assert np.ptp(pooled[last]) == pytest.approx(0.0)  # no profile map in force: one fleet map for all
    web, db = served[last][profiles[last] == "web"].mean(), served[last][profiles[last] == "db"].mean()
    assert web > pooled[-1] + 0.1 and db < pooled[-1] - 0.1
