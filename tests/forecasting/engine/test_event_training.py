"""Fitting and comparing event-model learners (engine.event_training). No database."""

import numpy as np
import pytest

from forecasting.engine import event_model as em
from forecasting.engine import event_training as et


def _samples(n: int = 1200, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(em.FEATURES)))
    y = (x[:, 0] + 0.5 * rng.normal(size=n) < -0.8).astype(np.float64)
    series = np.array([f"s{i % 12}" for i in range(n)], dtype=object)
    family = np.array(["cpu" if i % 2 else "disk" for i in range(n)], dtype=object)
    return {"x": {"8h": x}, "bound": {"8h": np.clip(-x[:, 0] / 4, 0, 1)}, "labels": {("incident", "8h"): y},
            "series": series, "family": family, "features": list(em.FEATURES)}  # fmt: skip


def _depth(tree: dict, node: int = 0) -> int:
    if tree["left"][node] < 0:
        return 0
    return 1 + max(_depth(tree, tree["left"][node]), _depth(tree, tree["right"][node]))


def test_a_learner_spec_carries_its_options():
    assert et.learner_spec("blend(l2=30, depth=2,leaf=200)") == ("blend", {"l2": 30.0, "depth": 2.0, "leaf": 200.0})
    assert et.learner_spec("trees") == ("trees", {})


@pytest.mark.parametrize(
    ("text", "says"),
    [("forest", "unknown learner"), ("logistic(depth=2)", "takes no option 'depth=2'"),
     ("trees(depth=0)", "positive number"), ("trees(depth=two)", "positive number"), ("isotonic(l2=1)", "none")],
)  # fmt: skip
def test_a_bad_learner_spec_is_refused_naming_what_is_wrong(text, says):
    with pytest.raises(ValueError, match=says):
        et.learner_spec(text)


def test_tree_options_reach_the_fitted_trees():
    data = _samples()
    x, y = data["x"]["8h"], data["labels"][("incident", "8h")]
    params = et.fit_window("trees(trees=10,depth=1)", x, y, np.ones(len(y)), data["bound"]["8h"])
    assert len(params["trees"]) == 10
    assert {_depth(t) for t in params["trees"]} == {1}


def test_a_larger_l2_shrinks_the_logistic_coefficients():
    data = _samples()
    x, y = data["x"]["8h"], data["labels"][("incident", "8h")]
    loose, firm = (et.fit_window(f"logistic(l2={l2})", x, y, np.ones(len(y)), data["bound"]["8h"]) for l2 in (1, 1000))
    assert np.abs(firm["coef"]).sum() < 0.5 * np.abs(loose["coef"]).sum()


def test_a_blend_passes_each_part_its_own_options():
    data = _samples()
    x, y = data["x"]["8h"], data["labels"][("incident", "8h")]
    params = et.fit_window("blend(l2=1000,trees=5,depth=1)", x, y, np.ones(len(y)), data["bound"]["8h"])
    logistic, trees = params["parts"]
    assert logistic == et.fit_window("logistic(l2=1000)", x, y, np.ones(len(y)), data["bound"]["8h"])
    assert len(trees["trees"]) == 5


def test_out_of_fold_predicts_each_group_from_a_fit_on_the_others():
    data = _samples()
    source = np.array(["a", "b", "c"])[np.arange(len(data["series"])) % 3]
    fold = np.unique(source, return_inverse=True)[1]
    preds = et.out_of_fold(data, ["logistic"], fold=fold)["8h"]["logistic"]
    x, y, fam = data["x"]["8h"], data["labels"][("incident", "8h")], data["family"].astype(str)
    held = source == "b"
    fitted = et.fit_window("logistic", x[~held], y[~held], et.family_weights(fam[~held]), data["bound"]["8h"][~held])
    np.testing.assert_allclose(preds[held], em.predict(fitted, x[held]))


def test_cross_validation_by_group_scores_every_sample_once():
    data = _samples()
    groups = np.array(["a", "b"])[np.arange(len(data["series"])) % 2]
    scores = et.cross_validate(data, learners=["logistic"], groups=groups)["8h"]["logistic"]
    assert scores["pooled"]["n"] == len(data["series"])
    assert scores["pooled"]["skill"] > 0.2
