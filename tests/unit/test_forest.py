"""The forest scores exactly what XGBoost scores (to 1e-6), walked in C or in NumPy, for every model
shape it accepts, and refuses the shapes it does not reproduce."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import xgboost as xgb

from modelformat import forest as forest_module
from modelformat.forest import MAX_DEPTH, Forest, compile_booster, probe_rows
from modelformat.gender.scorers import XGBoostScorer


def _booster(objective: str, depth: int, rounds: int, missing: float, seed: int,
             **extra: Any) -> tuple[xgb.Booster, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3000, 12)).astype(np.float32)
    x[rng.random(x.shape) < missing] = np.nan
    signal = np.nan_to_num(x[:, 0]) * 2 - np.nan_to_num(x[:, 3]) + np.isnan(x[:, 5]) + rng.normal(size=3000)
    y = (signal > 0).astype(float) if objective != "reg:squarederror" else signal
    params = {"objective": objective, "max_depth": depth, "eta": 0.3, "nthread": 1, "seed": seed, **extra}
    booster = xgb.train(params, xgb.DMatrix(x, label=y, missing=np.nan), num_boost_round=rounds)
    return booster, x


CASES = {
    "logistic depth 6": ("binary:logistic", 6, 60, 0.0, {}),
    "logistic with missing values": ("binary:logistic", 5, 40, 0.2, {}),
    "shallow, unbalanced trees": ("binary:logistic", 8, 30, 0.1, {"min_child_weight": 20}),
    "regression": ("reg:squarederror", 4, 50, 0.05, {}),
    "raw margins": ("binary:logitraw", 3, 20, 0.0, {}),
    "lossguide leaves": ("binary:logistic", 8, 25, 0.1, {"grow_policy": "lossguide", "max_leaves": 24}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_forest_matches_xgboost_on_many_random_rows(case: str) -> None:
    objective, depth, rounds, missing, extra = CASES[case]
    booster, train_x = _booster(objective, depth, rounds, missing, seed=len(case), **extra)
    forest = compile_booster(booster)
    assert forest is not None, f"{case}: the forest refused a model it should reproduce"
    rng = np.random.default_rng(7)
    random_rows = (rng.normal(size=(4000, 12)) * rng.choice([0.1, 1, 5], size=(4000, 12))).astype(np.float32)
    random_rows[rng.random(random_rows.shape) < missing + 0.02] = np.nan
    for x in (random_rows, train_x, probe_rows(forest, 4000, seed=11)):
        expected = booster.inplace_predict(x).astype(np.float64)
        # The C walk applies the link as XGBoost does (float32, libm's expf): the same bits.
        assert np.array_equal(forest.predict(x).astype(np.float64), expected), case
        for start in range(0, len(x), 17):  # several rows: level by level in NumPy
            got = forest.predict(x[start:start + 17])
            assert np.abs(got - expected[start:start + 17]).max() <= 1e-6, case
            numpy_walk = forest.margin_numpy(x[start:start + 17])
            assert np.array_equal(forest.margin_c(x[start:start + 17]), numpy_walk), case
        for row in range(0, len(x), 7):  # one row: all splits decided at once in NumPy
            assert abs(float(forest.predict(x[row:row + 1])[0]) - expected[row]) <= 1e-6, case
            assert forest.margin_c(x[row:row + 1])[0] == forest.margin_numpy(x[row:row + 1])[0], case


def test_the_package_is_built_with_its_c_walk() -> None:
    """./run's install compiles modelformat/_forest.c (setup.py), and so does the image's build
    stage; without it serving falls back to the NumPy walk, slower but the same."""
    assert forest_module.compiled is not None
    assert forest_module.SMALL_BATCH == 128


def test_the_c_walk_refuses_arrays_that_do_not_match_the_forest() -> None:
    booster, x = _booster("binary:logistic", 3, 5, 0.0, seed=4)
    forest = compile_booster(booster)
    assert forest is not None and forest_module.compiled is not None
    out = np.empty(2, dtype=np.float32)
    with pytest.raises(ValueError, match="do not match"):  # rows of the wrong width
        forest_module.compiled.margin(np.zeros((2, 5), np.float32), forest.nodes, forest.leaf, forest.depth,
                                      forest.n_trees, forest.n_features, 0.0, False, out)
    short = Forest(**{**forest.__dict__, "leaf": forest.leaf[:-1]})
    with pytest.raises(ValueError, match="do not match"):
        short.margin_c(x[:2])


class _Watched:
    """The compiled forest, counting the batches it scores."""

    def __init__(self, forest: Any) -> None:
        self.forest, self.n_features, self.batches = forest, forest.n_features, []

    def predict(self, x: np.ndarray) -> np.ndarray:
        self.batches.append(len(x))
        return np.asarray(self.forest.predict(x))


def test_the_scorer_uses_the_forest_for_small_batches_only(tmp_path: Any) -> None:
    booster, x = _booster("binary:logistic", 6, 40, 0.1, seed=3)
    booster.save_model(str(tmp_path / XGBoostScorer.MODEL_FILE))
    scorer = XGBoostScorer.load(tmp_path, {}, threads=1)
    assert scorer.forest is not None
    watched = _Watched(scorer.forest)
    scorer.forest = watched  # type: ignore[assignment]
    expected = booster.inplace_predict(x).astype(np.float64)
    small = XGBoostScorer.SMALL_BATCH
    for rows in (1, 5, small, small + 1, 1000):
        watched.batches.clear()
        got = scorer.predict_proba(x[:rows])
        assert got.shape == (rows,) and np.abs(got - expected[:rows]).max() <= 1e-6
        assert watched.batches == ([rows] if rows <= small else []), rows


def test_models_the_forest_cannot_reproduce_keep_xgboost() -> None:
    multi, _ = _booster("multi:softprob", 3, 5, 0.0, seed=1, num_class=3)
    assert compile_booster(multi) is None
    deep, _ = _booster("binary:logistic", MAX_DEPTH + 4, 3, 0.0, seed=2, min_child_weight=0)
    assert compile_booster(deep) is None


def test_a_few_scores_round_to_the_same_bits_as_numpy() -> None:
    """The gender predictor turns up to FEW_ROWS scores into labels and probabilities in plain
    floats; a batch goes through NumPy. Both must give the same values, bit for bit."""
    from inference.families.gender import few_scores

    rng = np.random.default_rng(5)
    halves = (np.arange(2000) + 0.5) / 1e6  # exactly halfway between two 6-decimal values
    p = np.concatenate([rng.random(20000), halves, 1 - halves, [0.0, 1.0, 0.5, 0.3, 1e-300]])
    p = np.concatenate([p, np.float32(rng.random(5000)).astype(np.float64)])  # the forest's float32 scores
    for threshold in (0.5, 0.3):
        positive = p >= threshold
        labels, confidence, scores = few_scores(p.tolist(), threshold, "F", "M")
        assert labels == ["M" if v else "F" for v in positive.tolist()]
        assert confidence == np.round(np.where(positive, p, 1.0 - p), 6).tolist()
        assert scores == np.round(p, 6).tolist()
