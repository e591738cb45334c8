"""The event model (engine.event_model, engine.event_training) and probability scores. No database."""

import json
import math

import numpy as np
import pytest

from forecasting.engine import event_model as em
from forecasting.engine import folders
from forecasting.engine import probability_scores as ps
from forecasting.engine.incidents import WINDOWS
from forecasting.engine.spec import HORIZON, QUANTILES, STATE_INDEX


def _separable(n: int = 2000, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(em.FEATURES)))
    y = (x[:, 0] + 0.3 * rng.normal(size=n) < -0.5).astype(np.float64)  # events when z_last is small
    return x, y


@pytest.mark.parametrize("learner", ["logistic", "trees"])
def test_a_learner_beats_a_constant_on_a_separable_case(learner):
    x, y = _separable()
    fit = em.fit_logistic if learner == "logistic" else em.fit_trees
    params = fit(x[:1500], y[:1500])
    p = em.predict(params, x[1500:])
    constant = np.full(500, y[:1500].mean())
    assert ps.brier(p, y[1500:]) < 0.5 * ps.brier(constant, y[1500:])
    assert ps.auc(p, y[1500:]) > 0.9


def test_exported_trees_match_scikit_learn():
    from sklearn.ensemble import GradientBoostingClassifier

    x, y = _separable(600)
    params = em.fit_trees(x, y, trees=20, seed=1)
    clf = GradientBoostingClassifier(n_estimators=20, max_depth=3, learning_rate=0.05, subsample=0.8,
                                     min_samples_leaf=50, random_state=1).fit(x, y)  # fmt: skip
    assert em.predict(params, x) == pytest.approx(clf.predict_proba(x)[:, 1], abs=1e-6)


def _model() -> dict:
    x, y = _separable(500)
    params = em.fit_logistic(x, y)
    return em.new_model({w: params for w in WINDOWS}, min_buckets=2, thresholds={"cpu_pct": {"critical": 95.0}})


def test_event_model_round_trip_is_json(tmp_path):
    model = _model()
    folders.write_event_model(tmp_path, model)
    text = (tmp_path / folders.EVENT_MODEL_FILE).read_text()
    assert json.loads(text)["format"] == em.FORMAT  # plain JSON on disk
    loaded = folders.read_event_model(tmp_path)
    x, _ = _separable(10, seed=3)
    assert em.predict(loaded["windows"]["8h"], x) == pytest.approx(em.predict(model["windows"]["8h"], x))


def test_a_pickled_or_malformed_event_model_is_not_loaded(tmp_path):
    import pickle

    assert folders.read_event_model(tmp_path) is None  # older folders: none
    (tmp_path / folders.EVENT_MODEL_FILE).write_bytes(pickle.dumps(_model()))
    assert folders.read_event_model(tmp_path) is None  # never unpickled
    bad = {**_model(), "features": ["something", "else"]}
    (tmp_path / folders.EVENT_MODEL_FILE).write_text(json.dumps(bad))
    assert folders.read_event_model(tmp_path) is None
    with pytest.raises(em.EventModelError):
        folders.write_event_model(tmp_path, {"format": "other"})


def test_a_challenger_carries_its_champions_event_model(tmp_path):
    champion, challenger = tmp_path / "champion", tmp_path / "challenger"
    champion.mkdir(), challenger.mkdir()
    assert folders.carry_event_model(champion, challenger).startswith("none")  # nothing to carry: said so
    assert folders.read_event_model(challenger) is None
    folders.write_event_model(champion, {**_model(), "fitted_on": "dev sets"})
    note = folders.carry_event_model(champion, challenger)
    carried = folders.read_event_model(challenger)
    assert note == "carried from champion (fitted on dev sets)" and carried["carried_from"] == "champion"
    assert carried["windows"] == folders.read_event_model(champion)["windows"]


def test_features_see_the_distance_to_the_limit_and_recent_states():
    n, t = 2, 288
    context = np.full((n, t, 4), 50.0)
    context[:, :, 0] += np.random.default_rng(0).normal(size=(n, t))
    context[1, -3:, 0] = 94.0  # the second server close to its cpu limit
    states = np.full((n, t), STATE_INDEX["healthy"], dtype=np.int8)
    states[1, -2:] = STATE_INDEX["critical_issue"]
    q = np.broadcast_to(context[:, -1:, None, :].transpose(0, 1, 3, 2), (n, HORIZON, 4, 1))
    q = q + np.linspace(-1, 1, len(QUANTILES))
    critical = np.full((n, 4), 95.0)
    feats = em.event_features(context, states, q, QUANTILES, critical, ["web_api", "generic"])
    x = feats["30m"]
    col = {name: i for i, name in enumerate(em.FEATURES)}
    assert x.shape == (2, len(em.FEATURES))
    assert x[1, col["z_last"]] < x[0, col["z_last"]]
    assert x[1, col["hour_critical"]] > 0 == x[0, col["hour_critical"]]
    assert x[0, col["profile_web_api"]] == 1 and x[1, col["profile_generic"]] == 1


def test_brier_skill_auc_and_reliability_by_hand():
    p = np.array([0.1, 0.1, 0.9, 0.9])
    e = np.array([0, 0, 1, 0])
    s = ps.probability_scores(p, e)
    assert s["brier"] == pytest.approx((0.01 + 0.01 + 0.01 + 0.81) / 4)
    assert s["skill"] == pytest.approx(1 - s["brier"] / (0.25 * 0.75))
    assert s["auc"] == pytest.approx((1.0 + 1.0 + 0.5) / 3)  # the event beats two, ties one
    assert [r["n"] for r in s["reliability"]] == [2, 2]
    assert s["reliability"][1]["frequency"] == 0.5


def test_families_weigh_equally_when_pooled():
    big = (np.full(90, 0.5), np.r_[np.ones(45), np.zeros(45)])
    small = (np.full(10, 0.5), np.zeros(10))
    pooled = ps.family_pooled({"a": big, "b": small})
    assert pooled["base_rate"] == pytest.approx(0.25)  # (0.5 + 0) / 2, not 45 / 100
    assert pooled["n"] == 100 and pooled["events"] == 45 and pooled["families"] == 2


def _day_context(yesterday_peak: float, t: int = 288) -> np.ndarray:
    context = np.full((1, t, 4), 50.0)
    context[:, :, 0] += np.random.default_rng(1).normal(size=(1, t))
    context[0, 2:5, 0] = yesterday_peak  # 3 buckets within [origin − 1 day, origin − 1 day + 30 min)
    return context


def _season(context: np.ndarray) -> dict:
    n, t, _ = context.shape
    q = np.broadcast_to(context[:, -1:, None, :].transpose(0, 1, 3, 2), (n, HORIZON, 4, 1)) + np.linspace(
        -1, 1, len(QUANTILES)
    )
    feats = em.event_features(context, np.full((n, t), -1), q, QUANTILES, np.full((n, 4), 95.0), ["generic"])
    col = {name: i for i, name in enumerate(em.FEATURES)}
    return {w: {f: x[0, col[f]] for f in ("z_season_max", "season_start")} for w, x in feats.items()}


def test_the_same_hours_yesterday_are_an_input():
    quiet, peaked = _season(_day_context(60.0)), _season(_day_context(99.0))
    assert peaked["30m"]["z_season_max"] < 0 < quiet["30m"]["z_season_max"]
    assert peaked["30m"]["season_start"] == 1 and quiet["30m"]["season_start"] == 0


def test_a_context_shorter_than_a_day_gives_no_seasonal_signal():
    short = _season(_day_context(99.0, t=200))
    assert short["8h"] == {"z_season_max": em.Z_CLIP, "season_start": 0.0}


def _level_model(features: list[str]) -> dict:
    coef = [5.0 if f == "level" else 0.0 for f in features]
    params = {"learner": "logistic", "mean": [0.0] * len(features), "std": [1.0] * len(features),
              "coef": coef, "intercept": -2.5}  # fmt: skip
    return em.new_model({"30m": params, "8h": params}, min_buckets=2, thresholds={}, features=features)


def test_a_model_reads_the_inputs_it_was_fitted_on_by_name():
    x = np.random.default_rng(2).normal(size=(5, len(em.FEATURES)))
    level = x[:, em.FEATURES.index("level")]
    for features in (["level"], ["share_near", "level", "z_last"]):
        p = em.model_probabilities(em.check_model(_level_model(features)), {"8h": x})["8h"]
        np.testing.assert_allclose(p, 1 / (1 + np.exp(-(5 * level - 2.5))))


def test_a_model_naming_an_unknown_input_is_refused():
    with pytest.raises(em.EventModelError):
        em.check_model(_level_model(["level", "tomorrow"]))


def test_samples_round_trip_without_pickle(tmp_path):
    from forecasting.engine import event_training as et

    x, y = _separable(40)
    data = {"x": {"8h": x}, "bound": {"8h": y * 0.5}, "labels": {("incident", "8h"): y},
            "series": np.array(["a", "b"] * 20, dtype=object), "family": np.array(["cpu"] * 40, dtype=object)}  # fmt: skip
    et.save_samples(tmp_path / "s.npz", data, fitted_on="two series")
    loaded, fitted_on = et.load_samples(tmp_path / "s.npz")
    assert fitted_on == "two series"
    np.testing.assert_array_equal(loaded["x"]["8h"], x)
    np.testing.assert_array_equal(loaded["labels"][("incident", "8h")], y)
    assert loaded["series"].tolist() == ["a", "b"] * 20


def test_no_history_gives_zero_history_inputs():
    assert em.history_inputs(np.zeros(1), np.zeros(1), "8h").tolist() == [[0.0, 0.0]]


def test_a_history_of_frequent_incidents_raises_the_odds_and_a_quiet_one_lowers_them():
    busy, quiet = em.history_inputs(np.array([12.0, 0.0]), np.array([24.0, 24.0]), "8h")
    assert busy[0] > 0 > quiet[0] and busy[1] == quiet[1] == pytest.approx(np.log1p(24.0))


def test_history_counts_only_windows_closed_before_the_origin():
    labels = np.zeros(40)
    labels[10] = 1  # origins one hour apart (every 12 steps); an 8 h window closes 9 origins later
    events, hours = em.series_history(labels, every=12, steps=96, min_buckets=2)
    assert events[:19].sum() == 0 and events[19] > 0  # origin 10's window + 2 buckets closes before origin 19
    assert hours[8] == 0 and hours[9] == pytest.approx(0.5 ** (9 / em.HISTORY_HALF_LIFE_HOURS))  # origin 0, 9 h old


def test_a_window_with_its_own_inputs_reads_only_those():
    x = np.random.default_rng(3).normal(size=(5, len(em.FEATURES)))
    model = _level_model(["share_near", "level"])
    model["windows"]["30m"] = {**model["windows"]["30m"], "features": ["level"], "mean": [0.0], "std": [1.0],
                               "coef": [5.0]}  # fmt: skip
    p = em.model_probabilities(em.check_model(model), {"30m": x, "8h": x})
    np.testing.assert_allclose(p["30m"], p["8h"])  # both read level alone (share_near's coefficient is 0)


def test_history_share_is_the_smoothed_incident_share_the_history_inputs_carry():
    events, hours = np.array([12.0, 0.0, 0.0]), np.array([24.0, 24.0, 0.0])
    share = em.history_share(em.history_inputs(events, hours, "8h"), "8h")
    smoothed = (events + em.HISTORY_PRIOR_HOURS * em.HISTORY_PRIOR["8h"]) / (hours + em.HISTORY_PRIOR_HOURS)
    np.testing.assert_allclose(share, smoothed)
    assert share[2] == pytest.approx(em.HISTORY_PRIOR["8h"])  # no history: the prior rate


def test_the_mean_over_sources_leaves_out_sources_without_events():
    rows = {"a": {"events": 5, "skill": 0.3, "auc": 0.9}, "b": {"events": 2, "skill": -0.1, "auc": 0.7},
            "c": {"events": 0, "skill": math.nan, "auc": None}}  # fmt: skip
    assert ps.sources_equal(rows) == {"sources": 2, "skill": pytest.approx(0.1), "auc": pytest.approx(0.8)}
    assert ps.sources_equal({}) == {"sources": 0, "skill": None, "auc": None}
